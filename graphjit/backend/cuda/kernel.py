"""What a CUDA emitter receives: a ``CudaKernelWriter`` for one node, the emitter table, and
the thread-indexing helpers the emitters share.

# NOTE: [CUDA kernels]
Buffers are flat 1-D device arrays, as on the CPU ([Flat buffers] in
graphjit/ir/buffers.py): shapes live in the index arithmetic, ``reshape`` and ``detach``
are the input's buffer. Each kernel is a ``@cuda.jit`` function ``k(in0, ..., out)`` whose
loops are grid-stride loops (see [Launch sizes] in runtime.py), so the launch sizes are a
speed choice only. How each op family uses the threads is said in its file, named like
graphjit/ops/<family>.py: ``elementwise.py`` and ``fused.py`` (one thread per element; a
block per row for reductions), ``reduce.py``, ``linalg.py`` (tiles in shared memory),
``index.py`` (gathers and atomic scatters; index errors flagged, see below), ``shape.py``
and ``creation.py`` (one thread per result element), ``window.py``, ``random.py``.

An index out of range cannot raise inside a kernel: the thread sets the program's ``err``
flag to the error code of the index tensor holding it (one code per index tensor of each
node, numbered by codegen.py; unless an earlier flag is set: the first error is the one
reported, as on the CPU, which names the tensor too), and the driver checks the flag
before the first kernel that writes into an input's buffer (an in-place update), or the
program after the last launch, and raises the IndexError, so a failing step leaves every
tensor as it was (see codegen.py, program.py).
"""
from __future__ import annotations

from ...shapes import numel
from ..core.indexing import affine
from ..core.kernel import Emitters, KernelWriter
from ..core.scalar import scalar_expression
from . import runtime

EMITTERS = Emitters("cuda")
emits = EMITTERS.emits


def cuda_scalar(step, operands) -> str:
    """The step's scalar expression for a CUDA kernel: the op's ``OpDef.scalar`` text (or
    its override, registered by elementwise.py), literals typed, ``math.*`` left to
    libdevice."""
    return scalar_expression(step, operands, overrides=EMITTERS.overrides)


# Names a kernel module defines at top level; kernel locals must not shadow them.
MODULE_GLOBALS = ("math", "np", "cuda", "k")


class CudaKernelWriter(KernelWriter):
    """The kernel being written for one node (see core/kernel.py), and what CUDA adds: its
    launch sizes, and the IndexError messages it may flag."""

    def __init__(self, node, name: str):
        super().__init__(node, name, MODULE_GLOBALS + ("err",))
        self.grid = (1,)
        self.threads = (1,)
        # The IndexError messages this kernel may flag, one per index tensor it checks: the
        # kernel flags ERROR_BASE + position (from 1); codegen numbers them ([CUDA kernels]).
        self.errors = []

    def launch(self, grid, block) -> None:
        """Launch ``grid`` blocks of ``block`` threads (tuples, up to three dims)."""
        self.grid, self.threads = tuple(grid), tuple(block)

    @property
    def params(self) -> list:
        return self.ins + self.outs + (["err"] if self.errors else [])


def unflatten(k, flat: str, shape, dims) -> dict:
    """Lines setting one index variable per dim in ``dims`` (of ``shape``) from ``flat``,
    the C-order position over those dims; size-1 dims get None."""
    idx = {}
    sizes = [shape[d] for d in dims]
    for pos, d in enumerate(dims):
        if shape[d] == 1:
            idx[d] = None
            continue
        inner = numel(sizes[pos + 1:])
        outermost = all(shape[e] == 1 for e in dims[:pos])
        expr = flat if inner == 1 else f"{flat} // {inner}"
        if not outermost:
            expr = f"({expr}) % {shape[d]}"
        var = k.fresh(f"i{d}_")
        k.line(f"{var} = {expr}")
        idx[d] = var
    return idx


def offset(idx: dict, strides, base: int = 0) -> str:
    """``base`` plus each dim's index variable times its stride."""
    return affine(base, [(idx.get(d), st) for d, st in enumerate(strides)])


def grid_stride(k, work: int, block: int, hint: str = "e"):
    """``for e in range(first, work, step):`` over one thread per work item."""
    k.launch((runtime.grid_for(work, block),), (block,))
    var = k.fresh(hint)
    return var, k.block(f"for {var} in range(cuda.grid(1), {work}, cuda.gridsize(1)):")


def done_if_empty(node, k) -> bool:
    """No element to compute: no kernel."""
    if numel(node.out.shape) == 0:
        k.no_kernel = True
        return True
    return False
