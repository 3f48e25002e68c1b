"""THE op table: one row per (op, usage) with sample inputs, a NumPy reference and a domain.

The generic tests in ``tests/ops/test_ops.py`` run over every row: forward values against the
reference in float32 and float64, gradcheck in float64, second derivatives on a sample, and
a completeness check that every op in ``graphjit.ops.registry`` is covered by some row's
``ops``. The JIT's eager-vs-compiled tests are meant to reuse the same rows, so a new op is
tested everywhere by adding rows here.

A row:
- ``name``: ``"<op>/<variant>"``, unique (the pytest id);
- ``fn(*tensors) -> Tensor``: the graphjit call; it may close over attributes (dims, python
  scalar operands, index lists);
- ``make_inputs(rng, dtype) -> tuple of ndarrays``: floating inputs come in ``dtype``, index
  inputs as int64, masks as bool; the test turns each into a tensor;
- ``ref(*arrays)``: the NumPy reference, called with the floating inputs widened to float64;
- ``ops``: the registry primitives the row exercises (forward or backward); checked by
  recording the ops the row really binds;
- ``domain``: where the inputs come from (see ``graphjit.testing.DOMAINS``); rows keep
  away from kinks, ties and poles so that finite differences are valid;
- ``grad``: whether gradcheck applies; ``dtypes``: the dtypes the forward test runs in;
- ``out_dtype``: the expected result dtype (None: the row's dtype);
- ``tol``: per-dtype ``(rtol, atol)`` overrides for the forward comparison;
- ``gradgrad``: True/False to force the second-derivative check on or off; None picks the
  first gradient row of each op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import graphjit as gj
from graphjit.ops import custom
from graphjit.testing import make_array

FLOATS = ("float32", "float64")

# Forward comparison against the float64 reference.
DEFAULT_TOL = {"float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12), "int64": (0.0, 0.0),
               "bool": (0.0, 0.0)}


@dataclass(frozen=True)
class OpCase:
    name: str
    fn: Callable
    make_inputs: Callable
    ref: Callable
    ops: tuple = ()
    domain: str = "real"
    grad: bool = True
    dtypes: tuple = FLOATS
    out_dtype: str | None = None
    tol: dict = field(default_factory=dict)
    gradgrad: bool | None = None
    gradcheck_kw: dict = field(default_factory=dict)

    @property
    def op(self) -> str:
        return self.name.split("/")[0]

    def tolerance(self, dtype: str):
        return self.tol.get(dtype, DEFAULT_TOL[dtype])

    def expected_dtype(self, dtype: str) -> str:
        return self.out_dtype or dtype

    def __repr__(self) -> str:
        return f"OpCase({self.name})"


# ---- input makers: (rng, dtype) -> ndarray, or a tuple of ndarrays for a group ----------------

def A(*shape, domain="real"):
    """A floating input of the row's dtype."""
    return lambda rng, dt: make_array(rng, shape, domain, dt)


def S(domain="real"):
    """A 0-d floating input."""
    return lambda rng, dt: make_array(rng, (), domain, dt)


def I(values):  # noqa: E743 - short on purpose, like the other makers
    """A fixed int64 index array."""
    arr = np.asarray(values, dtype=np.int64)
    return lambda rng, dt: arr.copy()


def RI(shape, low, high):
    """A random int64 index array in [low, high)."""
    return lambda rng, dt: rng.integers(low, high, size=shape).astype(np.int64)


def M(*shape):
    """A bool mask with both values present."""
    def make(rng, dt):
        m = rng.random(size=shape) < 0.5
        if m.size >= 2:
            m.reshape(-1)[0], m.reshape(-1)[1] = True, False
        return m
    return make


def avoiding(*shape, points, gap=0.1):
    """Real values at least ``gap`` away from each of ``points`` (clamp bounds, scalar operands
    of maximum, ...); points must be more than ``4 * gap`` apart."""
    def make(rng, dt):
        x = rng.uniform(-2.0, 2.0, size=shape)
        for p in points:
            close = np.abs(x - p) < gap
            x = np.where(close, x + 2 * gap * np.where(x >= p, 1.0, -1.0), x)
        return x.astype(dt)
    return make


def distinct(*shapes):
    """A group of floating inputs whose values are pairwise distinct (>= 0.1 apart) across
    all of them: no ties for maximum/minimum after any broadcasting."""
    def make(rng, dt):
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        flat = make_array(rng, (sum(sizes),), "distinct", dt)
        out, offset = [], 0
        for s, n in zip(shapes, sizes):
            out.append(flat[offset:offset + n].reshape(s))
            offset += n
        return tuple(out)
    return make


def ints(*shape, low=-5, high=6):
    """An int64 input regardless of the row dtype."""
    return lambda rng, dt: rng.integers(low, high, size=shape).astype(np.int64)


def sample(*makers):
    def make_inputs(rng, dtype):
        dtype = np.dtype(dtype)
        out = []
        for m in makers:
            v = m(rng, dtype)
            out.extend(v if isinstance(v, tuple) else (v,))
        return tuple(out)
    return make_inputs


CASES: list[OpCase] = []

# Registry ops that never run eagerly, so no row can exercise them; each says why.
NOT_EAGER = {
    "grad": "a gradient request inside traced graphs, expanded by passes/autodiff; its impl "
            "raises by design (covered by the autodiff pass tests)",
    "fused": "made by passes/fuse from other ops' nodes, never called by user code (covered by "
             "tests/passes/test_fuse.py and every compiled test)",
    "gemm": "made by passes/gemm from matmul, permute and elementwise nodes, never called by "
            "user code (covered by tests/passes/test_gemm.py and tests/backend/cpu/test_cpu.py)",
    "window_gemm": "made by passes/gemm from a convolution's products over its unfolded windows, "
                   "never called by user code (covered by tests/backend/cpu/test_window_gemm.py)",
}

# Collectives need ranks to talk to: tests/distributed runs them (values, gradient, eager
# against compiled) in MPI programs under mpiexec, not in this process.
NEEDS_RANKS = {
    "all_reduce": "a collective (tests/distributed/mpi_training.py)",
    "broadcast": "a collective (tests/distributed/mpi_training.py)",
}


def case(name, fn, inputs, ref, **kw):
    if isinstance(inputs, (list, tuple)):
        inputs = sample(*inputs)
    row = OpCase(name, fn, inputs, ref, **kw)
    if any(c.name == name for c in CASES):
        raise ValueError(f"duplicate op table row {name!r}")
    CASES.append(row)
    return row


# ---- numpy references -------------------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)


