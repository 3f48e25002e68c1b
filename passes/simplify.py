"""Constant folding and algebraic simplification, as rows of rules run to a fixed point.

Every row has its ``# before -> after`` comment on the line above it. The driver
(``rewrite.py``) only applies a row when the replacement has exactly the node's type, so
``x * 1`` with a ``1`` of a bigger shape (a broadcast) is left alone.

# NOTE: [Exact rewrites]
By default a rule fires only when it gives the same result in IEEE arithmetic for every
input, nan, inf and signed zeros included (nan payloads aside). That is why the additive
identity is ``-0.0``: ``x + (-0.0)`` and ``x - 0.0`` are exactly ``x``, but ``x + 0.0``
turns ``-0.0`` into ``+0.0``, so ``x + 0.0 -> x`` is not exact. ``Simplify(exact=False)``
adds the rows of ``LOOSE_RULES``, which are exact except for the sign of a zero result.
``x * 0 -> 0`` is in neither table (``inf * 0`` is nan).

``detach(x) -> x`` is valid only once autodiff has run (detach matters for gradients
only); ``passes/pipeline.py`` runs simplify after autodiff, and the rule stays off while
the graph still holds ``grad`` requests.

Constant folding: an elementwise node whose inputs are all ``full`` nodes becomes one
``full`` whose value is the op's own NumPy ``impl`` applied to 0-d arrays of the input
values (uniform inputs give a uniform output; the shape is the node's own type).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .rewrite import Emit, Rule, full_value, producer, rewrite_fixed_point


def _is_one(v) -> bool:
    value = full_value(v)
    return value is not None and value == 1


def _is_zero(v, sign: float) -> bool:
    """A ``full`` of zero; for floating dtypes only the zero of the given sign."""
    value = full_value(v)
    if value is None or value != 0:
        return False
    return not v.dtype.is_floating_point or math.copysign(1.0, value) == sign


def _is_bool(v, truth: bool) -> bool:
    value = full_value(v)
    return value is not None and v.dtype.name == "bool" and bool(value) is truth


# ---- rules that need more than one line ---------------------------------------------------

def _reshape_of_reshape(n):
    inner = producer(n.inputs[0], "reshape")
    if inner is None:
        return None
    return Emit("reshape", (inner.inputs[0],), {"shape": n.attrs["shape"]})


def _reduce_of_unit_dims(n):
    """A reduction over dims that all have size 1 reads one element per result: a reshape."""
    x = n.inputs[0]
    if n.out.dtype is not x.dtype or not all(x.shape[d] == 1 for d in n.attrs["dims"]):
        return None
    return Emit("reshape", (x,), {"shape": tuple(n.out.shape)})


def _permute_of_permute(n):
    inner = producer(n.inputs[0], "permute")
    if inner is None:
        return None
    p, q = inner.attrs["dims"], n.attrs["dims"]
    dims = tuple(p[i] for i in q)  # out dim k = inner dim q[k] = x dim p[q[k]]
    x = inner.inputs[0]
    if dims == tuple(range(len(dims))):
        return x
    return Emit("permute", (x,), {"dims": dims})


def _expand_of_expand(n):
    inner = producer(n.inputs[0], "expand")
    if inner is None:
        return None
    return Emit("expand", (inner.inputs[0],), {"shape": n.attrs["shape"]})


def _slice_is_whole(n):
    x = n.inputs[0]
    whole = all(start == 0 and stop == size and step == 1 for start, stop, step, size in
                zip(n.attrs["starts"], n.attrs["stops"], n.attrs["steps"], x.shape))
    return x if whole else None


def _fold_constant(n):
    if n.op.kind != "elementwise" or not n.inputs:
        return None
    values = [full_value(v) for v in n.inputs]
    if any(value is None for value in values):
        return None
    arrays = [np.full((), value, dtype=v.dtype.np) for value, v in zip(values, n.inputs)]
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(n.op.impl(*arrays, **n.attrs))
    except Exception:  # e.g. an integer to a negative power: leave the error to run time
        return None
    if result.shape != ():
        return None
    dtype = n.out.dtype
    item = result.astype(dtype.np).item()
    if dtype.is_floating_point:
        value = float(item)
    else:
        value = bool(item) if dtype.name == "bool" else int(item)
    return Emit("full", (), {"shape": tuple(n.out.shape), "value": value, "dtype": dtype})


def _move_constant(n):
    value = full_value(n.inputs[0])
    if value is None:
        return None
    return Emit("full", (), {"shape": tuple(n.out.shape), "value": value, "dtype": n.out.dtype})


def _mul_by_minus_one(n):
    for x, c in ((n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])):
        value = full_value(c)
        if value is not None and value == -1 and c.dtype.is_floating_point:
            return Emit("neg", (x,))
    return None


def _operand_if(i: int, test):
    """A rule body: the node's operand ``i`` when ``test(node)`` holds."""
    return lambda n: n.inputs[i] if test(n) else None


def _operand(i: int):
    """A rule body: always operand ``i`` (the driver's type check is the real test)."""
    return lambda n: n.inputs[i]


def _neg_of_neg(n):
    inner = producer(n.inputs[0], "neg")
    return None if inner is None else inner.inputs[0]


def _is_identity(dims) -> bool:
    return tuple(dims) == tuple(range(len(dims)))


