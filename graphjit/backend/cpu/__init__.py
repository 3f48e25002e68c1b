"""The CPU backend: Numba ``njit`` kernels generated from the graph, one native driver.

``compile_graph(graph)`` returns a ``CompiledProgram`` (program.py); ``program(inputs)`` returns
``(outputs, updates)`` exactly like ``graphjit.ir.run_graph``. Where is the kernel of op X?
Elementwise ops: the op's own ``scalar`` expression, wrapped by ``elementwise.py``; the
others: ``emit_<op>`` in the file named like the op's family in graphjit/ops/.
"""
import os

# NOTE: [Idle worker threads]
# Numba's parallel kernels run on OpenMP threads (its "omp" threading layer), and BLAS
# (np.dot in the drivers) on OpenBLAS's own. libgomp's threads spin for a while after a
# parallel loop, so the BLAS call right after an optimizer update found its second core
# taken: the W2 MLP step took 16.0 ms with 2 threads against 9.5 ms with graphjit's
# parallel loops off, and 6.6 ms with OMP_WAIT_POLICY=PASSIVE (idle threads sleep; W1 and
# W4, no BLAS, within noise either way; benchmarks/suite.py --threads 0). So graphjit
# asks for passive waiting unless the user chose a policy, before libgomp starts (it
# reads the variable once; a program that started OpenMP before importing graphjit keeps
# its own policy).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .codegen import compile_graph, emitter_for, generate  # noqa: E402,F401
from .program import CompiledProgram  # noqa: E402,F401