def _logsumexp(x, axis, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    return x - _logsumexp(x, axis, keepdims=True)


def _gather(x, dim, index):
    return np.take_along_axis(x, index, axis=dim)


# ============================================================================================
# Elementwise unary
# ============================================================================================

U = (3, 4)

case("neg/op", lambda x: -x, [A(*U)], np.negative, ops=("neg",))
case("neg/fn", lambda x: gj.neg(x), [A(*U)], np.negative, ops=("neg",))
case("exp/fn", lambda x: gj.exp(x), [A(*U)], np.exp, ops=("exp",))
case("exp/method", lambda x: x.exp(), [A(2, 3)], np.exp, ops=("exp",))
case("log/fn", lambda x: gj.log(x), [A(*U, domain="positive")], np.log, ops=("log",),
     domain="positive")
case("log1p/fn", lambda x: gj.log1p(x), [A(*U, domain="unit")], np.log1p, ops=("log1p",),
     domain="unit")
case("sqrt/fn", lambda x: gj.sqrt(x), [A(*U, domain="positive")], np.sqrt, ops=("sqrt",),
     domain="positive")
case("rsqrt/fn", lambda x: gj.rsqrt(x), [A(*U, domain="positive")], lambda x: 1.0 / np.sqrt(x),
     ops=("rsqrt",), domain="positive")
case("abs/fn", lambda x: gj.abs(x), [A(*U, domain="nonzero")], np.abs, ops=("abs",),
     domain="nonzero")
case("abs/builtin", lambda x: abs(x), [A(*U, domain="nonzero")], np.abs, ops=("abs",),
     domain="nonzero")
case("sign/fn", lambda x: gj.sign(x), [A(*U, domain="nonzero")], np.sign, ops=("sign", "full"),
     domain="nonzero")
case("sin/fn", lambda x: gj.sin(x), [A(*U)], np.sin, ops=("sin",))
case("cos/fn", lambda x: gj.cos(x), [A(*U)], np.cos, ops=("cos",))
case("tanh/fn", lambda x: gj.tanh(x), [A(*U)], np.tanh, ops=("tanh",))
case("sigmoid/fn", lambda x: gj.sigmoid(x), [A(*U)], _sigmoid, ops=("sigmoid",))
case("erf/fn", lambda x: gj.erf(x), [A(*U)], _erf, ops=("erf",))
case("relu/fn", lambda x: gj.relu(x), [A(*U, domain="nonzero")], lambda x: np.maximum(x, 0.0),
     ops=("relu",), domain="nonzero")
case("relu/method", lambda x: x.relu(), [A(2, 3, domain="nonzero")],
     lambda x: np.maximum(x, 0.0), ops=("relu",), domain="nonzero")
case("leaky_relu/default", lambda x: gj.leaky_relu(x), [A(*U, domain="nonzero")],
     lambda x: np.where(x > 0, x, 0.01 * x), ops=("leaky_relu",), domain="nonzero")
case("leaky_relu/slope", lambda x: gj.leaky_relu(x, negative_slope=0.2), [A(*U, domain="nonzero")],
     lambda x: np.where(x > 0, x, 0.2 * x), ops=("leaky_relu",), domain="nonzero")
case("gelu/exact", lambda x: gj.gelu(x), [A(*U)], _gelu, ops=("gelu",))
case("gelu/tanh", lambda x: gj.gelu(x, approximate="tanh"), [A(*U)], _gelu_tanh, ops=("gelu",))
case("silu/fn", lambda x: gj.silu(x), [A(*U)], lambda x: x * _sigmoid(x), ops=("silu",))
case("softplus/default", lambda x: gj.softplus(x), [A(*U)], _softplus, ops=("softplus",))
# beta * x > threshold switches to the identity: x > 1 here, away from the switch point.
case("softplus/beta_threshold", lambda x: gj.softplus(x, beta=2.0, threshold=2.0),
     [avoiding(*U, points=(1.0,))], lambda x: _softplus(x, 2.0, 2.0), ops=("softplus",))

# clamp: inputs keep 0.1 away from the bounds.
case("clamp/min", lambda x: gj.clamp(x, min=-0.5), [avoiding(*U, points=(-0.5,))],
     lambda x: np.maximum(x, -0.5), ops=("clamp",))
case("clamp/max", lambda x: x.clamp(max=0.5), [avoiding(*U, points=(0.5,))],
     lambda x: np.minimum(x, 0.5), ops=("clamp",))
case("clamp/both", lambda x: x.clamp(-0.5, 0.5), [avoiding(*U, points=(-0.5, 0.5))],
     lambda x: np.clip(x, -0.5, 0.5), ops=("clamp",))
case("clamp/clip_alias", lambda x: gj.clip(x, min=-1.0, max=1.0),
     [avoiding(*U, points=(-1.0, 1.0))],
     lambda x: np.clip(x, -1.0, 1.0), ops=("clamp",))
case("clamp/tensor_bounds", lambda x, lo, hi: x.clamp(min=lo, max=hi), [distinct(U, U, U)],
     lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi), ops=("maximum", "minimum"))

# pow with a Python exponent (pow_scalar) and with a tensor exponent (pow).
case("pow/scalar_2", lambda x: x ** 2, [A(*U)], lambda x: x ** 2, ops=("pow_scalar",))
case("pow/scalar_3", lambda x: gj.pow(x, 3), [A(*U)], lambda x: x ** 3, ops=("pow_scalar",))
case("pow/scalar_0.5", lambda x: x ** 0.5, [A(*U, domain="positive")], np.sqrt,
     ops=("pow_scalar",), domain="positive")
case("pow/scalar_-1.5", lambda x: x.pow(-1.5), [A(*U, domain="positive")], lambda x: x ** -1.5,
     ops=("pow_scalar",), domain="positive")
case("pow/scalar_-1", lambda x: x ** -1, [A(*U, domain="nonzero")], lambda x: 1.0 / x,
     ops=("pow_scalar",), domain="nonzero")
case("pow/scalar_0", lambda x: x ** 0, [A(*U)], lambda x: np.ones_like(x),
     ops=("pow_scalar", "full"))

# casts
case("cast/double", lambda x: x.double(), [A(*U)], lambda x: x, ops=("cast",),
     out_dtype="float64")
# float64 -> float32 rounds, so finite differences are meaningless: forward only (the gradient
# of the cast is checked in tests/ops/test_ops.py test_cast_gradient_dtype).
case("cast/float", lambda x: x.float(), [A(*U)], lambda x: x, ops=("cast",), out_dtype="float32",
     tol={"float64": (1.3e-6, 1e-7)}, grad=False)
case("cast/to", lambda x: x.to(gj.float64) * 2.0, [A(*U)], lambda x: 2.0 * x, ops=("cast",),
     out_dtype="float64")
case("cast/type_as", lambda x, y: x.type_as(y) + y, [A(*U), ints(*U)],
     lambda x, y: np.trunc(x).astype(np.int64) + y, ops=("cast",), out_dtype="int64", grad=False)
case("cast/long", lambda x: x.long(), [A(*U)], lambda x: np.trunc(x).astype(np.int64),
     ops=("cast",), grad=False, out_dtype="int64")
case("cast/bool", lambda x: x.bool(), [A(*U, domain="small_int")], lambda x: x != 0,
     ops=("cast",), grad=False, out_dtype="bool")
case("detach/fn", lambda x: x.detach() * 2.0, [A(*U)], lambda x: 2.0 * x, ops=("detach",),
     grad=False)
case("clone/method", lambda x: x.clone(), [A(*U)], lambda x: x, ops=("clone",))
case("contiguous/method", lambda x: x.transpose(0, 1).contiguous(), [A(*U)], lambda x: x.T)

# ============================================================================================
# Elementwise binary, each with broadcasting, Python scalars and 0-d tensors
# ============================================================================================

B3, B2 = (3, 1, 4), (2, 4)


