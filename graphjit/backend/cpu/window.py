"""Sliding windows: ``unfold`` (im2col) copies every window's elements out, ``fold``
(col2im) adds them back (see [Window layout] in graphjit/ops/window.py).

Both walk the same loop nest, one (n, c) plane after another (the planes in parallel
chunks when the tensor is large: no two planes share an output element, so there are no
races and the result does not depend on the threads):

    for nc in range(N * C):
        for i in range(KH):
            for j in range(KW):
                ow_lo, ow_hi = the windows whose column j lands inside the input
                for oh in range(OH):
                    ih = oh * SH - top + i * DH
                    if 0 <= ih < H:
                        for ow in range(ow_lo, ow_hi):
                            cols[...] = x[nc, ih, ow * SW - left + j * DW]     # unfold
                            out[nc, ih, ...] += cols[...]                       # fold

``unfold`` also writes ``pad_value`` where a window reaches into the padding; ``fold`` starts
from zeros and adds in (i, j) row-major order, the order of eager mode's NumPy adds, so each
output element is the same sum with the same rounding.
"""
from __future__ import annotations

import contextlib

from ...shapes import numel
from ..core.literals import literal
from .kernel import emits
from .loops import parallel_chunks, parallel_min_elements


def _window_nest(k, batch, channels, layout, kernel, dilation, stride, padding, size, counts,
                 body_valid, body_pad=None, work=0):
    """The loop nest above: ``body_valid(plane, cols_row, x_row, ow_lo, ow_hi)`` writes the
    valid part of one window row, ``body_pad(cols_row, lo, hi)`` the padded part (unfold).
    ``layout`` is the windows' (see [Window layout]): where a plane's window rows start."""
    (kh, kw), (dh, dw), (sh, sw) = kernel, dilation, stride
    top, _, left, _ = padding
    h, w = size
    oh, ow = counts
    n_planes = batch * channels
    parallel = n_planes > 1 and work >= parallel_min_elements()
    plane = k.fresh("nc")
    base = k.fresh("cbase")
    i, j, r = k.fresh("i"), k.fresh("j"), k.fresh("oh")
    lo, hi, ih = k.fresh("ow_lo"), k.fresh("ow_hi"), k.fresh("ih")
    cols_row, x_row = k.fresh("crow"), k.fresh("xrow")
    with contextlib.ExitStack() as stack:
        if parallel:  # chunks of planes (see [Parallel loops] in loops.py)
            k.parallel = True
            chunks = parallel_chunks(n_planes)
            k.chunk = k.fresh("c")
            stack.enter_context(k.block(f"for {k.chunk} in prange({chunks}):"))
            stack.enter_context(k.block(
                f"for {plane} in range({k.chunk} * {n_planes} // {chunks}, "
                f"({k.chunk} + 1) * {n_planes} // {chunks}):"))
        else:
            stack.enter_context(k.block(f"for {plane} in range({n_planes}):"))
        if layout == "NC":  # cols[n, c, i, j, oh, ow]: plane n*C + c's windows are together
            k.line(f"{base} = {plane} * {kh * kw * oh * ow}")
            step = oh * ow
        else:  # cols[c, i, j, n, oh, ow]
            k.line(f"{base} = (({plane} % {channels}) * {kh * kw * batch} + {plane} // "
                   f"{channels}) * {oh * ow}")
            step = batch * oh * ow
        stack.enter_context(k.block(f"for {i} in range({kh}):"))
        stack.enter_context(k.block(f"for {j} in range({kw}):"))
        # The windows ow whose column ow*sw - left + j*dw lies in [0, w).
        k.line(f"{lo} = max(0, ({left} - {j} * {dw} + {sw - 1}) // {sw})")
        k.line(f"{hi} = max({lo}, min({ow}, ({w - 1 + left} - {j} * {dw}) // {sw} + 1))")
        with k.block(f"for {r} in range({oh}):"):
            k.line(f"{ih} = {r} * {sh} - {top} + {i} * {dh}")
            k.line(f"{cols_row} = {base} + ({i} * {kw} + {j}) * {step} + {r} * {ow}")
            with k.block(f"if {ih} >= 0 and {ih} < {h}:"):
                k.line(f"{x_row} = {plane} * {h * w} + {ih} * {w} + {j} * {dw} - {left}")
                body_valid(cols_row, x_row, lo, hi)
                if body_pad is not None:
                    body_pad(cols_row, "0", lo)
                    body_pad(cols_row, hi, str(ow))
            if body_pad is not None:
                with k.block("else:"):
                    body_pad(cols_row, "0", str(ow))


def emit_windows(k, x, cols, x_shape, attrs, layout, counts, dtype, x_at=None, work=0):
    """The lines that unfold ``x`` (a flat buffer holding an image of ``x_shape`` [N, C, H, W]
    from element ``x_at`` on, an expression) into ``cols`` in ``layout``; ``attrs``: the
    unfold's (kernel, dilation, stride, padding, pad_value); ``work``: the elements written,
    for the choice of a parallel loop (0: serial)."""
    n, c, h, w = x_shape
    sw = attrs["stride"][1]
    pad = literal(attrs["pad_value"], dtype)
    start = "" if x_at is None else f"{x_at} + "

    def valid(cols_row, x_row, lo, hi):
        q = k.fresh("ow")
        with k.block(f"for {q} in range({lo}, {hi}):"):
            k.line(f"{cols}[{k.at(f'{cols_row} + {q}')}] = "
                   f"{x}[{k.at(f'{start}{x_row} + {q} * {sw}')}]")

    def padded(cols_row, lo, hi):
        q = k.fresh("ow")
        with k.block(f"for {q} in range({lo}, {hi}):"):
            k.line(f"{cols}[{k.at(f'{cols_row} + {q}')}] = {pad}")

    _window_nest(k, n, c, layout, attrs["kernel"], attrs["dilation"], attrs["stride"],
                 attrs["padding"], (h, w), counts, valid, padded, work=work)


@emits("unfold")
def emit_unfold(node, k) -> None:
    if numel(node.out.shape) == 0:
        return
    emit_windows(k, k.ins[0], k.out, node.inputs[0].shape, node.attrs, node.attrs["layout"],
                 tuple(node.out.shape[4:]), node.out.dtype, work=numel(node.out.shape))


@emits("fold")
def emit_fold(node, k) -> None:
    a = node.attrs
    n, c = node.out.shape[:2]
    counts = tuple(node.inputs[0].shape[4:])
    sw = a["stride"][1]
    k.fill("0")
    if numel(node.inputs[0].shape) == 0:
        return

    def valid(cols_row, x_row, lo, hi):
        q = k.fresh("ow")
        with k.block(f"for {q} in range({lo}, {hi}):"):
            k.line(f"{k.out}[{k.at(f'{x_row} + {q} * {sw}')}] += "
                   f"{k.ins[0]}[{k.at(f'{cols_row} + {q}')}]")

    _window_nest(k, n, c, a["layout"], a["kernel"], a["dilation"], a["stride"], a["padding"],
                 a["output_size"], counts, valid, work=numel(node.inputs[0].shape))
