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

import contextlib
import functools
import warnings

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


# ---- compiling and launching -----------------------------------------------------------------

def precompile(kernels, signatures) -> None:
    """Compile each kernel (``@cuda.jit`` dispatchers; or load it from its disk cache) for
    the argument types of its launches (``GeneratedCudaModule.kernel_signatures``) before
    the program first runs. Numba would compile a kernel at its first launch, halfway
    through a step: a kernel that failed then would leave the in-place updates launched
    before it done, and the first step would pay every compile. Needs the GPU (its compute
    capability); not for the simulator."""
    from .ptx import numba_signature
    for kernel, launches in zip(kernels, signatures):
        for signature in launches:
            kernel.compile(numba_signature(signature))


@contextlib.contextmanager
def launch_configurations():
    """Around importing a program module, which configures its launches (``k[grid,
    block]``) once: without Numba's warning that a grid of under 128 blocks under-uses the
    GPU. Small shapes make small grids on purpose ([Launch sizes]); the warning would fire
    for most eager ops."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Grid size \d+ will likely result in GPU")
        yield


# ---- fill ----------------------------------------------------------------------------------

def fill(arr, value) -> None:
    """Set every element of the device array ``arr`` to ``value``."""
    flat = arr.reshape(arr.size) if arr.ndim != 1 else arr
    if flat.size == 0:
        return
    scalar = np.array(value).astype(flat.dtype)[()]
    block = threads()
    from .fill import fill_kernel  # imports numba.cuda
    grid = grid_for(flat.size, block)
    launch = _FILL_AT.get(grid)
    if launch is None:
        with launch_configurations():
            launch = _FILL_AT[grid] = fill_kernel[grid, block]
    launch(flat, scalar)


_FILL_AT: dict = {}  # grid -> the fill kernel's launch configuration


class FlaggedError(Exception):
    """A kernel flagged an error: ``code`` indexes the program's messages (from 1)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def check_flag(err) -> None:
    """Raise FlaggedError if a kernel set the error flag ``err`` (and clear it). Reads the
    flag back from the device, so it waits for the kernels launched before."""
    code = int(err.copy_to_host()[0])
    if code:
        fill(err, 0)
        raise FlaggedError(code)


def copy_array(arr):
    """A new array with ``arr``'s data, where ``arr`` is (a device array, or a host one)."""
    if type(arr) is np.ndarray:
        return arr.copy()
    out = cuda().device_array(arr.shape, arr.dtype)
    out.copy_to_device(arr)
    return out


def host_op(call: str, dtype: str):
    """The host node ``call`` (an op and its attributes in IR syntax, ``"pow(...)"``) as a
    function of flat 1-element NumPy arrays giving one of ``dtype``: the op's NumPy kernel,
    run as eager mode runs it on CPU tensors (see [Host scalars] in graphjit/ir/host.py)."""
    from ...dtypes import from_short
    from ...ir.parser import parse_op_call
    op, _, attrs = parse_op_call(call)
    impl, out_dtype = op.impl, from_short(dtype).np

    def run(*arrays):
        with np.errstate(all="ignore"):
            result = np.asarray(impl(*arrays, **attrs))
        return result.astype(out_dtype, copy=False).reshape(1)
    run.__name__ = f"host_{op.name}"
    return run
