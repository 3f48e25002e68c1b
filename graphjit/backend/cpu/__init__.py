"""The CPU backend: Numba ``njit`` kernels generated from the graph, one native driver.

``compile_graph(graph)`` returns a ``CompiledProgram`` (program.py); ``program(inputs)`` returns
``(outputs, updates)`` exactly like ``graphjit.ir.run_graph``. Where is the kernel of op X?
Elementwise ops: the op's own ``scalar`` expression, wrapped by ``elementwise.py``; the
others: ``emit_<op>`` in the file named like the op's family in graphjit/ops/ (the CUDA
target's is in the file of the same name under backend/cuda/); ``graphjit describe X``
says where.
"""
from .codegen import compile_graph, emitter_for, generate  # noqa: F401
from .kernel import EMITTERS  # noqa: F401
from .program import CompiledProgram  # noqa: F401
