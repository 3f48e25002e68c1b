"""Reductions on CUDA: sum, amax, amin over a dim tuple, and argmax.

Reduced dims innermost or outermost: a one-step fused body, a block per row (fused.py).
Reduced dims in the middle, and argmax: one thread per result element, looping over the
elements it reduces. Combining and start values are the CPU's (core/reduce.py).
"""
from __future__ import annotations

from ...ir.fused import reduction_layout
from ...shapes import numel
from ..core.indexing import c_strides
from ..core.literals import np_type
from ..core.reduce import argmax_step, combine, identity
from . import runtime
from .fused import emit_body, single_op_body
from .kernel import emits, grid_stride, offset, unflatten


@emits("sum", "amax", "amin")
def emit_reduce(node, k) -> None:
    x = node.inputs[0]
    dims = tuple(sorted(node.attrs["dims"]))
    if numel(x.shape) == 0 or reduction_layout(tuple(x.shape), dims) is not None:
        emit_body(k, single_op_body(node))
        return
    # Reduced dims in the middle: one thread per result element, looping over its inputs.
    shape = tuple(x.shape)
    kept = [d for d in range(len(shape)) if d not in dims]
    out_n = numel([shape[d] for d in kept])
    xs = c_strides(shape)
    e, loop = grid_stride(k, out_n, runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, kept)
        acc = k.fresh("acc")
        k.line(f"{acc} = {identity(node.op.name, node.out.dtype)}")
        r = k.fresh("r")
        with k.block(f"for {r} in range({numel([shape[d] for d in dims])}):"):
            idx.update(unflatten(k, r, shape, list(dims)))
            value = f"{k.ins[0]}[{offset(idx, xs)}]"
            if x.dtype is not node.out.dtype:
                value = f"{np_type(node.out.dtype)}({value})"
            v = k.fresh("v")
            k.line(f"{v} = {value}")
            for text in combine(node.op.name, acc, v):
                k.line(text)
        k.line(f"{k.out}[{e}] = {acc}")


@emits("argmax")
def emit_argmax(node, k) -> None:
    x = node.inputs[0]
    shape, dim = tuple(x.shape), node.attrs["dim"]
    if dim is None:
        shape, dim = (numel(shape),), 0
    dim = dim % len(shape)
    kept = [d for d in range(len(shape)) if d != dim]
    xs = c_strides(shape)
    e, loop = grid_stride(k, numel([shape[d] for d in kept]), runtime.threads())
    with loop:
        idx = unflatten(k, e, shape, kept)
        base = k.fresh("base")
        k.line(f"{base} = {offset(idx, xs)}")
        best, at, r, v = k.fresh("best"), k.fresh("at"), k.fresh("r"), k.fresh("v")
        k.line(f"{best} = {k.ins[0]}[{base}]")
        k.line(f"{at} = 0")
        with k.block(f"for {r} in range(1, {shape[dim]}):"):
            k.line(f"{v} = {k.ins[0]}[{base} + {r} * {xs[dim]}]")
            argmax_step(k, v, best, at, r)
        k.line(f"{k.out}[{e}] = {at}")
