"""``paused_gc()``: no cyclic garbage collection while graphjit compiles.

# NOTE: [No GC while compiling]
A compile allocates hundreds of thousands of small objects (IR nodes, generated text,
Numba's type inference and LLVM wrappers) into a heap that already holds NumPy's, Numba's
and networkx's modules, so Python's cyclic collector ran its full (generation 2) pass
during compiles, each pass walking every object of the process: measured with gc.callbacks
on W2's step (`benchmarks/suite.py`'s workload), 0.41 s of a 3.5 s cold compile (4 full
passes, 44 of generation 1) and 0.09-0.14 s of a 0.5 s warm start (2 full passes). Compiles
run with the collector paused instead; what they leave behind is collected by the next
collection after it resumes. Reference counting still frees everything acyclic at once.
Nested or concurrent compiles only resume it if it was on when the outermost began.
"""
from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def paused_gc():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
