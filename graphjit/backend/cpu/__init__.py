"""The CPU backend: Numba ``njit`` kernels generated from the graph, one native driver.

``compile_graph(graph)`` returns a ``CompiledProgram`` (program.py); ``program(inputs)`` returns
``(outputs, updates)`` exactly like ``graphjit.ir.run_graph``. Where is the kernel of op X?
Elementwise ops: the op's own ``scalar`` expression, wrapped by ``elementwise.py``; the
others: ``emit_<op>`` in the file named like the op's family in graphjit/ops/.
"""
import os

# NOTE: [Idle worker threads]
# Numba's parallel kernels run on OpenMP threads (its "omp" threading layer: libgomp here),
# BLAS (np.dot in the drivers) on OpenBLAS's own. libgomp's idle threads spin for a long
# while (300k spins by default) after a parallel loop, so the BLAS calls after an
# optimizer update found their second core taken. Measured with
# `benchmarks/suite.py --threads 0 --_time W2 'graphjit compiled'` (quiet 2-core VM, median
# per step): W2 (MLP step) 20-24 ms spinning, 6.5-8.6 ms with OMP_WAIT_POLICY=PASSIVE, but
# passive threads wake slowly on this VM (W1 1.25-1.9 -> 2.0-2.1 ms); with
# GOMP_SPINCOUNT=1000 (spin briefly, then sleep) W2 5.4-5.7 ms and W1 1.55-1.67, W4 5.1,
# W6 4.5 ms, the same as spinning. So graphjit sets GOMP_SPINCOUNT=1000 unless the user
# chose a wait policy, before libgomp starts (it reads the variables once: a program that
# started OpenMP before importing graphjit keeps its own setting).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from .codegen import compile_graph, emitter_for, generate  # noqa: E402,F401
from .program import CompiledProgram  # noqa: E402,F401
