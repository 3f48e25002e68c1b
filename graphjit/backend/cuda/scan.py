"""Scans and orders on CUDA (graphjit/ops/scan.py), with the CPU's order of operations
(rows as in core/scan.py), so the results are the CPU's and eager mode's bits:

- ``cumsum``: one thread per row, a running sum along it (backwards with ``reverse``);
- ``prod``: one thread per result element, multiplying its reduced elements in C order;
- ``argsort``: one thread per element, which counts the elements of its row that sort
  before it (core/scan.py's order, NaN largest) and the equal ones at lower positions:
  that count is its place in the stable order, where it writes its position. No scratch
  memory and no synchronisation; n comparisons a thread, so n^2 a row (a merge sort per
  row would need per-thread scratch of the row's length).

Ints and bools sum and multiply in int64.
"""
from __future__ import annotations

from ...shapes import numel
from ..core.indexing import c_strides
from ..core.literals import literal
from ..core.scan import before, rows, widened
from . import runtime
from .kernel import done_if_empty, emits, grid_stride, offset, unflatten


@emits("cumsum")
def emit_cumsum(node, k) -> None:
    if done_if_empty(node, k):
        return
    (x,) = node.inputs
    outer, n, inner = rows(x.shape, node.attrs["dim"])
    order = f"range({n - 1}, -1, -1)" if node.attrs["reverse"] else f"range({n})"
    e, loop = grid_stride(k, outer * inner, runtime.threads())
    with loop:
        base, acc, r, at = k.fresh("base"), k.fresh("acc"), k.fresh("r"), k.fresh("at")
        k.line(f"{base} = ({e} // {inner}) * {n * inner} + {e} % {inner}")
        k.line(f"{acc} = {literal(0, node.out.dtype)}")
        with k.block(f"for {r} in {order}:"):
            k.line(f"{at} = {base} + {r} * {inner}")
            k.line(f"{acc} = {acc} + {widened(f'{k.ins[0]}[{at}]', x.dtype, node.out.dtype)}")
            k.line(f"{k.out}[{at}] = {acc}")


@emits("prod")
def emit_prod(node, k) -> None:
    if done_if_empty(node, k):
        return
    (x,) = node.inputs
    shape, dims = tuple(x.shape), sorted(node.attrs["dims"])
    kept = [d for d in range(len(shape)) if d not in dims]
    e, loop = grid_stride(k, numel([shape[d] for d in kept]), runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, kept)
        acc, r = k.fresh("acc"), k.fresh("r")
        k.line(f"{acc} = {literal(1, node.out.dtype)}")
        with k.block(f"for {r} in range({numel([shape[d] for d in dims])}):"):
            idx.update(unflatten(k, r, shape, dims))  # C order over the reduced dims
            value = widened(f"{k.ins[0]}[{offset(idx, c_strides(shape))}]", x.dtype,
                            node.out.dtype)
            k.line(f"{acc} = {acc} * {value}")
        k.line(f"{k.out}[{e}] = {acc}")


@emits("argsort")
def emit_argsort(node, k) -> None:
    if done_if_empty(node, k):
        return
    (x,) = node.inputs
    outer, n, inner = rows(x.shape, node.attrs["dim"])
    descending = node.attrs["descending"]
    e, loop = grid_stride(k, outer * n * inner, runtime.threads())
    with loop:
        base, j, v, rank, m, w = (k.fresh(s) for s in ("base", "j", "v", "rank", "m", "w"))
        k.line(f"{j} = ({e} // {inner}) % {n}")
        k.line(f"{base} = {e} - {j} * {inner}")
        k.line(f"{v} = {k.ins[0]}[{e}]")
        k.line(f"{rank} = 0")
        with k.block(f"for {m} in range({n}):"):
            k.line(f"{w} = {k.ins[0]}[{base} + {m} * {inner}]")
            with k.block(f"if {before(w, v, descending)} or "
                         f"({m} < {j} and not {before(v, w, descending)}):"):
                k.line(f"{rank} += 1")
        k.line(f"{k.out}[{base} + {rank} * {inner}] = {j}")
