"""What CUDA programs need at run time: ``numba.cuda`` (imported on first use), launch sizes,
a fill kernel, and the eager single-op programs.

# NOTE: [Launch sizes]
Every generated kernel walks its work with grid-stride loops, so any grid computes the
whole result; the sizes below only decide how fast. They are fixed per target when the
program is generated (written into the kernel text: a block's shared arrays are sized by
them), from the static shapes: ``grid = min(ceil(work / block), MAX_BLOCKS)``. On a GPU a
block is 256 threads (a reduction block is the smallest power of two >= the row length,
32 to 256), matrix tiles are 16 x 16. Numba's simulator runs each thread as a Python
thread and each ``syncthreads`` costs milliseconds, so there blocks are small (32 threads,
reductions 8, tiles 4 x 4) and grids at most 2 blocks: the tests run the same code paths
(block trees, several blocks, grid-stride loops) in seconds.
"""
from __future__ import annotations

import functools

import numpy as np


def cuda():
    """The ``numba.cuda`` module (imports it: call only for CUDA work)."""
    from numba import cuda as module
    return module


@functools.lru_cache(maxsize=None)
def simulated() -> bool:
    from ... import cuda as gj_cuda
    return gj_cuda.is_simulator()


def threads() -> int:
    """Threads per block of an elementwise kernel."""
    return 32 if simulated() else 256


def max_blocks() -> int:
    return 2 if simulated() else 8192


def reduction_threads(row_length: int) -> int:
    """Threads per block of a block-level reduction over rows of ``row_length`` elements: a
    power of two (the tree halves it), no more than the row needs."""
    if simulated():
        return 8 if row_length > 4 else 4
    n = 32
    while n < 256 and n < row_length:
        n *= 2
    return n


def tile() -> int:
    """The side of a matrix-product tile (a block is tile x tile threads)."""
    return 4 if simulated() else 16


def grid_for(work: int, block: int) -> int:
    return max(1, min(-(-work // block), max_blocks()))


# ---- fill ----------------------------------------------------------------------------------

def fill(arr, value) -> None:
    """Set every element of the device array ``arr`` to ``value``."""
    flat = arr.reshape(arr.size) if arr.ndim != 1 else arr
    if flat.size == 0:
        return
    scalar = np.array(value).astype(flat.dtype)[()]
    block = threads()
    from .fill import fill_kernel  # imports numba.cuda
    fill_kernel[grid_for(flat.size, block), block](flat, scalar)


def copy_array(arr):
    """A new device array with ``arr``'s data."""
    out = cuda().device_array(arr.shape, arr.dtype)
    out.copy_to_device(arr)
    return out
