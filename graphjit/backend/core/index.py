"""Advanced indexing resolved at compile time: how a ``key`` reads x (both targets).

The ``key`` template (see [Index keys] in graphjit/ops/index.py) becomes a plan by NumPy's
rules:
- ``...`` expands to full slices, and missing trailing dims get full slices;
- the index tensors broadcast together to a shape B; when there is at least one index
  tensor, int entries are advanced indices too (0-d, B unchanged);
- B's dims replace the advanced entries in the result if those are adjacent in the key,
  else they go first (a slice, ``None`` or ``...`` between them separates them);
- slices and ``None`` keep their place; ints and index tensors consume their dim.
The CPU walks the result in loops (backend/cpu/index.py), CUDA one thread per element
(backend/cuda/index.py); both wrap negative indices and report an out-of-range one with
``out_of_range``'s message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import GraphjitError
from ...ops.index import describe_key
from ...shapes import broadcast_shapes
from .indexing import c_strides


@dataclass
class IndexPlan:
    """How a key reads x. Per result dim: ``("slice", x_dim, start, step, size)``,
    ``("new",)`` (from None) or ``("adv", b)`` (dim b of B)."""
    shape: tuple                                # the result's shape
    dims: list
    arrays: list = field(default_factory=list)  # (index tensor k, x dim it indexes)
    base: int = 0                               # element offset of the int entries
    bshape: tuple = ()                          # B, the broadcast shape of the index tensors

    def slice_start(self, x_strides) -> int:
        """The element offset of the result's first element, index tensors aside."""
        return self.base + sum(r[2] * x_strides[r[1]] for r in self.dims if r[0] == "slice")


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


def node_plan(node, x_shape, idx_types, accumulate: bool, target: str) -> IndexPlan:
    """The plan of an ``index`` node (``accumulate`` False) or ``index_backward`` node,
    checked against the shape the IR gives the gathered values."""
    key = node.attrs["key"]
    plan = index_plan(x_shape, key, [t.shape for t in idx_types])
    gathered = tuple(node.inputs[0].shape if accumulate else node.out.shape)
    if plan.shape != gathered:
        raise GraphjitError(f"{target} backend: planned shape {plan.shape} for key "
                            f"{describe_key(key, idx_types)} on {tuple(x_shape)} differs from the "
                            f"IR's {gathered}", op=node.op.name)
    return plan


def out_of_range(t: int, d: int, x_shape, idx_types) -> str:
    """The IndexError message for index tensor ``t`` (indexing dim ``d`` of x)."""
    size = x_shape[d]
    return (f"index tensor {t} ({describe_key((('t', t),), idx_types)[1:-1]}) has an index "
            f"out of range [-{size}, {size}) for dim {d} of a tensor of shape {tuple(x_shape)}")
