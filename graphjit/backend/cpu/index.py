"""Advanced indexing (``index``) and its gradient (``index_backward``) as explicit loops.

The key is resolved at compile time into an ``IndexPlan`` (core/index.py, NumPy's rules).
The kernel loops over the result in C order. Once the loops over B's dims (the broadcast
shape of the index tensors) are open it reads each index tensor, wraps negative indices
and raises IndexError for out-of-range ones, then copies ``x[offset]``. ``index_backward``
runs the same loops and does ``out[offset] += g[...]`` into zeros, so repeated indices
accumulate like ``np.add.at``.
"""
from __future__ import annotations

import contextlib

from ..core.index import node_plan, out_of_range
from ..core.indexing import affine, broadcast_strides, c_strides
from .kernel import emits


def _emit(node, k, x_shape, idx_types, accumulate: bool) -> None:
    plan = node_plan(node, x_shape, idx_types, accumulate, "CPU")
    x_strides = c_strides(x_shape)
    r_strides = c_strides(plan.shape)
    # One variable per indexed dim (a key may name one index tensor for two dims).
    values = [k.fresh(f"j{a}") for a in range(len(plan.arrays))]
    last_adv = max((p for p, r in enumerate(plan.dims) if r[0] == "adv"), default=-1)
    loop_vars = [None] * len(plan.dims)

    def load_indices():
        for (t, d), var in zip(plan.arrays, values):
            n = x_shape[d]
            b_strides = broadcast_strides(idx_types[t].shape, plan.bshape)
            b_vars = [loop_vars[p] for p, r in enumerate(plan.dims) if r[0] == "adv"]
            k.line(f"{var} = {k.ins[t + 1]}[{affine(0, zip(b_vars, b_strides))}]")
            with k.block(f"if {var} < 0:"):
                k.line(f"{var} += {n}")
            with k.block(f"if {var} < 0 or {var} >= {n}:"):
                message = out_of_range(t, d, x_shape, idx_types)
                k.line(f'raise IndexError("{node.op.name}: {message}")')

    with contextlib.ExitStack() as stack:
        if last_adv < 0:
            load_indices()  # 0-d index tensors only (or none)
        for p, r in enumerate(plan.dims):
            size = plan.shape[p]
            if size != 1:
                loop_vars[p] = k.fresh(f"i{sum(1 for v in loop_vars if v is not None)}")
                stack.enter_context(k.block(f"for {loop_vars[p]} in range({size}):"))
            if p == last_adv:
                load_indices()
        # The element of x: one term per dim of x, in dim order (int entries are in base).
        by_dim = {r[1]: (loop_vars[p], r[3] * x_strides[r[1]]) for p, r in enumerate(plan.dims)
                  if r[0] == "slice"}
        by_dim.update({d: (var, x_strides[d]) for (_, d), var in zip(plan.arrays, values)})
        x_at = affine(plan.slice_start(x_strides), [by_dim[d] for d in sorted(by_dim)])
        r_at = affine(0, zip(loop_vars, r_strides))
        if accumulate:
            k.line(f"{k.out}[{x_at}] += {k.ins[0]}[{r_at}]")
        else:
            k.line(f"{k.out}[{r_at}] = {k.ins[0]}[{x_at}]")


@emits("index")
def emit_index(node, k) -> None:
    x, *idx = node.inputs
    _emit(node, k, x.shape, [t.type for t in idx], accumulate=False)


@emits("index_backward")
def emit_index_backward(node, k) -> None:
    k.fill("0")
    _, *idx = node.inputs
    _emit(node, k, node.attrs["shape"], [t.type for t in idx], accumulate=True)