def _binary_rows(op, call, ref, *, domain_a="real", domain_b="real", scalar=1.5, prims=(),
                 ties=False, reflected=None, **kw):
    """Rows for a binary op: same shape, (3,1,4) x (2,4) both ways, Python scalar on either
    side, 0-d tensor on either side. ``ties``: sample both operands (and the scalar) so that
    no element pair is equal (maximum/minimum). ``reflected``: the primitive that
    ``scalar <op> tensor`` binds when Python reflects it (``1 < x`` is ``x > 1``)."""
    if ties:
        pair = lambda sa, sb: [distinct(sa, sb)]  # noqa: E731
        scal = lambda s: [avoiding(*s, points=(scalar,))]  # noqa: E731
    else:
        pair = lambda sa, sb: [A(*sa, domain=domain_a), A(*sb, domain=domain_b)]  # noqa: E731
        scal = None
    zero_d_b = [A(*U, domain=domain_a), S(domain_b)] if not ties else [distinct(U, ())]
    zero_d_a = [S(domain_a), A(*U, domain=domain_b)] if not ties else [distinct((), U)]
    case(f"{op}/same_shape", call, pair(U, U), ref, ops=prims, **kw)
    case(f"{op}/broadcast_3d_2d", call, pair(B3, B2), ref, ops=prims, gradgrad=True, **kw)
    case(f"{op}/broadcast_2d_3d", call, pair(B2, B3), ref, ops=prims, **kw)
    case(f"{op}/broadcast_col_row", call, pair((3, 1), (1, 4)), ref, ops=prims, **kw)
    case(f"{op}/zero_d_rhs", call, zero_d_b, ref, ops=prims, **kw)
    case(f"{op}/zero_d_lhs", call, zero_d_a, ref, ops=prims, **kw)
    if scalar is not None:
        if ties:
            rhs, lhs = scal(U), scal(U)
        else:
            rhs, lhs = [A(*U, domain=domain_a)], [A(*U, domain=domain_b)]
        case(f"{op}/scalar_rhs", lambda x: call(x, scalar), rhs, lambda x: ref(x, scalar),
             ops=prims, **kw)
        case(f"{op}/scalar_lhs", lambda x: call(scalar, x), lhs, lambda x: ref(scalar, x),
             ops=reflected or prims, **kw)


_binary_rows("add", lambda a, b: a + b, np.add, prims=("add",))
_binary_rows("sub", lambda a, b: a - b, np.subtract, prims=("sub",))
_binary_rows("mul", lambda a, b: a * b, np.multiply, prims=("mul",))
_binary_rows("div", lambda a, b: a / b, np.divide, domain_b="nonzero", scalar=-1.25,
             prims=("div",))
_binary_rows("pow", lambda a, b: a ** b, np.power, domain_a="positive", scalar=None,
             prims=("pow",))

case("add/fn_alpha", lambda a, b: gj.add(a, b, alpha=2.5), [A(*B3), A(*B2)],
     lambda a, b: a + 2.5 * b, ops=("add", "mul"))
case("add/method_int_scalar", lambda a: a.add(3), [A(*U)], lambda a: a + 3, ops=("add",))
case("sub/fn_alpha", lambda a, b: gj.sub(a, b, alpha=-0.5), [A(*U), A(*U)],
     lambda a, b: a + 0.5 * b, ops=("sub", "mul"))
case("mul/method", lambda a, b: a.mul(b), [A(*B3), A(*B2)], np.multiply, ops=("mul",))
case("mul/self", lambda a: a * a, [A(*U)], np.square, ops=("mul",))
case("div/fn", lambda a, b: gj.div(a, b), [A(*U), A(*B2[-1:], domain="nonzero")], np.divide,
     ops=("div",))
case("pow/fn_tensor", lambda a, b: gj.pow(a, b), [A(*U, domain="positive"), A(*U)], np.power,
     ops=("pow",))
case("pow/scalar_base", lambda x: 2.0 ** x, [A(*U)], lambda x: 2.0 ** x, ops=("pow",))
case("pow/zero_d_exponent", lambda a, b: a ** b, [A(*U, domain="positive"), S()], np.power,
     ops=("pow",))

for _op, _call, _ref in (("maximum", lambda a, b: gj.maximum(a, b), np.maximum),
                         ("minimum", lambda a, b: gj.minimum(a, b), np.minimum)):
    _binary_rows(_op, _call, _ref, ties=True, scalar=None, prims=(_op,))
case("maximum/method", lambda a, b: a.maximum(b), [distinct(U, U)], np.maximum, ops=("maximum",))
case("minimum/method", lambda a, b: a.minimum(b), [distinct(B3, B2)], np.minimum,
     ops=("minimum",))

# Comparisons: bool results, no gradient; inputs from a few integers so that ties occur.
_CMP = (("eq", lambda a, b: a == b, np.equal), ("ne", lambda a, b: a != b, np.not_equal),
        ("lt", lambda a, b: a < b, np.less), ("le", lambda a, b: a <= b, np.less_equal),
        ("gt", lambda a, b: a > b, np.greater), ("ge", lambda a, b: a >= b, np.greater_equal))
_REFLECTED = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
for _op, _call, _ref in _CMP:
    _binary_rows(_op, _call, _ref, domain_a="small_int", domain_b="small_int", scalar=1.0,
                 prims=(_op,), reflected=(_REFLECTED[_op],), grad=False, out_dtype="bool")
    _fn = getattr(gj, _op)
    case(f"{_op}/fn", (lambda f: lambda a, b: f(a, b))(_fn),
         [A(*U, domain="small_int"), A(*U, domain="small_int")], _ref, ops=(_op,), grad=False,
         out_dtype="bool")
    case(f"{_op}/method", (lambda n: lambda a, b: getattr(a, n)(b))(_op),
         [A(*B3, domain="small_int"), A(*B2, domain="small_int")], _ref, ops=(_op,), grad=False,
         out_dtype="bool")
    case(f"{_op}/int64", _call, [A(*U), A(*B2[-1:])], _ref, ops=(_op,), grad=False,
         out_dtype="bool", dtypes=("int64",))

# Logical ops on bool tensors.
case("logical_and/op", lambda a, b: a & b, [M(*U), M(*U)], np.logical_and, ops=("logical_and",),
     grad=False, dtypes=("bool",))
case("logical_or/op", lambda a, b: a | b, [M(*B3), M(*B2)], np.logical_or, ops=("logical_or",),
     grad=False, dtypes=("bool",))
case("logical_not/op", lambda a: ~a, [M(*U)], np.logical_not, ops=("logical_not",), grad=False,
     dtypes=("bool",))
case("logical_and/fn", lambda a, b: gj.logical_and(a, b), [M(*U), M(*U)], np.logical_and,
     ops=("logical_and",), grad=False, dtypes=("bool",))

# where
case("where/same_shape", lambda c, a, b: gj.where(c, a, b), [M(*U), A(*U), A(*U)], np.where,
     ops=("where",))
case("where/broadcast", lambda c, a, b: gj.where(c, a, b), [M(3, 1), A(1, 4), A(*B3)], np.where,
     ops=("where",), gradgrad=True)
case("where/scalar_b", lambda c, a: gj.where(c, a, 0.0), [M(*U), A(*U)],
     lambda c, a: np.where(c, a, 0.0), ops=("where",))
case("where/scalar_a", lambda c, b: gj.where(c, 1.5, b), [M(*U), A(*U)],
     lambda c, b: np.where(c, 1.5, b), ops=("where",))
