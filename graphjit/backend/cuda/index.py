"""Gather (``index``) and scatter-add (``index_backward``) on CUDA: one thread per gathered
element, the key's plan being the CPU's (core/index.py). ``index_backward`` adds with
atomics into zeros (repeated indices accumulate). An index out of range is flagged, not
raised: see [CUDA kernels] in kernel.py.
"""
from __future__ import annotations

from ...shapes import numel
from ..core.index import node_plan, out_of_range
from ..core.indexing import affine, broadcast_strides, c_strides
from ..core.literals import literal
from . import runtime
from .kernel import emits, grid_stride, unflatten


def _emit_index(node, k, x_shape, idx_types, accumulate: bool) -> None:
    plan = node_plan(node, x_shape, idx_types, accumulate, "CUDA")
    n = numel(plan.shape)
    if accumulate:
        k.fill(literal(0, node.out.dtype))
    if n == 0:
        k.no_kernel = True
        return
    x_strides, r_strides = c_strides(x_shape), c_strides(plan.shape)
    e, loop = grid_stride(k, n, runtime.threads())
    messages = []
    with loop:
        ridx = unflatten(k, e, plan.shape, list(range(len(plan.shape))))
        by_pos = {p: ridx.get(p) for p in range(len(plan.dims))}
        adv = [by_pos[p] for p, r in enumerate(plan.dims) if r[0] == "adv"]
        terms = []
        bad = k.fresh("bad")  # 0, or the code of the first index tensor out of range
        if plan.arrays:
            k.line(f"{bad} = 0")
        for m, (t, d) in enumerate(plan.arrays, start=1):
            size = x_shape[d]
            bst = broadcast_strides(idx_types[t].shape, plan.bshape)
            var = k.fresh(f"j{t}_")
            k.line(f"{var} = {k.ins[t + 1]}[{affine(0, zip(adv, bst))}]")
            with k.block(f"if {var} < 0:"):
                k.line(f"{var} += {size}")
            with k.block(f"if {bad} == 0 and ({var} < 0 or {var} >= {size}):"):
                k.line(f"{bad} = ERROR_BASE + {m}")
            terms.append((var, x_strides[d]))
            messages.append(out_of_range(t, d, x_shape, idx_types))
        for p, r in enumerate(plan.dims):
            if r[0] == "slice":
                terms.append((by_pos[p], r[3] * x_strides[r[1]]))
        x_at = affine(plan.slice_start(x_strides), terms)
        r_at = affine(0, [(by_pos[p], r_strides[p]) for p in range(len(plan.dims))])
        move = (f"cuda.atomic.add({k.out}, {x_at}, {k.ins[0]}[{r_at}])" if accumulate
                else f"{k.out}[{r_at}] = {k.ins[0]}[{x_at}]")
        if not plan.arrays:
            k.line(move)
        else:
            with k.block(f"if {bad} == 0:"):
                k.line(move)
            with k.block("else:"):
                k.line(f"cuda.atomic.cas(err, 0, 0, {bad})")  # the first flag set stays
            k.errors = messages


@emits("index")
def emit_index(node, k) -> None:
    x, *idx = node.inputs
    _emit_index(node, k, tuple(x.shape), [t.type for t in idx], accumulate=False)


@emits("index_backward")
def emit_index_backward(node, k) -> None:
    _, *idx = node.inputs
    _emit_index(node, k, tuple(node.attrs["shape"]), [t.type for t in idx], accumulate=True)
