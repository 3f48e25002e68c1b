"""Movement ops on CUDA. ``reshape`` is free ([Flat buffers] in graphjit/ir/buffers.py);
``permute``, ``expand`` and ``slice`` are copies, one thread per result element, reading the
input with per-dim strides; ``slice_backward`` and ``cat`` write their input(s) into a
region of the output."""
from __future__ import annotations

from ...shapes import numel
from ..core.indexing import broadcast_strides, c_strides, slice_region
from ..core.literals import literal
from . import runtime
from .kernel import done_if_empty, emits, grid_stride, offset, unflatten


def _copy(k, shape, src: str, src_strides, src_base=0, dst=None, dst_strides=None, dst_base=0):
    """``dst[...] = src[...]`` for every element of ``shape``, one thread each."""
    n = numel(shape)
    if n == 0:
        return
    e, loop = grid_stride(k, n, runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, list(range(len(shape))))
        dst = dst or k.out
        to = e if dst_strides is None else offset(idx, dst_strides, dst_base)
        k.line(f"{dst}[{to}] = {src}[{offset(idx, src_strides, src_base)}]")


@emits("permute")
def emit_permute(node, k) -> None:
    if done_if_empty(node, k):
        return
    xs = c_strides(node.inputs[0].shape)
    _copy(k, tuple(node.out.shape), k.ins[0], tuple(xs[d] for d in node.attrs["dims"]))


@emits("expand")
def emit_expand(node, k) -> None:
    if done_if_empty(node, k):
        return
    _copy(k, tuple(node.out.shape), k.ins[0],
          broadcast_strides(node.inputs[0].shape, node.out.shape))


@emits("slice")
def emit_slice(node, k) -> None:
    if done_if_empty(node, k):
        return
    base, strides = slice_region(node.inputs[0].shape, node.attrs["starts"], node.attrs["steps"])
    _copy(k, tuple(node.out.shape), k.ins[0], strides, base)


@emits("slice_backward")
def emit_slice_backward(node, k) -> None:
    k.fill(literal(0, node.out.dtype))
    g = node.inputs[0]
    if numel(g.shape) == 0:
        k.no_kernel = True
        return
    base, strides = slice_region(node.out.shape, node.attrs["starts"], node.attrs["steps"])
    _copy(k, tuple(g.shape), k.ins[0], c_strides(g.shape), 0, k.out, strides, base)


@emits("cat")
def emit_cat(node, k) -> None:
    if done_if_empty(node, k):
        return
    dim = node.attrs["dim"] % len(node.out.shape)
    os_ = c_strides(node.out.shape)
    at = 0
    biggest = max(numel(v.shape) for v in node.inputs)
    k.launch((runtime.grid_for(biggest, runtime.threads()),), (runtime.threads(),))
    for i, v in enumerate(node.inputs):
        shape = tuple(v.shape)
        n = numel(shape)
        if n:
            e = k.fresh("e")
            with k.block(f"for {e} in range(cuda.grid(1), {n}, cuda.gridsize(1)):"):
                idx = unflatten(k, e, shape, list(range(len(shape))))
                k.line(f"{k.out}[{offset(idx, os_, at * os_[dim])}] = {k.ins[i]}[{e}]")
        at += shape[dim]
