"""The CUDA target: the same fused graphs as the CPU target, as ``numba.cuda`` kernels.

``compile_graph`` builds a program (codegen.py); ``run_op`` runs one op eagerly on device
arrays through a cached single-op program (eager.py). The emitters are in the files named
like the op families of graphjit/ops/ (and like the CPU target's: backend/cpu/), written
through ``kernel.py``'s writer. Importing this package imports ``numba.cuda`` only when a
program is built or run (see [Devices] in graphjit/devices.py).
"""
from .codegen import compile_graph, emitter_for, generate  # noqa: F401
from .eager import run_op  # noqa: F401
from .kernel import EMITTERS  # noqa: F401
from .program import CudaProgram  # noqa: F401