case("where/zero_d", lambda c, a, b: gj.where(c, a, b), [M(*U), S(), A(*U)], np.where,
     ops=("where",))
case("where/from_comparison", lambda a: gj.where(a > 0, a, -a), [A(*U, domain="nonzero")],
     np.abs, ops=("where", "gt"))

# Integer tensors through the elementwise ops (forward only).
case("add/int64", lambda a, b: a + b, [A(*U), A(*B2[-1:])], np.add, grad=False, dtypes=("int64",))
case("mul/int64_scalar", lambda a: a * 3, [A(*U)], lambda a: a * 3, grad=False, dtypes=("int64",))
case("sub/int64", lambda a, b: a - b, [A(*B3), A(*B2)], np.subtract, grad=False, dtypes=("int64",))
case("neg/int64", lambda a: -a, [A(*U)], np.negative, grad=False, dtypes=("int64",))
case("abs/int64", lambda a: a.abs(), [A(*U)], np.abs, grad=False, dtypes=("int64",))
case("clamp/int64", lambda a: a.clamp(-2, 3), [A(*U)], lambda a: np.clip(a, -2, 3), grad=False,
     dtypes=("int64",))
case("pow/int64_scalar", lambda a: a ** 2, [A(*U)], lambda a: a ** 2, grad=False,
     dtypes=("int64",))
case("maximum/int64", lambda a, b: gj.maximum(a, b), [A(*U), A(*U)], np.maximum, grad=False,
     dtypes=("int64",))
case("div/int64_true_division", lambda a, b: a / b, [A(*U), A(*U, domain="nonzero")], np.divide,
     grad=False, dtypes=("int64",), out_dtype="float32", tol={"int64": (1.3e-6, 1e-6)})

# ============================================================================================
# Reductions
# ============================================================================================

R = (2, 3, 4)
_DIMS = (("all", None, None, False), ("dim1", 1, 1, False), ("dim_neg", -1, -1, False),
         ("dims_tuple", (0, 2), (0, 2), False), ("dim1_keepdim", 1, 1, True),
         ("dims_tuple_keepdim", (0, 2), (0, 2), True))


def _reduce_rows(op, call, ref, *, domain="real", prims=(), **kw):
    """``call(x, dim, keepdim)``: one row per dim form; dim None means the no-dim call."""
    for variant, dim, axis, keepdim in _DIMS:
        if dim is None:
            fn = lambda x, _c=call: _c(x, None, False)  # noqa: E731
            r = lambda x, _r=ref: _r(x, None, False)  # noqa: E731
        else:
            fn = lambda x, _c=call, _d=dim, _k=keepdim: _c(x, _d, _k)  # noqa: E731
            r = lambda x, _r=ref, _a=axis, _k=keepdim: _r(x, _a, _k)  # noqa: E731
        case(f"{op}/{variant}", fn, [A(*R, domain=domain)], r, ops=prims, domain=domain, **kw)


_reduce_rows("sum", lambda x, d, k: x.sum() if d is None else x.sum(dim=d, keepdim=k),
             lambda x, a, k: np.sum(x, axis=a, keepdims=k), prims=("sum",))
_reduce_rows("mean", lambda x, d, k: x.mean() if d is None else gj.mean(x, d, keepdim=k),
             lambda x, a, k: np.mean(x, axis=a, keepdims=k), prims=("sum", "div"))
_reduce_rows("var", lambda x, d, k: x.var() if d is None else x.var(d, keepdim=k),
             lambda x, a, k: np.var(x, axis=a, keepdims=k, ddof=1), prims=("sum", "sub", "mul"),
             tol={"float32": (2e-5, 1e-6)})
_reduce_rows("std", lambda x, d, k: gj.std(x) if d is None else x.std(dim=d, keepdim=k),
             lambda x, a, k: np.std(x, axis=a, keepdims=k, ddof=1), prims=("sqrt",),
             tol={"float32": (2e-5, 1e-6)})
_reduce_rows("amax", lambda x, d, k: x.amax() if d is None else x.amax(dim=d, keepdim=k),
             lambda x, a, k: np.amax(x, axis=a, keepdims=k), domain="distinct", prims=("amax",))
_reduce_rows("amin", lambda x, d, k: gj.amin(x) if d is None else gj.amin(x, d, keepdim=k),
             lambda x, a, k: np.amin(x, axis=a, keepdims=k), domain="distinct", prims=("amin",))
# torch.logsumexp needs dim; "all" passes every dim.
_reduce_rows("logsumexp",
             lambda x, d, k: x.logsumexp((0, 1, 2)) if d is None else x.logsumexp(d, keepdim=k),
             lambda x, a, k: _logsumexp(x, (0, 1, 2) if a is None else a, k),
             prims=("exp", "log", "sum", "amax"))

case("var/unbiased_false", lambda x: x.var(1, unbiased=False), [A(*R)],
     lambda x: np.var(x, axis=1), tol={"float32": (2e-5, 1e-6)})
case("var/correction_0", lambda x: gj.var(x, dim=(0, 1), correction=0, keepdim=True), [A(*R)],
     lambda x: np.var(x, axis=(0, 1), keepdims=True), tol={"float32": (2e-5, 1e-6)})
case("std/unbiased_false", lambda x: x.std(-1, unbiased=False), [A(*R)],
     lambda x: np.std(x, axis=-1), tol={"float32": (2e-5, 1e-6)})
case("sum/int64", lambda x: x.sum(1), [A(*R)], lambda x: np.sum(x, axis=1), grad=False,
     dtypes=("int64",))
case("sum/bool", lambda x: x.sum(), [M(*U)], lambda x: np.sum(x).astype(np.int64), grad=False,
     dtypes=("bool",), out_dtype="int64")
case("sum/fn_tuple_neg", lambda x: gj.sum(x, dim=(-1, -3)), [A(*R)],
     lambda x: np.sum(x, axis=(-1, -3)), ops=("sum",))
case("amax/int64", lambda x: x.amax(0), [A(*R)], lambda x: np.amax(x, axis=0), grad=False,
     dtypes=("int64",))
case("max/full", lambda x: x.max(), [A(*R, domain="distinct")], np.max, ops=("amax",),
     domain="distinct")
case("min/full", lambda x: gj.min(x), [A(*R, domain="distinct")], np.min, ops=("amin",),
     domain="distinct")
case("max/dim_values", lambda x: x.max(1).values, [A(*R, domain="distinct")],
     lambda x: np.max(x, axis=1), ops=("amax",), domain="distinct")
case("argmax/all", lambda x: x.argmax(), [A(*R, domain="distinct")], np.argmax, ops=("argmax",),
     grad=False, out_dtype="int64", domain="distinct")
case("argmax/dim1", lambda x: gj.argmax(x, 1), [A(*R, domain="distinct")],
     lambda x: np.argmax(x, axis=1), ops=("argmax",), grad=False, out_dtype="int64",
     domain="distinct")
case("argmax/dim_neg_keepdim", lambda x: x.argmax(dim=-1, keepdim=True),
     [A(*R, domain="distinct")], lambda x: np.argmax(x, axis=-1, keepdims=True), ops=("argmax",),
     grad=False, out_dtype="int64", domain="distinct")
