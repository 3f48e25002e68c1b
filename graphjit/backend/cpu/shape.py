"""Movement ops. ``reshape`` is free (see [Flat buffers] in graphjit/ir/buffers.py); ``permute``,
``expand`` and ``slice`` are copies that read the input with per-dim strides
(``expand``: stride 0 on broadcast dims; ``slice``: stride times step, from a start
offset); ``slice_backward`` and ``cat`` write their input(s) into a region of the output.
"""
from __future__ import annotations

from ..core.indexing import affine, broadcast_strides, c_strides, slice_region
from .kernel import emits
from .loops import coalesce, loop_nest


def strided_copy(k, shape, dst, dst_base, dst_strides, src, src_base, src_strides) -> None:
    """``dst[dst_base + i . dst_strides] = src[src_base + i . src_strides]`` for every index
    ``i`` of ``shape``, as one loop nest."""
    shape, (ds, ss) = coalesce(shape, [dst_strides, src_strides])
    with loop_nest(k, shape) as idx:
        k.line(f"{dst}[{affine(dst_base, zip(idx, ds))}] = {src}[{affine(src_base, zip(idx, ss))}]")


@emits("permute")
def emit_permute(node, k) -> None:
    x_strides = c_strides(node.inputs[0].shape)
    src_strides = [x_strides[d] for d in node.attrs["dims"]]
    out_shape = node.out.shape
    strided_copy(k, out_shape, k.out, 0, c_strides(out_shape), k.ins[0], 0, src_strides)


@emits("expand")
def emit_expand(node, k) -> None:
    out_shape = node.out.shape
    strided_copy(k, out_shape, k.out, 0, c_strides(out_shape),
                 k.ins[0], 0, broadcast_strides(node.inputs[0].shape, out_shape))


@emits("slice")
def emit_slice(node, k) -> None:
    base, strides = slice_region(node.inputs[0].shape, node.attrs["starts"], node.attrs["steps"])
    out_shape = node.out.shape
    strided_copy(k, out_shape, k.out, 0, c_strides(out_shape), k.ins[0], base, strides)


@emits("slice_backward")
def emit_slice_backward(node, k) -> None:
    # Zeros everywhere but the sliced region, which receives the gradient.
    k.fill("0")
    base, strides = slice_region(node.out.shape, node.attrs["starts"], node.attrs["steps"])
    g_shape = node.inputs[0].shape
    strided_copy(k, g_shape, k.out, base, strides, k.ins[0], 0, c_strides(g_shape))


@emits("cat")
def emit_cat(node, k) -> None:
    dim = node.attrs["dim"]
    out_strides = c_strides(node.out.shape)
    offset = 0
    for i, x in enumerate(node.inputs):
        strided_copy(k, x.shape, k.out, offset * out_strides[dim], out_strides,
                     k.ins[i], 0, c_strides(x.shape))
        offset += x.shape[dim]