# One row per rule; the comment above each row is the rewrite it performs.
RULES = [
    # op(full a, full b, ...) -> full(op(a, b, ...))          (elementwise ops)
    Rule("fold_constant", None, _fold_constant),
    # reshape/permute/expand/slice(full c) -> full c          (of the result's shape)
    Rule("move_constant", ("reshape", "permute", "expand", "slice"), _move_constant),
    # x * 1 -> x
    Rule("mul_by_one", ("mul",), _operand_if(0, lambda n: _is_one(n.inputs[1]))),
    # 1 * x -> x
    Rule("one_mul", ("mul",), _operand_if(1, lambda n: _is_one(n.inputs[0]))),
    # x + (-0.0) -> x                                          (x + 0 -> x for ints and bools)
    Rule("add_neg_zero", ("add",), _operand_if(0, lambda n: _is_zero(n.inputs[1], -1.0))),
    # (-0.0) + x -> x
    Rule("neg_zero_add", ("add",), _operand_if(1, lambda n: _is_zero(n.inputs[0], -1.0))),
    # x - 0.0 -> x
    Rule("sub_zero", ("sub",), _operand_if(0, lambda n: _is_zero(n.inputs[1], 1.0))),
    # x * -1 -> neg(x), -1 * x -> neg(x)                       (floating point)
    Rule("mul_by_minus_one", ("mul",), _mul_by_minus_one),
    # x / 1 -> x
    Rule("div_by_one", ("div",), _operand_if(0, lambda n: _is_one(n.inputs[1]))),
    # neg(neg(x)) -> x
    Rule("neg_neg", ("neg",), _neg_of_neg),
    # reshape(x, x.shape) -> x
    Rule("reshape_same", ("reshape",), _operand(0)),
    # reshape(reshape(x, a), b) -> reshape(x, b)
    Rule("reshape_reshape", ("reshape",), _reshape_of_reshape),
    # permute(x, [0, 1, ...]) -> x
    Rule("permute_identity", ("permute",), _operand_if(0, lambda n: _is_identity(n.attrs["dims"]))),
    # permute(permute(x, p), q) -> permute(x, p[q])            (x when p[q] is the identity)
    Rule("permute_permute", ("permute",), _permute_of_permute),
    # cast(x, x.dtype) -> x
    Rule("cast_same", ("cast",), _operand(0)),
    # expand(x, x.shape) -> x
    Rule("expand_same", ("expand",), _operand(0)),
    # expand(expand(x, a), b) -> expand(x, b)
    Rule("expand_expand", ("expand",), _expand_of_expand),
    # slice(x, 0:n:1 in every dim) -> x
    Rule("slice_whole", ("slice",), _slice_is_whole),
    # x ** 1 -> x
    Rule("pow_one", ("pow_scalar",), _operand_if(0, lambda n: n.attrs["exponent"] == 1)),
    # sum(x, dims=[]) -> x                                     (not for bools: that sum is i64)
    Rule("sum_no_dims", ("sum",), _operand_if(0, lambda n: n.attrs["dims"] == ())),
    # sum/amax/amin(x, dims) -> reshape(x) when every dim in dims has size 1 (not bool sums)
    Rule("reduce_unit_dims", ("sum", "amax", "amin"), _reduce_of_unit_dims),
    # clone(x) -> x                                            (values are immutable)
    Rule("clone", ("clone",), _operand(0)),
    # detach(x) -> x                                           (once autodiff has run)
    Rule("detach", ("detach",), _operand(0)),
    # where(true, a, b) -> a
    Rule("where_true", ("where",), _operand_if(1, lambda n: _is_bool(n.inputs[0], True))),
    # where(false, a, b) -> b
    Rule("where_false", ("where",), _operand_if(2, lambda n: _is_bool(n.inputs[0], False))),
    # where(c, a, a) -> a
    Rule("where_same", ("where",), _operand_if(1, lambda n: n.inputs[1] is n.inputs[2])),
]

# Exact except for the sign of a zero result (see NOTE: [Exact rewrites]); opt in only.
LOOSE_RULES = [
    # x + 0.0 -> x
    Rule("add_zero", ("add",), _operand_if(0, lambda n: _is_zero(n.inputs[1], 1.0))),
    # 0.0 + x -> x
    Rule("zero_add", ("add",), _operand_if(1, lambda n: _is_zero(n.inputs[0], 1.0))),
    # x - (-0.0) -> x
    Rule("sub_neg_zero", ("sub",), _operand_if(0, lambda n: _is_zero(n.inputs[1], -1.0))),
]

# How often each rule fired, summed over every run in this process (for the dump tool).
RULE_COUNTS: Counter = Counter()


class Simplify:
    """The simplify pass. ``last_stats`` holds the rule counts of the latest run."""
    name = "simplify"

    def __init__(self, exact: bool = True):
        self.exact = exact
        self.rules = RULES if exact else RULES + LOOSE_RULES
        self.last_stats: dict | None = None

    def run(self, graph):
        rules = self.rules
        if any(n.op.name == "grad" for n in graph.nodes):
            # Gradient requests are still pending: detach still means something.
            rules = [r for r in rules if r.name != "detach"]
        counts = rewrite_fixed_point(graph, rules)
        RULE_COUNTS.update(counts)
        self.last_stats = dict(counts)
        return graph

    __call__ = run

    def __repr__(self) -> str:
        return f"<pass simplify{'' if self.exact else ' (loose)'}>"


simplify = Simplify()