case("argmax/int64", lambda x: x.argmax(0), [A(*U)], lambda x: np.argmax(x, axis=0),
     ops=("argmax",), grad=False, dtypes=("int64",))

# ============================================================================================
# matmul
# ============================================================================================

_MM = (("1d_1d", (4,), (4,)), ("1d_2d", (3,), (3, 4)), ("2d_1d", (3, 4), (4,)),
       ("2d_2d", (2, 3), (3, 4)), ("3d_3d", (2, 2, 3), (2, 3, 2)), ("3d_2d", (2, 2, 3), (3, 2)),
       ("2d_3d", (2, 3), (2, 3, 2)), ("4d_3d", (2, 1, 2, 3), (3, 3, 2)), ("1d_3d", (3,), (2, 3, 2)),
       ("3d_1d", (2, 2, 3), (3,)))
for _variant, _sa, _sb in _MM:
    case(f"matmul/{_variant}", lambda a, b: a @ b, [A(*_sa), A(*_sb)], np.matmul, ops=("matmul",),
         gradgrad=True if _variant == "4d_3d" else None)
case("matmul/fn", lambda a, b: gj.matmul(a, b), [A(2, 3), A(3, 2)], np.matmul, ops=("matmul",))
case("matmul/method", lambda a, b: a.matmul(b), [A(2, 2, 3), A(3,)], np.matmul, ops=("matmul",))
case("mm/fn", lambda a, b: gj.mm(a, b), [A(3, 2), A(2, 4)], np.matmul, ops=("matmul",))
case("mm/method", lambda a, b: a.mm(b), [A(2, 3), A(3, 3)], np.matmul, ops=("matmul",))
case("matmul/int64", lambda a, b: a @ b, [A(2, 3), A(3, 2)], np.matmul, ops=("matmul",),
     grad=False, dtypes=("int64",))

# ============================================================================================
# Movement: reshape / view / transpose / permute / squeeze / unsqueeze / expand / flatten / cat
# ============================================================================================

case("reshape/method", lambda x: x.reshape(4, 6), [A(*R)], lambda x: x.reshape(4, 6),
     ops=("reshape",))
case("reshape/minus_one", lambda x: x.reshape(-1, 2), [A(*R)], lambda x: x.reshape(-1, 2),
     ops=("reshape",))
case("reshape/tuple_arg", lambda x: x.reshape((3, 8)), [A(*R)], lambda x: x.reshape(3, 8),
     ops=("reshape",))
case("reshape/fn", lambda x: gj.reshape(x, (6, 4)), [A(*R)], lambda x: x.reshape(6, 4),
     ops=("reshape",))
case("view/method", lambda x: x.view(6, 4), [A(*R)], lambda x: x.reshape(6, 4), ops=("reshape",))
case("view/flat", lambda x: x.view(-1), [A(*R)], lambda x: x.reshape(-1), ops=("reshape",))
case("reshape/to_0d", lambda x: x.reshape(()), [A(1)], lambda x: x.reshape(()), ops=("reshape",))
case("transpose/method", lambda x: x.transpose(0, 2), [A(*R)], lambda x: np.swapaxes(x, 0, 2),
     ops=("permute",))
case("transpose/neg_dims", lambda x: gj.transpose(x, -1, -2), [A(*R)],
     lambda x: np.swapaxes(x, -1, -2), ops=("permute",))
case("t/method", lambda x: x.t(), [A(*U)], lambda x: x.T, ops=("permute",))
case("T/property", lambda x: x.T, [A(*U)], lambda x: x.T, ops=("permute",))
case("permute/method", lambda x: x.permute(2, 0, 1), [A(*R)],
     lambda x: np.transpose(x, (2, 0, 1)), ops=("permute",))
case("permute/tuple_neg", lambda x: x.permute((-1, 0, 1)), [A(*R)],
     lambda x: np.transpose(x, (2, 0, 1)), ops=("permute",))
case("permute/fn", lambda x: gj.permute(x, (1, 2, 0)), [A(*R)],
     lambda x: np.transpose(x, (1, 2, 0)), ops=("permute",))
case("squeeze/all", lambda x: x.squeeze(), [A(2, 1, 3, 1)], np.squeeze, ops=("reshape",))
case("squeeze/dim", lambda x: x.squeeze(1), [A(2, 1, 3, 1)], lambda x: np.squeeze(x, 1),
     ops=("reshape",))
case("squeeze/neg_dim", lambda x: gj.squeeze(x, -1), [A(2, 1, 3, 1)], lambda x: np.squeeze(x, -1),
     ops=("reshape",))
case("squeeze/non_unit_dim_noop", lambda x: x.squeeze(0), [A(2, 1, 3)], lambda x: x)
case("unsqueeze/front", lambda x: x.unsqueeze(0), [A(*U)], lambda x: x[None], ops=("reshape",))
case("unsqueeze/neg", lambda x: gj.unsqueeze(x, -1), [A(*U)], lambda x: x[..., None],
     ops=("reshape",))
case("unsqueeze/middle", lambda x: x.unsqueeze(1), [A(*U)], lambda x: x[:, None],
     ops=("reshape",))
case("expand/unit_dim", lambda x: x.expand(3, 4), [A(3, 1)], lambda x: np.broadcast_to(x, (3, 4)),
     ops=("expand",))
case("expand/new_leading", lambda x: x.expand(2, 3, 4), [A(1, 4)],
     lambda x: np.broadcast_to(x, (2, 3, 4)), ops=("expand",))
case("expand/minus_one", lambda x: x.expand(2, -1, 4), [A(3, 1)],
     lambda x: np.broadcast_to(x, (2, 3, 4)), ops=("expand",))
case("expand/fn", lambda x: gj.expand(x, (3, 4)), [A(4)], lambda x: np.broadcast_to(x, (3, 4)),
     ops=("expand",))
case("expand_as/method", lambda x, y: x.expand_as(y) * y, [A(1, 4), A(*U)],
     lambda x, y: np.broadcast_to(x, y.shape) * y, ops=("expand", "mul"))
case("expand/then_reduce", lambda x: x.expand(3, 4).sum(0), [A(1, 4)],
     lambda x: 3 * x[0], ops=("expand", "sum"))
case("flatten/all", lambda x: x.flatten(), [A(*R)], lambda x: x.reshape(-1), ops=("reshape",))
case("flatten/start1", lambda x: x.flatten(1), [A(*R)], lambda x: x.reshape(2, 12),
     ops=("reshape",))
case("flatten/range", lambda x: gj.flatten(x, 0, 1), [A(*R)], lambda x: x.reshape(6, 4),
     ops=("reshape",))
case("flatten/neg_start", lambda x: x.flatten(start_dim=-2), [A(*R)], lambda x: x.reshape(2, 12),
     ops=("reshape",))
case("cat/dim0", lambda a, b: gj.cat([a, b]), [A(2, 3), A(1, 3)],
     lambda a, b: np.concatenate([a, b]), ops=("cat", "slice"))
case("cat/dim_neg", lambda a, b: gj.cat((a, b), dim=-1), [A(2, 3), A(2, 2)],
     lambda a, b: np.concatenate([a, b], axis=-1), ops=("cat", "slice"))
