"""Advanced indexing (``index``) and its gradient (``index_backward``) as explicit loops.

The ``key`` template (see [Index keys] in graphjit/ops/index.py) is resolved at compile
time into a plan of NumPy's rules:
- ``...`` expands to full slices, and missing trailing dims get full slices;
- the index tensors broadcast together to a shape B; when there is at least one index
  tensor, int entries are advanced indices too (0-d, B unchanged);
- B's dims replace the advanced entries in the result if those are adjacent in the key,
  else they go first (a slice, ``None`` or ``...`` between them separates them);
- slices and ``None`` keep their place; ints and index tensors consume their dim.
The kernel loops over the result in C order. Once the loops over B's dims are open it
reads each index tensor (broadcast over B), wraps negative indices and raises IndexError
for out-of-range ones, then copies ``x[offset]``. ``index_backward`` runs the same loops
and does ``out[offset] += g[...]`` into zeros, so repeated indices accumulate like
``np.add.at``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ...errors import GraphjitError
from ...ops.index import describe_key
from ...shapes import broadcast_shapes
from .kernel import emits
from .loops import affine, broadcast_strides, c_strides


@dataclass
class IndexPlan:
    """How a key reads x. Per result dim: ``("slice", x_dim, start, step, size)``,
    ``("new",)`` (from None) or ``("adv", b)`` (dim b of B)."""
    shape: tuple                                # the result's shape
    dims: list
    arrays: list = field(default_factory=list)  # (index tensor k, x dim it indexes)
    base: int = 0                               # element offset of the int entries
    bshape: tuple = ()                          # B, the broadcast shape of the index tensors


def index_plan(x_shape, key, idx_shapes) -> IndexPlan:
    x_shape = tuple(x_shape)
    x_strides = c_strides(x_shape)
    has_tensor = any(e[0] == "t" for e in key)

    def advanced(entry):
        return entry[0] == "t" or (entry[0] == "i" and has_tensor)

    positions = [p for p, e in enumerate(key) if advanced(e)]
    adjacent = positions == list(range(positions[0], positions[-1] + 1)) if positions else True
    consumed = sum(1 for e in key if e[0] in ("t", "s", "i"))
    full = ("s", None, None, None)
    entries = []
    for e in key:
        entries.extend([full] * (len(x_shape) - consumed) if e[0] == "e" else [e])
    if not any(e[0] == "e" for e in key):
        entries.extend([full] * (len(x_shape) - consumed))

    plan = IndexPlan(shape=(), dims=[])
    plan.bshape = broadcast_shapes("index", *[idx_shapes[e[1]] for e in entries if e[0] == "t"])
    insert_at = None
    d = 0
    for e in entries:
        if advanced(e) and insert_at is None:
            insert_at = len(plan.dims)
        tag = e[0]
        if tag == "n":
            plan.dims.append(("new",))
            continue
        size = x_shape[d]
        if tag == "s":
            start, stop, step = slice(e[1], e[2], e[3]).indices(size)
            plan.dims.append(("slice", d, start, step, len(range(start, stop, step))))
        elif tag == "i":
            plan.base += (e[1] + size if e[1] < 0 else e[1]) * x_strides[d]
        else:
            plan.arrays.append((e[1], d))
        d += 1
    bdims = [("adv", j) for j in range(len(plan.bshape))]
    if insert_at is not None:
        at = insert_at if adjacent else 0
        plan.dims[at:at] = bdims
    sizes = {"new": lambda r: 1, "slice": lambda r: r[4], "adv": lambda r: plan.bshape[r[1]]}
    plan.shape = tuple(sizes[r[0]](r) for r in plan.dims)
    return plan


def _emit(node, k, x_shape, idx_types, accumulate: bool) -> None:
    key = node.attrs["key"]
    plan = index_plan(x_shape, key, [t.shape for t in idx_types])
    gathered = node.inputs[0].shape if accumulate else node.out.shape
    if plan.shape != tuple(gathered):
        raise GraphjitError(f"CPU backend: planned shape {plan.shape} for key "
                            f"{describe_key(key, idx_types)} on {tuple(x_shape)} differs from the "
                            f"IR's {tuple(gathered)}", op=node.op.name)
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
                k.line(f'raise IndexError("{node.op.name}: index tensor {t} '
                       f'({describe_key((("t", t),), idx_types)[1:-1]}) has an index out of range '
                       f'[-{n}, {n}) for dim {d} of a tensor of shape {tuple(x_shape)}")')

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
        start = plan.base + sum(r[2] * x_strides[r[1]] for r in plan.dims if r[0] == "slice")
        x_at = affine(start, [by_dim[d] for d in sorted(by_dim)])
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
    k.zero_output = True
    _, *idx = node.inputs
    _emit(node, k, node.attrs["shape"], [t.type for t in idx], accumulate=True)
