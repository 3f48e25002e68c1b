"""Generic tests over the op table (tests/op_table.py), plus promotion and bad-input checks.

(a) forward values against the NumPy reference in every dtype of a row;
(b) gradcheck in float64 for rows with gradients;
(c) second derivatives (gradgradcheck) for a sample of rows;
(d) PyTorch's type promotion;
(e) bad inputs: clear ShapeError/DTypeError naming the op, the shapes and this file;
and completeness: every op in the registry is covered by the table, and each row really
exercises the registry ops it declares.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import graphjit as gj
from graphjit.ops import registry
from graphjit.testing import GradcheckError, assert_close, gradcheck, gradgradcheck

from op_table import CASES, NEEDS_RANKS, NOT_EAGER, OpCase

THIS_FILE = os.path.basename(__file__)

GJ_DTYPES = {"float32": gj.float32, "float64": gj.float64, "int64": gj.int64, "bool": gj.bool}
NP_TO_GJ = {np.dtype(np.float32): gj.float32, np.dtype(np.float64): gj.float64,
            np.dtype(np.int64): gj.int64, np.dtype(np.bool_): gj.bool}


def _tensors(arrays, requires_grad=False):
    out = []
    for a in arrays:
        rg = requires_grad and a.dtype.kind == "f"
        out.append(gj.tensor(a, dtype=NP_TO_GJ[a.dtype], requires_grad=rg))
    return tuple(out)


def _widen(arrays):
    return tuple(a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays)


def _np_dtype(name):
    return GJ_DTYPES[name].np


FORWARD = [pytest.param(c, d, id=f"{c.name}-{d}") for c in CASES for d in c.dtypes]
GRAD = [pytest.param(c, id=c.name) for c in CASES if c.grad]


def _gradgrad_rows():
    rows, seen = [], set()
    for c in CASES:
        if not c.grad or c.gradgrad is False:
            continue
        if c.gradgrad or c.op not in seen:
            rows.append(c)
        seen.add(c.op)
    return rows


GRADGRAD = [pytest.param(c, id=c.name) for c in _gradgrad_rows()]


# ---- (a) forward ----------------------------------------------------------------------------

@pytest.mark.parametrize("case,dtype", FORWARD)
def test_forward_matches_reference(case: OpCase, dtype, rng):
    arrays = case.make_inputs(rng, _np_dtype(dtype))
    before = [a.copy() for a in arrays]
    tensors = _tensors(arrays)
    out = case.fn(*tensors)
    expected = np.asarray(case.ref(*_widen(arrays)))
    out_dtype = case.expected_dtype(dtype)
    assert isinstance(out, gj.Tensor), f"{case.name} returned {type(out).__name__}"
    assert out.dtype is GJ_DTYPES[out_dtype], \
        f"{case.name}: dtype {out.dtype}, expected {out_dtype}"
    assert not out.requires_grad
    if GJ_DTYPES[out_dtype].is_floating_point:
        rtol, atol = case.tolerance(dtype)
    else:
        rtol, atol = 0.0, 0.0
    assert_close(out, expected.astype(_np_dtype(out_dtype)), rtol=rtol, atol=atol,
                 msg=lambda m: f"{case.name} ({dtype}): {m}")
    for t, b in zip(tensors, before):  # the op left its inputs alone
        np.testing.assert_array_equal(t.numpy(), b)


# ---- (b) gradcheck --------------------------------------------------------------------------

@pytest.mark.parametrize("case", GRAD)
def test_gradcheck(case: OpCase, rng):
    arrays = case.make_inputs(rng, np.float64)
    tensors = _tensors(arrays, requires_grad=True)
    out = case.fn(*tensors)
    assert out.dtype is gj.float64
    assert out.requires_grad, f"{case.name}: output does not require grad"
    assert gradcheck(case.fn, tensors, **case.gradcheck_kw)


@pytest.mark.parametrize("case", [c for c in GRAD if "float32" in c.values[0].dtypes])
def test_float32_gradients_match_float64(case: OpCase, rng):
    """Backward in float32 gives float32 gradients close to the float64 ones."""
    arrays32 = case.make_inputs(rng, np.float32)
    arrays64 = tuple(a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays32)
    grads = {}
    for name, arrays in (("float32", arrays32), ("float64", arrays64)):
        tensors = _tensors(arrays, requires_grad=True)
        out = case.fn(*tensors)
        v = np.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)
        out.backward(gj.tensor(v, dtype=out.dtype))
        grads[name] = [t.grad for t in tensors if t.requires_grad]
    for g32, g64 in zip(grads["float32"], grads["float64"]):
        if g64 is None:
            assert g32 is None
            continue
        assert g32.dtype is gj.float32
        assert_close(g32, g64, rtol=1e-4, atol=1e-5, check_dtype=False)


@pytest.mark.parametrize("case", GRAD[:40:4])
def test_backward_matches_grad(case: OpCase, rng):
    """``out.backward(v)`` accumulates exactly what ``graphjit.grad(out, xs, v)`` returns."""
    tensors = _tensors(case.make_inputs(rng, np.float64), requires_grad=True)
    out = case.fn(*tensors)
    v = gj.tensor(rng.uniform(-1, 1, size=out.shape), dtype=gj.float64)
    diff = [t for t in tensors if t.requires_grad]
    grads = gj.grad(out, diff, grad_outputs=v, retain_graph=True, allow_unused=True)
    out.backward(v)
    for t, g in zip(diff, grads):
        if g is None:
            assert t.grad is None
        else:
            assert_close(t.grad, g, rtol=0.0, atol=0.0)


# ---- (c) second derivatives -----------------------------------------------------------------

@pytest.mark.parametrize("case", GRADGRAD)
def test_gradgradcheck(case: OpCase, rng):
    tensors = _tensors(case.make_inputs(rng, np.float64), requires_grad=True)
    assert gradgradcheck(case.fn, tensors, **case.gradcheck_kw)


# ---- the checker itself ---------------------------------------------------------------------

def test_gradcheck_catches_a_wrong_gradient():
    x = gj.tensor(np.array([0.3, -1.2, 2.0]), dtype=gj.float64, requires_grad=True)

    def wrong(t):
        # value t**2, but the gradient flows only through one factor: d/dt = t instead of 2t
        return t * t.detach()

    with pytest.raises(GradcheckError) as info:
        gradcheck(wrong, (x,))
    text = str(info.value)
    assert "output 0" in text and "input 0" in text
    assert "analytical" in text and "numerical" in text and "max abs error" in text
    # The worst element is the one with the largest |t|: index 2, analytical t = 2, true 2t = 4.
    worst = re.search(r"worst entry: d out0\((\d+),\) / d in0\((\d+),\): analytical (\S+), "
                      r"numerical (\S+)", text)
    assert worst, text
    assert worst.group(1) == worst.group(2) == "2"
    assert float(worst.group(3).rstrip(",")) == pytest.approx(2.0)
    assert float(worst.group(4)) == pytest.approx(4.0, rel=1e-6)
    assert gradcheck(wrong, (x,), raise_exception=False) is False
    np.testing.assert_array_equal(x.detach().numpy(), [0.3, -1.2, 2.0])  # restored exactly


def test_gradcheck_handles_0d_inputs_tuple_outputs_and_restores_bits():
    # 0.1 + 1e-6 - 1e-6 != 0.1 in floating point: the check must restore the original bits
    x = gj.tensor(np.array(0.1), dtype=gj.float64, requires_grad=True)
    y = gj.tensor(np.array([0.7, -0.3, 1.9]), dtype=gj.float64, requires_grad=True)
    idx = gj.tensor([2, 0])
    frozen = gj.tensor(np.array([1.0, 2.0]), dtype=gj.float64)

    def fn(a, b, i, c):
        return a * b, gj.exp(b[i] * a) + c, b > 0.0  # the bool output is skipped

    assert gradcheck(fn, (x, y, idx, frozen))
    assert x.detach().numpy().tobytes() == np.array(0.1).tobytes()
    assert y.detach().numpy().tobytes() == np.array([0.7, -0.3, 1.9]).tobytes()
    assert x.grad is None and y.grad is None  # gradcheck never touches .grad


def test_gradcheck_names_the_failing_pair():
    x = gj.tensor(np.array([0.5, 1.5]), dtype=gj.float64, requires_grad=True)
    y = gj.tensor(np.array([2.0]), dtype=gj.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="output 1 with respect to input 1"):
        gradcheck(lambda a, b: (a * 2.0, a.sum() * b.detach() * b), (x, y))


def test_gradgradcheck_on_a_composite():
    x = gj.tensor(np.array([[0.5, -1.0], [2.0, 0.3]]), dtype=gj.float64, requires_grad=True)
    w = gj.tensor(np.array([0.2, -0.7]), dtype=gj.float64, requires_grad=True)
    assert gradgradcheck(lambda a, b: gj.tanh(a @ b).sum() * gj.sigmoid(b).sum(), (x, w))


def test_gradcheck_needs_an_input_requiring_grad():
    with pytest.raises(ValueError):
        gradcheck(lambda t: t * 2.0, (gj.tensor([1.0, 2.0], dtype=gj.float64),))


def test_assert_close_reports():
    assert_close(gj.tensor([1.0, 2.0]), np.array([1.0, 2.0 + 1e-7], dtype=np.float32))
    assert_close(gj.tensor(3, dtype=gj.int64), 3)
    assert_close(2.0, 2.0 + 1e-9)
    with pytest.raises(AssertionError, match="Mismatched elements: 1 / 3"):
        assert_close(gj.tensor([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0], dtype=np.float32))
    with pytest.raises(AssertionError, match="dtype"):
        assert_close(gj.tensor([1.0]), np.array([1.0]))
    assert_close(gj.tensor([1.0]), np.array([1.0]), check_dtype=False)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(gj.tensor([1.0, 2.0]), np.array([[1.0, 2.0]], dtype=np.float32))
    with pytest.raises(AssertionError, match="not equal"):
        assert_close(gj.tensor([1, 2]), np.array([1, 3]))
    with pytest.raises(AssertionError, match="custom"):
        assert_close(1.0, 2.0, msg="custom")
    with pytest.raises(AssertionError, match=r"index \(1, 0\)"):
        assert_close(np.zeros((2, 2)), np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert_close(np.array([np.inf, -np.inf]), np.array([np.inf, -np.inf]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan]), np.array([np.nan]))
    assert_close(np.array([np.nan]), np.array([np.nan]), equal_nan=True)
    assert_close(gj.tensor([1.0, 2.0], requires_grad=True), [1.0, 2.0])
    with pytest.raises(ValueError):
        assert_close(1.0, 1.0, rtol=1e-3)  # both tolerances or neither
    assert_close(1.0, 1.01, rtol=0.02, atol=0.0)


# ---- (d) type promotion ---------------------------------------------------------------------

def _t(dtype, shape=(2,)):
    values = np.arange(1, 1 + int(np.prod(shape))).reshape(shape)
    return gj.tensor(values.astype(GJ_DTYPES[dtype].np), dtype=GJ_DTYPES[dtype])


PROMOTION = [
    # (description, thunk, expected dtype) - PyTorch's results
    ("f32 + f64", lambda: _t("float32") + _t("float64"), "float64"),
    ("f64 * f32", lambda: _t("float64") * _t("float32"), "float64"),
    ("i64 + f32", lambda: _t("int64") + _t("float32"), "float32"),
    ("i64 + 2.5", lambda: _t("int64") + 2.5, "float32"),
    ("2.5 * i64", lambda: 2.5 * _t("int64"), "float32"),
    ("i64 + 2", lambda: _t("int64") + 2, "int64"),
    ("i64 * True", lambda: _t("int64") * True, "int64"),
    ("f32 * 2.5", lambda: _t("float32") * 2.5, "float32"),
    ("f32 * 2", lambda: _t("float32") * 2, "float32"),
    ("f64 - 2.5", lambda: _t("float64") - 2.5, "float64"),
    ("bool + bool", lambda: _t("bool") + _t("bool"), "bool"),
    ("bool + 1", lambda: _t("bool") + 1, "int64"),
    ("bool * 1.5", lambda: _t("bool") * 1.5, "float32"),
    ("bool + i64", lambda: _t("bool") + _t("int64"), "int64"),
    ("i64 / i64", lambda: _t("int64") / _t("int64"), "float32"),
    ("i64 / 2", lambda: _t("int64") / 2, "float32"),
    ("f32[2] + f64 0-d", lambda: _t("float32") + _t("float64", ()), "float32"),
    ("i64[2] + f64 0-d", lambda: _t("int64") + _t("float64", ()), "float64"),
    ("f64 0-d + f32 0-d", lambda: _t("float64", ()) + _t("float32", ()), "float64"),
    ("i64 ** 2", lambda: _t("int64") ** 2, "int64"),
    ("i64 ** 0.5", lambda: _t("int64") ** 0.5, "float32"),
    ("f32 ** 2", lambda: _t("float32") ** 2, "float32"),
    ("exp(i64)", lambda: gj.exp(_t("int64")), "float32"),
    ("neg(i64)", lambda: -_t("int64"), "int64"),
    ("f32 < f64", lambda: _t("float32") < _t("float64"), "bool"),
    ("i64 == 1.0", lambda: _t("int64") == 1.0, "bool"),
    ("sum(bool)", lambda: _t("bool").sum(), "int64"),
    ("sum(i64)", lambda: _t("int64").sum(), "int64"),
    ("mean(f32)", lambda: _t("float32").mean(), "float32"),
    ("where(c, f32, 0.0)", lambda: gj.where(_t("bool"), _t("float32"), 0.0), "float32"),
    ("where(c, f32, f64)", lambda: gj.where(_t("bool"), _t("float32"), _t("float64")), "float64"),
    ("maximum(i64, f32)", lambda: gj.maximum(_t("int64"), _t("float32")), "float32"),
    ("cat(f32, f64)", lambda: gj.cat([_t("float32"), _t("float64")]), "float64"),
    ("clamp(i64, 0.5)", lambda: _t("int64").clamp(min=0.5), "float32"),
    ("f32 tensor(python float)", lambda: gj.tensor([1.5]), "float32"),
    ("tensor(python int)", lambda: gj.tensor([1, 2]), "int64"),
    ("tensor(np.float64)", lambda: gj.tensor(np.array([1.5])), "float64"),
]


@pytest.mark.parametrize("thunk,expected", [pytest.param(t, e, id=d) for d, t, e in PROMOTION])
def test_type_promotion(thunk, expected):
    assert thunk().dtype is GJ_DTYPES[expected]


def test_bool_add_is_logical_or():
    a = gj.tensor([True, False, False])
    b = gj.tensor([True, True, False])
    assert_close(a + b, np.array([True, True, False]))  # PyTorch: bool + bool stays bool


def test_promotion_follows_default_dtype():
    gj.set_default_dtype(gj.float64)  # restored by the conftest fixture
    assert (_t("int64") + 2.5).dtype is gj.float64
    assert (_t("float32") * 2.5).dtype is gj.float32  # a weak scalar never widens a tensor
    assert gj.tensor([1.5]).dtype is gj.float64


def test_promotion_values():
    out = _t("int64") + 2.5
    assert_close(out, np.array([3.5, 4.5], dtype=np.float32))
    assert_close(_t("int64") / _t("int64", (2,)) * 3, np.array([3.0, 3.0], dtype=np.float32))


def test_float32_results_stay_float32_in_gradients():
    x = gj.tensor([0.5, 1.5], requires_grad=True)
    (x * 2.5 + gj.tensor(1.0, dtype=gj.float64)).sum().backward()
    assert x.grad.dtype is gj.float32
    assert_close(x.grad, np.array([2.5, 2.5], dtype=np.float32))


def test_cast_gradient_dtype():
    x = gj.tensor([0.25, -1.5], dtype=gj.float64, requires_grad=True)
    (x.float() * gj.tensor([2.0, 3.0])).sum().backward()
    assert x.grad.dtype is gj.float64  # the gradient is cast back to the input's dtype
    assert_close(x.grad, np.array([2.0, 3.0]))
    y = gj.tensor([0.25, -1.5], requires_grad=True)
    (y.double() ** 2).sum().backward()
    assert y.grad.dtype is gj.float32
    assert_close(y.grad, np.array([0.5, -3.0], dtype=np.float32))


# ---- (e) bad inputs -------------------------------------------------------------------------

def _snapshot(*ts):
    return [(t.numpy().copy() if not t.requires_grad else t.detach().numpy().copy(),
             t.requires_grad, t.grad) for t in ts]


def _assert_unchanged(ts, snap):
    for t, (values, rg, grad) in zip(ts, snap):
        np.testing.assert_array_equal(t.detach().numpy(), values)
        assert t.requires_grad == rg
        assert t.grad is grad


def _check_message(err, op, *fragments):
    text = str(err)
    assert op in text, f"op name {op!r} missing from: {text}"
    for f in fragments:
        assert f in text, f"{f!r} missing from: {text}"
    assert THIS_FILE in text, f"user's file {THIS_FILE} missing from: {text}"


BAD_SHAPES = [
    ("add", lambda a, b: a + b, (3, 4), (2, 4)),
    ("add", lambda a, b: gj.add(a, b), (2, 3), (2,)),
    ("sub", lambda a, b: a - b, (3, 4), (4, 3)),
    ("mul", lambda a, b: a * b, (2, 3), (3, 2)),
    ("div", lambda a, b: a / b, (5,), (4,)),
    ("maximum", lambda a, b: gj.maximum(a, b), (2, 3), (4,)),
    ("matmul", lambda a, b: a @ b, (2, 3), (4, 5)),
    ("matmul", lambda a, b: gj.matmul(a, b), (3,), (4,)),
    ("matmul", lambda a, b: a @ b, (2, 2, 3), (3, 3, 2)),
    ("cat", lambda a, b: gj.cat([a, b], dim=0), (2, 3), (2, 4)),
    ("cat", lambda a, b: gj.cat([a, b], dim=1), (2, 3), (3, 3)),
]


@pytest.mark.parametrize("op,call,sa,sb", [pytest.param(*row, id=f"{row[0]}-{row[2]}-{row[3]}")
                                           for row in BAD_SHAPES])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_shape_mismatch_raises_shape_error(op, call, sa, sb, requires_grad, rng):
    a = gj.tensor(rng.standard_normal(sa), dtype=gj.float64, requires_grad=requires_grad)
    b = gj.tensor(rng.standard_normal(sb), dtype=gj.float64, requires_grad=requires_grad)
    snap = _snapshot(a, b)
    with pytest.raises(gj.ShapeError) as info:
        call(a, b)
    assert isinstance(info.value, ValueError)  # ShapeError is also a ValueError
    assert isinstance(info.value, gj.GraphjitError)
    _check_message(info.value, op, str(tuple(sa)), str(tuple(sb)))
    _assert_unchanged((a, b), snap)


def test_inplace_shape_mismatch_leaves_tensor_unchanged(rng):
    a = gj.tensor(rng.standard_normal((2, 3)), dtype=gj.float64)
    b = gj.tensor(rng.standard_normal((4, 3)), dtype=gj.float64)
    snap = _snapshot(a, b)
    with pytest.raises(gj.ShapeError) as info:
        a.add_(b)
    assert THIS_FILE in str(info.value)
    _assert_unchanged((a, b), snap)
    # broadcasting that would grow the tensor is refused too
    c = gj.tensor(rng.standard_normal((3,)), dtype=gj.float64)
    snap = _snapshot(c, a)
    with pytest.raises(gj.ShapeError):
        c.mul_(a)
    _assert_unchanged((c, a), snap)


def test_other_shape_errors_name_the_op(rng):
    x = gj.tensor(rng.standard_normal((2, 3)))
    cases = [
        ("reshape", lambda: x.reshape(4, 2)),
        ("transpose", lambda: x.transpose(0, 2)),
        ("expand", lambda: x.expand(4, 3, 2)),
        ("stack", lambda: gj.stack([x, x.reshape(3, 2)])),
        ("sum", lambda: x.sum(dim=2)),
        ("gather", lambda: x.gather(1, gj.tensor([0, 1]))),
    ]
    for op, thunk in cases:
        with pytest.raises(gj.ShapeError) as info:
            thunk()
        _check_message(info.value, op)
    np.testing.assert_array_equal(x.numpy().shape, (2, 3))


def test_scan_and_order_errors_name_the_op_and_the_shape(rng):
    x = gj.tensor(rng.standard_normal((2, 3)))
    n = gj.tensor([[1, 2], [3, 4]])
    for op, thunk, fragment in [
        ("cumsum", lambda: x.cumsum(2), "(2, 3)"), ("cumsum", lambda: gj.cumsum(x, -3), "2 dims"),
        ("prod", lambda: x.prod(5), "2 dims"), ("prod", lambda: gj.prod(x, (0, 0)), "twice"),
        ("argsort", lambda: x.argsort(2), "2 dims"), ("sort", lambda: x.sort(-3), "2 dims"),
        ("topk", lambda: x.topk(4), "out of range for dim 1 of size 3"),
        ("topk", lambda: x.topk(1, dim=2), "2 dims"),
    ]:
        with pytest.raises(gj.ShapeError) as info:
            thunk()
        _check_message(info.value, op, fragment)
    for op, thunk, fragment in [("frac", lambda: n.frac(), "int64"),
                                ("round", lambda: gj.round(n, decimals=1), "int64"),
                                ("topk", lambda: (x > 0).topk(1), "bool")]:
        with pytest.raises(gj.DTypeError) as info:
            thunk()
        _check_message(info.value, op, fragment, "(2, ")
    # What PyTorch allows: rounding ints (themselves), sorting bools, scans of ints in int64.
    assert n.floor() is n and gj.round(n) is n
    assert (x > 0).argsort(1).dtype is gj.int64 and n.cumsum(0).dtype is gj.int64
    assert (n > 1).prod(1).dtype is gj.int64


def test_negative_slice_step_raises(rng):
    x = gj.tensor(rng.standard_normal((3, 4)))
    with pytest.raises(gj.ShapeError) as info:  # PyTorch: "step must be greater than zero"
        x[::-1]
    assert "step" in str(info.value) and THIS_FILE in str(info.value)


def test_cat_of_0d_tensors_raises_shape_error():
    a, b = gj.tensor(1.0), gj.tensor(2.0)
    with pytest.raises(gj.ShapeError) as info:  # PyTorch: zero-dimensional tensors can't be cat
        gj.cat([a, b])
    _check_message(info.value, "cat")


def test_index_out_of_range_raises(rng):
    x = gj.tensor(rng.standard_normal((3, 4)))
    with pytest.raises((gj.ShapeError, IndexError)) as info:
        x[gj.tensor([0, 3])]
    assert THIS_FILE in str(info.value)
    with pytest.raises((gj.ShapeError, IndexError)):
        x[5]


DTYPE_ERRORS = [
    ("float index tensor", lambda x: x[gj.tensor([0.0, 1.0])], "float32"),
    ("float index in a tuple", lambda x: x[:, gj.tensor([1.0])], "float32"),
    ("float gather index", lambda x: x.gather(1, gj.tensor([[0.0], [1.0], [0.0]])), "float32"),
    ("where with float condition", lambda x: gj.where(x, x, x), "float32"),
    ("matmul of bool tensors", lambda x: gj.tensor([True, False]) @ gj.tensor([True, True]),
     "bool"),
]


@pytest.mark.parametrize("call,dtype_name", [pytest.param(c, n, id=d) for d, c, n in DTYPE_ERRORS])
def test_wrong_dtype_raises_dtype_error(call, dtype_name, rng):
    x = gj.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    before = x.detach().numpy().copy()
    with pytest.raises(gj.DTypeError) as info:
        call(x)
    assert isinstance(info.value, TypeError)  # DTypeError is also a TypeError
    assert dtype_name in str(info.value)
    assert THIS_FILE in str(info.value)
    np.testing.assert_array_equal(x.detach().numpy(), before)
    assert x.grad is None


def test_requires_grad_on_integer_tensor_raises():
    with pytest.raises(gj.DTypeError):
        gj.tensor([1, 2], requires_grad=True)


# ---- completeness ---------------------------------------------------------------------------

def test_every_registry_op_has_a_row():
    covered = {name for c in CASES for name in c.ops} | set(NOT_EAGER) | set(NEEDS_RANKS)
    registered = set(registry.all_ops())
    missing = sorted(registered - covered)
    assert not missing, f"registry ops with no row in tests/op_table.py: {missing}"
    unknown = sorted(covered - registered)
    assert not unknown, f"op table rows name ops the registry does not have: {unknown}"


def test_every_registry_op_with_a_vjp_has_a_gradient_row():
    with_grad = {name for c in CASES if c.grad for name in c.ops}
    missing = sorted(name for name, op in registry.all_ops().items()
                     if op.vjp is not None and name not in with_grad | set(NEEDS_RANKS))
    assert not missing, f"ops with a vjp but no gradcheck row: {missing}"


class _Recorder:
    """An interpreter that records the op names bound through it and delegates the work."""

    def __init__(self, inner):
        self.inner = inner
        self.seen = set()

    def apply(self, op, inputs, attrs):
        self.seen.add(op.name)
        return self.inner.apply(op, inputs, attrs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES if c.ops])
def test_row_exercises_its_declared_ops(case: OpCase, rng):
    recorder = _Recorder(registry.current_interpreter())
    with registry.interpreter(recorder):
        for dtype in case.dtypes:
            case.fn(*_tensors(case.make_inputs(rng, _np_dtype(dtype))))
        if case.grad:
            tensors = _tensors(case.make_inputs(rng, np.float64), requires_grad=True)
            out = case.fn(*tensors)
            out.backward(gj.ones_like(out))
    missing = sorted(set(case.ops) - recorder.seen)
    assert not missing, f"{case.name} declares {missing} but binds only {sorted(recorder.seen)}"


def test_table_rows_are_well_formed():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    for c in CASES:
        assert "/" in c.name
        assert set(c.dtypes) <= set(GJ_DTYPES), c.name
        if c.grad:
            assert "float64" in c.dtypes or "float32" in c.dtypes, c.name


def test_integer_to_negative_integer_power_raises():
    x = gj.tensor([2, 3])
    with pytest.raises(gj.DTypeError, match="negative integer powers"):
        x ** -1
    assert_close(x ** 2, np.array([4, 9]))
    assert_close(x ** 0.5, np.sqrt(np.array([2.0, 3.0], dtype=np.float32)))