case("cat/three_dim1", lambda a, b, c: gj.cat([a, b, c], 1), [A(2, 1, 2), A(2, 2, 2), A(2, 1, 2)],
     lambda a, b, c: np.concatenate([a, b, c], axis=1), ops=("cat", "slice"), gradgrad=True)
case("cat/same_tensor_twice", lambda a: gj.cat([a, a * 2.0]), [A(2, 3)],
     lambda a: np.concatenate([a, 2 * a]), ops=("cat",))
case("stack/dim0", lambda a, b: gj.stack([a, b]), [A(2, 3), A(2, 3)],
     lambda a, b: np.stack([a, b]), ops=("cat", "reshape"))
case("stack/dim_neg", lambda a, b, c: gj.stack([a, b, c], dim=-1), [A(2, 3), A(2, 3), A(2, 3)],
     lambda a, b, c: np.stack([a, b, c], axis=-1), ops=("cat",))
case("stack/dim1", lambda a, b: gj.stack((a, b), 1), [A(*U), A(*U)],
     lambda a, b: np.stack([a, b], axis=1), ops=("cat",))

# ============================================================================================
# Indexing: basic slicing, integer arrays, gather
# ============================================================================================

X2 = (4, 5)

_BASIC = (
    ("slice_rows", lambda x: x[1:3], X2),
    ("step", lambda x: x[::2], X2),
    ("step_both", lambda x: x[1::2, ::3], X2),
    ("neg_index", lambda x: x[:, -1], X2),
    ("neg_row", lambda x: x[-1], X2),
    ("neg_range", lambda x: x[-3:-1, 1:-1], X2),
    ("int_int", lambda x: x[1, 2], X2),
    ("ellipsis", lambda x: x[..., 1:], R),
    ("ellipsis_int", lambda x: x[0, ..., -2], R),
    ("none_int", lambda x: x[None, 0], R),
    ("none_middle_step", lambda x: x[:, None, 1:4:2], R),
    ("mixed", lambda x: x[1, :, None, ::2], R),
    ("past_end", lambda x: x[2:10], X2),
    ("chained", lambda x: x[1:][:, 0], X2),
)
for _variant, _key, _shape in _BASIC:
    case(f"getitem/{_variant}", _key, [A(*_shape)], _key, ops=("slice",),
         gradgrad=True if _variant == "step_both" else None)
case("getitem/grad_through_slice_backward", lambda x: x[1::2, ::3] * 3.0, [A(*X2)],
     lambda x: 3.0 * x[1::2, ::3], ops=("slice", "slice_backward"))

# Integer-array ("advanced") indexing. Index arrays are inputs (int64 tensors) or closed over.
case("index/tensor_repeats", lambda x, i: x[i], [A(3, 4), I([0, 2, 2, 1])],
     lambda x, i: x[i], ops=("index", "index_backward"))
case("index/arange_targets", lambda x, t: x[gj.arange(4), t], [A(4, 3), RI((4,), 0, 3)],
     lambda x, t: x[np.arange(4), t], ops=("index", "index_backward"))
case("index/list", lambda x: x[[0, 2, 0]], [A(3, 4)], lambda x: x[[0, 2, 0]],
     ops=("index", "index_backward"))
case("index/numpy_array", lambda x: x[np.array([2, -1])], [A(3, 4)],
     lambda x: x[np.array([2, -1])], ops=("index",))
case("index/columns", lambda x, i: x[:, i], [A(3, 4), I([3, 0, 3])], lambda x, i: x[:, i],
     ops=("index",))
case("index/2d_index", lambda x, i: x[i], [A(3, 4), I([[0, 1], [2, 0]])], lambda x, i: x[i],
     ops=("index",))
case("index/with_slice", lambda x, i: x[i, 1:], [A(3, 4), I([1, 1, 0])], lambda x, i: x[i, 1:],
     ops=("index",))
case("index/negative_values", lambda x, i: x[i], [A(3, 4), I([-1, 0, -3])], lambda x, i: x[i],
     ops=("index",))
case("index/two_arrays_broadcast", lambda x, i, j: x[i, j], [A(3, 4), I([[0], [2]]), I([1, 3, 3])],
     lambda x, i, j: x[i, j], ops=("index",))
case("index/bool_mask", lambda x: x[np.array([True, False, True])], [A(3, 4)],
     lambda x: x[np.array([True, False, True])], ops=("index", "index_backward"))
case("index/3d_middle", lambda x, i: x[:, i, :], [A(*R), I([2, 0])], lambda x, i: x[:, i, :],
     ops=("index",))

case("gather/dim1", lambda x, i: x.gather(1, i), [A(3, 4), RI((3, 2), 0, 4)],
     lambda x, i: _gather(x, 1, i), ops=("index", "index_backward", "iota"))
case("gather/dim0", lambda x, i: gj.gather(x, 0, i), [A(3, 4), RI((2, 4), 0, 3)],
     lambda x, i: _gather(x, 0, i), ops=("index",))
case("gather/dim_neg_repeats", lambda x, i: x.gather(-1, i), [A(2, 3), I([[0, 0, 2], [1, 1, 1]])],
     lambda x, i: _gather(x, -1, i), ops=("index",))

# ============================================================================================
# softmax / log_softmax
# ============================================================================================

case("softmax/last", lambda x: gj.softmax(x, -1), [A(*U)], lambda x: _softmax(x, -1),
     ops=("exp", "sum", "div", "amax"))
case("softmax/dim0", lambda x: x.softmax(0), [A(*U)], lambda x: _softmax(x, 0))
case("softmax/3d_dim1", lambda x: x.softmax(dim=1), [A(*R)], lambda x: _softmax(x, 1))
case("softmax/large_logits", lambda x: gj.softmax(x * 1.0 + 500.0, dim=-1), [A(*U)],
     lambda x: _softmax(x + 500.0, -1), tol={"float32": (2e-4, 1e-6)}, grad=False)
case("log_softmax/last", lambda x: gj.log_softmax(x, -1), [A(*U)],
     lambda x: _log_softmax(x, -1), ops=("exp", "log", "sum", "sub"))
case("log_softmax/dim0", lambda x: x.log_softmax(0), [A(*U)], lambda x: _log_softmax(x, 0))
case("log_softmax/3d_dim1", lambda x: x.log_softmax(dim=1), [A(*R)], lambda x: _log_softmax(x, 1))
case("log_softmax/large_logits", lambda x: gj.log_softmax(x + 500.0, -1), [A(*U)],
     lambda x: _log_softmax(x + 500.0, -1), tol={"float32": (1e-4, 1e-4)}, grad=False)

# ============================================================================================
# Small compositions that mix families (the kind of expressions models are made of)
# ============================================================================================

case("compose/linear_relu", lambda x, w, b: gj.relu(x @ w.T + b).sum(-1),
     [A(3, 4), A(2, 4), A(2)], lambda x, w, b: np.maximum(x @ w.T + b, 0).sum(-1),
     ops=("matmul", "permute", "add", "relu", "sum"))
case("compose/cross_entropy", lambda x, t: -x.log_softmax(-1)[gj.arange(4), t].mean(),
     [A(4, 3), RI((4,), 0, 3)], lambda x, t: -_log_softmax(x, -1)[np.arange(4), t].mean(),
     ops=("index", "index_backward"), gradgrad=True)
