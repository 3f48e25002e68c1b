"""Accumulation helpers that generated kernels import (``from ...accumulate import add``).

``add`` is compiled with the one fast-math flag ``reassoc``: LLVM inlines it into the
kernel's loop and the flag travels with that one addition, so the loop vectoriser may keep
several partial sums and combine them at the end (what NumPy's pairwise summation does
too). Every other operation of the kernel stays strict IEEE arithmetic, so fused
elementwise work still matches eager mode exactly; only the order of a sum changes.
"""
from numba import njit


@njit(fastmath={"reassoc"}, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def add(acc, value):
    return acc + value
