"""The CUDA target: the same fused graphs as the CPU target, as ``numba.cuda`` kernels.

``compile_graph`` builds a program (codegen.py); ``run_op`` runs one op eagerly on device
arrays through a cached single-op program (eager.py). Importing this package imports
``numba.cuda`` only when a program is built or run (see [Devices] in graphjit/devices.py).
"""
from .codegen import compile_graph, cuda_passes, generate  # noqa: F401
from .eager import run_op  # noqa: F401