case("compose/layer_norm",
     lambda x: (x - x.mean(-1, keepdim=True)) * gj.rsqrt(x.var(-1, unbiased=False, keepdim=True)
                                                          + 1e-5),
     [A(*U)], lambda x: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5),
     tol={"float32": (1e-4, 1e-5)}, gradgrad=True)


# ============================================================================================
# Sliding windows: unfold (im2col) and fold (col2im); references loop over window positions
# ============================================================================================

def _window_count(size, k, d, s, before, after):
    return (size + before + after - d * (k - 1) - 1) // s + 1


def _unfold_ref(x, kernel, dilation=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0), pad_value=0.0):
    n, c, h, w = x.shape
    oh = _window_count(h, kernel[0], dilation[0], stride[0], padding[0], padding[1])
    ow = _window_count(w, kernel[1], dilation[1], stride[1], padding[2], padding[3])
    out = np.full((n, c) + tuple(kernel) + (oh, ow), pad_value, dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            for p in range(oh):
                for q in range(ow):
                    row = p * stride[0] - padding[0] + i * dilation[0]
                    col = q * stride[1] - padding[2] + j * dilation[1]
                    if 0 <= row < h and 0 <= col < w:
                        out[:, :, i, j, p, q] = x[:, :, row, col]
    return out


def _fold_ref(cols, size, kernel, dilation=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0)):
    n, c, kh, kw, oh, ow = cols.shape
    out = np.zeros((n, c) + tuple(size), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            for p in range(oh):
                for q in range(ow):
                    row = p * stride[0] - padding[0] + i * dilation[0]
                    col = q * stride[1] - padding[2] + j * dilation[1]
                    if 0 <= row < size[0] and 0 <= col < size[1]:
                        out[:, :, row, col] += cols[:, :, i, j, p, q]
    return out


def _window_op(name):
    from graphjit.ops import window
    return getattr(window, name)


case("unfold/F_basic", lambda x: gj.nn.functional.unfold(x, (2, 3)), [A(2, 3, 4, 5)],
     lambda x: _unfold_ref(x, (2, 3)).reshape(2, 18, 9), ops=("unfold", "fold"))
case("unfold/F_dilation_padding_stride",
     lambda x: gj.nn.functional.unfold(x, 2, dilation=2, padding=1, stride=(2, 1)),
     [A(1, 2, 5, 4)],
     lambda x: _unfold_ref(x, (2, 2), (2, 2), (2, 1), (1, 1, 1, 1)).reshape(1, 8, 12),
     ops=("unfold", "fold"))
case("unfold/op_asymmetric_pad_value",
     lambda x: _window_op("unfold")(x, (3, 2), (1, 2), (1, 2), (2, 0, 1, 3), 0.5),
     [A(2, 1, 3, 4)], lambda x: _unfold_ref(x, (3, 2), (1, 2), (1, 2), (2, 0, 1, 3), 0.5),
     ops=("unfold",))
case("unfold/op_neg_inf_padding",
     lambda x: _window_op("unfold")(x, (2, 2), (1, 1), (2, 2), (1, 0, 0, 1), -math.inf),
     [A(1, 2, 3, 3)], lambda x: _unfold_ref(x, (2, 2), (1, 1), (2, 2), (1, 0, 0, 1), -math.inf),
     ops=("unfold",), grad=False)
case("fold/F_basic", lambda x: gj.nn.functional.fold(x, (4, 5), (2, 3)), [A(2, 12, 9)],
     lambda x: _fold_ref(x.reshape(2, 2, 2, 3, 3, 3), (4, 5), (2, 3)), ops=("fold", "unfold"))
case("fold/F_stride_dilation_padding",
     lambda x: gj.nn.functional.fold(x, (5, 6), 2, dilation=2, padding=1, stride=2),
     [A(2, 8, 9)],
     lambda x: _fold_ref(x.reshape(2, 2, 2, 2, 3, 3), (5, 6), (2, 2), (2, 2), (2, 2),
                         (1, 1, 1, 1)), ops=("fold", "unfold"))
case("fold/op_asymmetric_uncovered_rows",
     lambda x: _window_op("fold")(x, (5, 4), (2, 2), (1, 1), (2, 3), (0, 1, 2, 0)),
     [A(1, 2, 2, 2, 3, 2)],
     lambda x: _fold_ref(x, (5, 4), (2, 2), (1, 1), (2, 3), (0, 1, 2, 0)), ops=("fold",))
case("unfold/op_layout_CN",
     lambda x: _window_op("unfold")(x, (2, 3), (2, 1), (1, 2), (1, 0, 2, 1), 0.25, "CN"),
     [A(3, 2, 4, 5)],
     lambda x: _unfold_ref(x, (2, 3), (2, 1), (1, 2), (1, 0, 2, 1), 0.25).transpose(
         1, 2, 3, 0, 4, 5), ops=("unfold", "fold"))
case("fold/op_layout_CN",
     lambda x: _window_op("fold")(x, (5, 4), (2, 2), (1, 1), (2, 3), (0, 1, 2, 0), "CN"),
     [A(2, 2, 2, 3, 3, 2)],
     lambda x: _fold_ref(x.transpose(3, 0, 1, 2, 4, 5), (5, 4), (2, 2), (1, 1), (2, 3),
                         (0, 1, 2, 0)), ops=("fold", "unfold"))


# ============================================================================================
# Composites (graphjit/ops/composite.py): no op of their own; the rows check their numbers,
# gradients and compiled programs through the ops they are made of.
# ============================================================================================

def _norm_ref(x, p, axis=None, keepdims=False):
    a = np.abs(x)
    if p == math.inf:
        return np.max(a, axis=axis, keepdims=keepdims)
    return np.sum(a ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


case("flip/dims", lambda x: gj.flip(x, (0, 2)), [A(2, 3, 4)], lambda x: np.flip(x, (0, 2)),
     ops=("index", "clone"))
case("flip/method_last", lambda x: x.flip(-1), [A(3, 4)], lambda x: np.flip(x, -1),
     ops=("index", "clone"))
case("roll/dim", lambda x: gj.roll(x, 2, 1), [A(3, 4)], lambda x: np.roll(x, 2, 1),
     ops=("cat", "clone"))
case("roll/two_dims_negative", lambda x: x.roll((-1, 3), (0, 1)), [A(3, 4)],
     lambda x: np.roll(x, (-1, 3), (0, 1)), ops=("cat", "clone"))
case("roll/flat", lambda x: gj.roll(x, 5), [A(3, 4)], lambda x: np.roll(x, 5),
     ops=("cat", "clone"))
case("tril/diag", lambda x: gj.tril(x, -1), [A(2, 3, 4)], lambda x: np.tril(x, -1),
     ops=("where", "iota"))
case("triu/method", lambda x: x.triu(1), [A(4, 3)], lambda x: np.triu(x, 1),
     ops=("where", "iota"))
case("diag/vector", lambda x: gj.diag(x, -1), [A(4)], lambda x: np.diag(x, -1),
     ops=("where", "iota", "cat"))
case("diag/matrix", lambda x: x.diag(1), [A(3, 5)], lambda x: np.diag(x, 1), ops=("index",))
case("elu/alpha", lambda x: gj.nn.functional.elu(x, 0.5), [A(3, 4)],
     lambda x: np.where(x > 0, x, 0.5 * np.expm1(np.minimum(x, 0))), ops=("where", "exp"))
case("where/method", lambda x, y: x.where(x > 0.25, y), [A(3, 4), A(4)],
     lambda x, y: np.where(x > 0.25, x, y), ops=("where",))
case("tile/dims", lambda x: gj.tile(x, (2, 1, 3)), [A(3, 2)], lambda x: np.tile(x, (2, 1, 3)),
     ops=("expand", "clone"))
case("square/fn", lambda x: gj.square(x), [A(3, 4)], np.square, ops=("mul",))
case("masked_fill/scalar", lambda x, m: x.masked_fill(m, -1.5), [A(3, 4), M(3, 4)],
     lambda x, m: np.where(m, -1.5, x), ops=("where",))
case("masked_fill/broadcast", lambda x, m: gj.masked_fill(x, m, 2.0), [A(3, 4), M(4)],
     lambda x, m: np.where(m, 2.0, x), ops=("where",))
case("norm/fro", lambda x: gj.norm(x), [A(3, 4)], lambda x: np.sqrt(np.sum(x * x)),
     ops=("sqrt", "sum"))
case("norm/p1_dim", lambda x: x.norm(1, dim=1), [A(3, 4)], lambda x: _norm_ref(x, 1, 1),
     ops=("abs", "sum"), domain="nonzero")
case("norm/p3_keepdim", lambda x: x.norm(3, dim=0, keepdim=True), [A(3, 4)],
     lambda x: _norm_ref(x, 3, 0, True), ops=("pow_scalar",), domain="nonzero")
case("norm/inf", lambda x: gj.norm(x, math.inf, dim=1), [distinct((3, 4))],
     lambda x: _norm_ref(x, math.inf, 1), ops=("amax",))
case("einsum/matmul_transposed", lambda a, b: gj.einsum("ij,kj->ik", a, b), [A(3, 4), A(2, 4)],
     lambda a, b: np.einsum("ij,kj->ik", a, b), ops=("matmul",))
case("einsum/batched_sum", lambda a, b: gj.einsum("bij,bjk->bk", a, b), [A(2, 3, 4), A(2, 4, 5)],
     lambda a, b: np.einsum("bij,bjk->bk", a, b), ops=("matmul", "sum"))
case("einsum/outer_implicit", lambda a, b: gj.einsum("i,j", a, b), [A(3), A(4)],
     lambda a, b: np.einsum("i,j", a, b), ops=("matmul",))
case("einsum/three_operands", lambda a, b, c: gj.einsum("ij,jk,kl->il", a, b, c),
     [A(2, 3), A(3, 4), A(4, 2)], lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c),
     ops=("matmul",))
case("bmm/fn", lambda a, b: gj.bmm(a, b), [A(2, 3, 4), A(2, 4, 2)], np.matmul, ops=("matmul",))
case("addmm/scaled", lambda c, a, b: gj.addmm(c, a, b, beta=0.5, alpha=2.0),
     [A(3, 2), A(3, 4), A(4, 2)], lambda c, a, b: 0.5 * c + 2.0 * (a @ b), ops=("matmul",))
case("baddbmm/fn", lambda c, a, b: gj.baddbmm(c, a, b), [A(2, 3, 2), A(2, 3, 4), A(2, 4, 2)],
     lambda c, a, b: c + a @ b, ops=("matmul",))
case("mv/fn", lambda a, v: gj.mv(a, v), [A(3, 4), A(4)], np.matmul, ops=("matmul",))
case("dot/fn", lambda a, b: gj.dot(a, b), [A(4), A(4)], np.dot, ops=("matmul",))
case("outer/fn", lambda a, b: gj.outer(a, b), [A(3), A(4)], np.outer, ops=("mul",))
case("isclose/fn", lambda a, b: gj.isclose(a, b + 1e-9), [A(3, 4), A(3, 4)],
     lambda a, b: np.isclose(a, b + 1e-9, rtol=1e-5, atol=1e-8), ops=("le",), grad=False,
     out_dtype="bool")
def _quiet(fn):
    """A reference that makes NaN and inf on purpose, without NumPy's warnings."""
    def ref(*xs):
        with np.errstate(all="ignore"):
            return fn(*xs)
    return ref


case("nan_tests/isfinite", lambda x: gj.isfinite(x / (x > 0)), [A(3, 4)],
     _quiet(lambda x: np.isfinite(x / (x > 0))), ops=("lt",), grad=False, out_dtype="bool")
case("nan_tests/isnan_isinf", lambda x: gj.isnan(gj.log(x)) | gj.isinf(1 / (x > 0)), [A(3, 4)],
     _quiet(lambda x: np.isnan(np.log(x)) | np.isinf(1 / (x > 0))), ops=("ne", "eq"),
     grad=False, out_dtype="bool")
case("nan_to_num/fn", lambda x: gj.nan_to_num(gj.log(x), nan=0.5), [A(3, 4)],
     _quiet(lambda x: np.nan_to_num(np.log(x), nan=0.5, posinf=np.finfo(x.dtype).max,
                                    neginf=np.finfo(x.dtype).min)), ops=("where",), grad=False)


class _ExpRule:
    """The gradient rule of the custom_function row (what graphjit.autograd.Function
    registers for a traced apply, see [Custom gradient rules]): exp's, with graphjit ops."""
    name = "op_table_exp"

    def vjp(self, g, inputs, index):
        (x,) = inputs
        return (gj.mul(g, gj.exp(x)),)


_EXP_RULE = custom.register_rule(_ExpRule(), "op_table_exp")
case("custom_function/exp", lambda x: custom.custom_function(gj.exp(x).detach(), x, key=_EXP_RULE),
     [A(*U)], np.exp, ops=("custom_function",))
# reattach (the tracer's in-place change under no_grad, [In-place changes under no_grad]):
# a value whose gradient goes to another operand. With the value x's own (detached) the
# gradient is x's, which finite differences of the value can check.
case("reattach/identity", lambda x: custom.reattach(gj.mul(x.detach(), 1.0), x), [A(*U)],
     lambda x: x, ops=("reattach", "mul"))


# ============================================================================================
# Random numbers (graphjit/ops/random.py): NumPy's Philox words as the reference
# ============================================================================================

def _rand(dtype):
    def fn(seed, offset):
        from graphjit.ops.registry import bind, get
        return bind(get("rand_uniform"), seed, offset, shape=(3, 5), dtype=getattr(gj, dtype))
    return fn


def _rand_ref(dtype):
    def ref(seed, offset):
        from graphjit.ops.random import to_unit_float, words
        w = words(int(seed) & (2**64 - 1), int(offset) & (2**64 - 1), 15)
        return to_unit_float(w, np.dtype(dtype)).reshape(3, 5)
    return ref


for _dt, _seed in (("float32", 12345), ("float64", -7)):  # (-7: a seed above 2**63, as int64)
    case(f"rand_uniform/{_dt}", _rand(_dt), [I(_seed), I(2**40 + 3)], _rand_ref(_dt),
         ops=("rand_uniform",), grad=False, dtypes=(_dt,), tol={_dt: (0.0, 0.0)})


# Rounding, scans and orders: tests/op_table_scan.py (its rows join CASES here).
import op_table_scan  # noqa: E402,F401


def by_name(name: str) -> OpCase:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(name)
