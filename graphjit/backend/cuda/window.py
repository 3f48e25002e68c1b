"""Sliding windows on CUDA: ``unfold`` (im2col) and ``fold`` (col2im), one thread per output
element (see [Window layout] in graphjit/ops/window.py).

``unfold``: each thread finds its window element's input position, or writes ``pad_value``
where the window reaches into the padding. ``fold``: each thread gathers the window elements
that land on its output element, looping over (i, j) in row-major order and adding them to
a zero of the output's dtype: the same additions in the same order as eager mode's NumPy
adds, so the same bits, and no atomics (no two threads write one element).
"""
from __future__ import annotations

from ...shapes import numel
from ..core.literals import literal
from . import runtime
from .kernel import emits, grid_stride, unflatten


@emits("unfold")
def emit_unfold(node, k) -> None:
    a = node.attrs
    n, c, h, w = node.inputs[0].shape
    (kh, kw), (dh, dw), (sh, sw) = a["kernel"], a["dilation"], a["stride"]
    top, _, left, _ = a["padding"]
    oh, ow = node.out.shape[4:]
    if numel(node.out.shape) == 0:
        k.no_kernel = True
        return
    e, loop = grid_stride(k, numel(node.out.shape), runtime.threads())
    with loop:
        # The element's (plane, i, j, r, q) from its index in the windows' layout.
        if a["layout"] == "NC":
            idx = unflatten(k, e, (n * c, kh, kw, oh, ow), list(range(5)))
            plane, i, j, r, q = (idx[d] or "0" for d in range(5))
        else:
            idx = unflatten(k, e, (c, kh, kw, n, oh, ow), list(range(6)))
            ch, i, j, b, r, q = (idx[d] or "0" for d in range(6))
            plane = k.fresh("plane")
            k.line(f"{plane} = {b} * {c} + {ch}")
        ih, iw = k.fresh("ih"), k.fresh("iw")
        k.line(f"{ih} = {r} * {sh} - {top} + {i} * {dh}")
        k.line(f"{iw} = {q} * {sw} - {left} + {j} * {dw}")
        with k.block(f"if {ih} >= 0 and {ih} < {h} and {iw} >= 0 and {iw} < {w}:"):
            k.line(f"{k.out}[{e}] = {k.ins[0]}[{plane} * {h * w} + {ih} * {w} + {iw}]")
        with k.block("else:"):
            k.line(f"{k.out}[{e}] = {literal(a['pad_value'], node.out.dtype)}")


@emits("fold")
def emit_fold(node, k) -> None:
    a = node.attrs
    n, c = node.out.shape[:2]
    (kh, kw), (oh, ow) = a["kernel"], node.inputs[0].shape[4:]
    (dh, dw), (sh, sw) = a["dilation"], a["stride"]
    top, _, left, _ = a["padding"]
    h, w = a["output_size"]
    shape = (n * c, h, w)
    if numel(shape) == 0:
        k.no_kernel = True
        return
    zero = literal(0, node.out.dtype)
    e, loop = grid_stride(k, numel(shape), runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, list(range(3)))
        plane, y, x = (idx[d] or "0" for d in range(3))
        acc, i, j, rr, cc = (k.fresh(s) for s in ("acc", "i", "j", "rr", "cc"))
        base = k.fresh("cbase")
        if a["layout"] == "NC":  # where the plane's windows start, and (i, j)'s step
            k.line(f"{base} = {plane} * {kh * kw * oh * ow}")
            step = oh * ow
        else:
            k.line(f"{base} = (({plane} % {c}) * {kh * kw * n} + {plane} // {c}) * {oh * ow}")
            step = n * oh * ow
        k.line(f"{acc} = {zero}")
        with k.block(f"for {i} in range({kh}):"):
            k.line(f"{rr} = {y} + {top} - {i} * {dh}")
            with k.block(f"if {rr} >= 0 and {rr} % {sh} == 0 and {rr} // {sh} < {oh}:"):
                with k.block(f"for {j} in range({kw}):"):
                    k.line(f"{cc} = {x} + {left} - {j} * {dw}")
                    with k.block(f"if {cc} >= 0 and {cc} % {sw} == 0 and {cc} // {sw} < {ow}:"):
                        k.line(f"{acc} += {k.ins[0]}[{base} + ({i} * {kw} + {j}) * {step} + "
                               f"({rr} // {sh}) * {ow} + {cc} // {sw}]")
        k.line(f"{k.out}[{e}] = {acc}")
