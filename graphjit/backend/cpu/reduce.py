"""Reductions: sum, amax, amin over a dim tuple, and argmax.

The input is walked in memory order. Its dims are first grouped into runs of reduced and
kept dims (``f32[2,3,4]`` over dims (1, 2) is kept 2 x reduced 12), then:
- innermost run reduced ("inner"): a scalar accumulator per output element, like
  ``out[i] = sum(x[i, :])``; a float sum adds through ``acc_add`` (an addition LLVM may
  reassociate, so the row's loop vectorises), float32 in blocks of ``SUM_BLOCK`` elements
  added to a float64 accumulator, as fused loops do ([Blocked sums] in fused.py; NumPy
  sums contiguous runs pairwise, which is about as accurate). A strict float64 add per
  element ran at one add per 4 cycles: batch norm's statistics (sums over N, H, W) took
  0.33 ms per 1 MB in W8;
- innermost run kept ("outer"): the output row is initialised to the identity and each
  input row is combined into it, like ``out[:] += x[r, :]``, a loop that vectorises.
``keepdim`` changes only the output's shape, which flat buffers do not see. Combining and
start values are the targets' shared ones (core/reduce.py).
"""
from __future__ import annotations

from ...shapes import numel
from ..core.indexing import affine, c_strides
from ..core.reduce import argmax_step, combine, identity
from .kernel import emits
from .loops import loop_nest

# Elements a float32 sum adds in float32 before adding them to its float64 accumulator
# (see [Blocked sums] in fused.py).
SUM_BLOCK = 256


def _groups(shape, dims):
    """[[size, reduced], ...]: runs of neighbouring reduced / kept dims, size-1 dims dropped."""
    groups = []
    for d, n in enumerate(shape):
        if n == 1:
            continue
        reduced = d in dims
        if groups and groups[-1][1] == reduced:
            groups[-1][0] *= n
        else:
            groups.append([n, reduced])
    return groups


def accumulate_statements(op_name, target, value, in_dtype, in_buffer=False) -> list:
    """Statements folding ``value`` into the accumulator ``target`` inside a fused loop.

    A float sum in a scalar accumulator goes through ``acc_add`` (backend/cpu/accumulate.py),
    an addition LLVM may reassociate, so the loop vectorises (NumPy's pairwise sum reorders
    too; fused loops sum float32 in blocks, see [Blocked sums] in fused.py); a sum into
    a buffer (``in_buffer``: one accumulator per kept element) needs no reordering to
    vectorise. amax/amin: see ``combine``.
    """
    if op_name == "sum" and in_dtype.is_floating_point and not in_buffer:
        return [f"{target} = acc_add({target}, {value})"]
    if op_name == "sum" and in_buffer:
        return [f"{target} = {target} + {value}"]
    return combine(op_name, target, value)


@emits("sum", "amax", "amin")
def emit_reduce(node, k) -> None:
    op_name = node.op.name
    (x,) = node.inputs
    groups = _groups(x.shape, node.attrs["dims"])
    if not any(reduced for _, reduced in groups):
        # Nothing to reduce (dims of size 1, or none): a copy, cast by the store for sum.
        with loop_nest(k, (numel(x.shape),)) as (i,):
            k.line(f"{k.out}[{affine(0, [(i, 1)])}] = {k.ins[0]}[{affine(0, [(i, 1)])}]")
        return
    sizes = [n for n, _ in groups]
    in_strides = c_strides(sizes)
    kept = [n for n, reduced in groups if not reduced]
    kept_strides = iter(c_strides(kept))
    out_strides = [0 if reduced else next(kept_strides) for _, reduced in groups]
    inner_reduced = groups[-1][1]
    outer_reduced = any(reduced for _, reduced in groups[:-1])
    init_out = outer_reduced or not inner_reduced
    if init_out:
        with loop_nest(k, (numel(node.out.shape),)) as (o,):
            k.line(f"{k.out}[{affine(0, [(o, 1)])}] = {identity(op_name, x.dtype, False)}")
    v = k.fresh("v")
    if inner_reduced:
        acc = k.fresh("acc")
        # float32 sums: per block in float32, then into the float64 accumulator.
        blk = k.fresh("blk") if op_name == "sum" and x.dtype.name == "float32" else None
        block = (SUM_BLOCK, lambda: [f"{blk} = np.float32(0.0)"],
                 lambda: [f"{acc} += {blk}"]) if blk else None
        with loop_nest(k, sizes[:-1]) as idx:
            target = f"{k.out}[{affine(0, zip(idx, out_strides))}]"
            k.line(f"{acc} = {identity(op_name, x.dtype, True)}")
            terms = list(zip(idx, in_strides))
            with loop_nest(k, sizes[-1:], hint="r", block=block) as (r,):
                k.line(f"{v} = {k.ins[0]}[{affine(0, terms + [(r, 1)])}]")
                for stmt in accumulate_statements(op_name, blk or acc, v, x.dtype):
                    k.line(stmt)
            if outer_reduced:
                for stmt in combine(op_name, target, acc):
                    k.line(stmt)
            else:
                k.line(f"{target} = {acc}")
    else:
        with loop_nest(k, sizes) as idx:
            k.line(f"{v} = {k.ins[0]}[{affine(0, zip(idx, in_strides))}]")
            for stmt in combine(op_name, f"{k.out}[{affine(0, zip(idx, out_strides))}]", v):
                k.line(stmt)


@emits("argmax")
def emit_argmax(node, k) -> None:
    # The input seen as (outer, n, inner) with n the reduced dim (all of it for dim=None).
    (x,) = node.inputs
    dim = node.attrs["dim"]
    shape = tuple(x.shape)
    if dim is None:
        outer, n, inner = 1, numel(shape), 1
    else:
        outer, n, inner = numel(shape[:dim]), shape[dim], numel(shape[dim + 1:])
    best, at, v = k.fresh("best"), k.fresh("at"), k.fresh("v")
    with loop_nest(k, (outer, inner)) as (a, b):
        base = [(a, n * inner), (b, 1)]
        k.line(f"{best} = {k.ins[0]}[{affine(0, base)}]")
        k.line(f"{at} = 0")
        r = k.fresh("r")
        with k.block(f"for {r} in range(1, {n}):"):
            k.line(f"{v} = {k.ins[0]}[{affine(0, base + [(r, inner)])}]")
            argmax_step(k, v, best, at, r)
        k.line(f"{k.out}[{affine(0, [(a, inner), (b, 1)])}] = {at}")
