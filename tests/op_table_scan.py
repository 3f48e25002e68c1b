"""Op-table rows (tests/op_table.py) for rounding, scans and orders: graphjit/ops/scan.py
(cumsum, prod, argsort), the rounding ops, and the composites sort, topk and frac. Imported
by op_table.py, whose CASES they join; kept apart to keep that file readable.

Gradients: prod's where elements are zero (one or two per row: the product of the others,
or zero), cumsum's in both directions (the backward of one is the other), sort's and
topk's values (the gradient scattered back through the indices) are all gradchecked
against float64 finite differences by tests/ops/test_ops.py. Rounding rows keep away from
jumps (x * 3 from the "real" domain: a jump within the finite-difference step is
unlikely); their gradient is zero.
"""
from __future__ import annotations

import numpy as np

import graphjit as gj
from graphjit.ops import scan
from graphjit.testing import make_array
from op_table import U, A, case, distinct, ints


def _np_argsort_desc(x, axis):
    n = x.shape[axis]
    return n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)


def with_zeros(shape, per_row):
    """A floating input with ``per_row`` zeros in each row of its last dim, the rest away
    from zero."""
    def make(rng, dt):
        x = make_array(rng, shape, "nonzero", dt)
        for row in x.reshape(-1, shape[-1]):
            row[rng.choice(shape[-1], per_row, replace=False)] = 0.0
        return x
    return make


def specials(rng, dt):
    """Ties, NaN, infinities and both zeros, each row holding several of them."""
    values = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, 1.5, -1.5, 1.5, np.nan])
    return np.stack([rng.permutation(values) for _ in range(3)]).astype(dt)


for _name, _ref in (("floor", np.floor), ("ceil", np.ceil), ("round", np.rint),
                    ("trunc", np.trunc)):
    case(f"{_name}/fn", (lambda n: lambda x: getattr(gj, n)(x * 3.0))(_name), [A(*U)],
         (lambda r: lambda x: r(x * 3.0))(_ref), ops=(_name,), domain="real")
case("round/decimals", lambda x: gj.round(x, decimals=2), [A(*U)],
     lambda x: np.round(x * 100.0) / 100.0, ops=("round",), grad=False)
case("round/half_to_even", lambda x: gj.round(x),
     [lambda rng, dt: np.array([-2.5, -1.5, -0.5, -0.0, 0.5, 1.5, 2.5, 3.5], dt)], np.rint,
     ops=("round",), grad=False)
case("floor/int_is_itself", lambda n: gj.floor(n), [ints(3, 4)], lambda n: n, grad=False,
     dtypes=("int64",))
case("frac/method", lambda x: (x * 3.0).frac(), [A(*U)], lambda x: x * 3.0 - np.trunc(x * 3.0),
     ops=("trunc",))

case("cumsum/dim1", lambda x: gj.cumsum(x, 1), [A(*U)], lambda x: np.cumsum(x, 1),
     ops=("cumsum",))
case("cumsum/reverse", lambda x: scan.cumsum(x, 0, reverse=True), [A(*U)],
     lambda x: np.flip(np.cumsum(np.flip(x, 0), 0), 0), ops=("cumsum",))
case("cumsum/neg_dim_3d", lambda x: x.cumsum(-2), [A(2, 3, 4)], lambda x: np.cumsum(x, -2),
     ops=("cumsum",))
case("cumsum/0d", lambda x: gj.cumsum(x, 0), [A()], lambda x: x, ops=("cumsum",))
case("cumsum/dim0_int", lambda n: gj.cumsum(n, 0), [ints(3, 4)], lambda n: np.cumsum(n, 0),
     ops=("cumsum",), grad=False, dtypes=("int64",))
case("cumsum/bool_counts", lambda x: gj.cumsum(x > 0, 1), [A(*U)],
     lambda x: np.cumsum(x > 0, 1), ops=("cumsum",), grad=False, out_dtype="int64")

case("prod/all", lambda x: gj.prod(x), [A(2, 3, domain="nonzero")], np.prod, ops=("prod",))
case("prod/dim_keepdim", lambda x: x.prod(1, keepdim=True), [A(*U, domain="nonzero")],
     lambda x: np.prod(x, 1, keepdims=True), ops=("prod",))
case("prod/one_zero", lambda x: x.prod(1), [with_zeros(U, 1)], lambda x: np.prod(x, 1),
     ops=("prod",))
case("prod/two_zeros", lambda x: x.prod(-1), [with_zeros(U, 2)], lambda x: np.prod(x, -1),
     ops=("prod",))
case("prod/dims_with_zero", lambda x: gj.prod(x, (0, 2)), [with_zeros((2, 3, 2), 1)],
     lambda x: np.prod(x, (0, 2)), ops=("prod",))
case("prod/dim0_int", lambda n: gj.prod(n, 0), [ints(3, 4, low=-3, high=4)],
     lambda n: np.prod(n, 0), ops=("prod",), grad=False, dtypes=("int64",))

case("argsort/ascending", lambda x: gj.argsort(x, 1), [distinct((3, 4))],
     lambda x: np.argsort(x, 1, kind="stable"), ops=("argsort",), grad=False, out_dtype="int64")
case("argsort/ties_nan_descending", lambda x: x.argsort(1, descending=True), [specials],
     lambda x: _np_argsort_desc(x, 1), ops=("argsort",), grad=False, out_dtype="int64")
case("argsort/ties_nan_dim0", lambda x: gj.argsort(x, 0), [specials],
     lambda x: np.argsort(x, 0, kind="stable"), ops=("argsort",), grad=False,
     out_dtype="int64")
case("argsort/int", lambda n: gj.argsort(n, 0, descending=True), [ints(5, 3, low=-2, high=3)],
     lambda n: _np_argsort_desc(n, 0), ops=("argsort",), grad=False, dtypes=("int64",))
case("argsort/bool", lambda b: b.argsort(1), [lambda rng, dt: rng.random((3, 5)) < 0.5],
     lambda b: np.argsort(b, 1, kind="stable"), ops=("argsort",), grad=False, dtypes=("bool",),
     out_dtype="int64")
case("sort/descending_values", lambda x: gj.sort(x, 0, descending=True).values,
     [distinct((3, 4))], lambda x: np.take_along_axis(x, _np_argsort_desc(x, 0), 0),
     ops=("argsort", "index"))
case("sort/ascending_values_method", lambda x: x.sort().values, [distinct((2, 3, 4))],
     lambda x: np.sort(x, -1), ops=("argsort", "index"))
case("topk/largest", lambda x: gj.topk(x, 2, dim=1).values, [distinct((3, 4))],
     lambda x: np.take_along_axis(x, _np_argsort_desc(x, 1)[:, :2], 1),
     ops=("argsort", "index"))
case("topk/smallest_values_dim0", lambda x: x.topk(2, 0, largest=False)[0], [distinct((4, 3))],
     lambda x: np.sort(x, 0)[:2], ops=("argsort", "index"))
case("topk/smallest_indices", lambda x: x.topk(3, largest=False).indices, [distinct((3, 4))],
     lambda x: np.argsort(x, 1, kind="stable")[:, :3], ops=("argsort",), grad=False,
     out_dtype="int64")
