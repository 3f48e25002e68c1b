"""Elementwise ops: unary, binary and ``where``.

Binary ops take operands of one dtype (``graphjit.ops.api`` promotes and casts before
binding, so the IR holds explicit casts) and broadcast by NumPy rules. Gradients of a
broadcast operand are summed back to its shape with ``api.sum_to``.

``scalar`` gives each op's scalar expression for the code generators; operands arrive as
expression strings and attributes as Python values.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..errors import DTypeError
from ..shapes import TensorType, broadcast_shapes
from . import api
from .registry import OpDef, register

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def _require(op, t: TensorType, *, floating=False, boolean=False, numeric=False):
    if floating and not t.dtype.is_floating_point:
        raise DTypeError(f"expects a floating point tensor, got {t.dtype.name} of shape {t.shape}", op=op)
    if boolean and t.dtype is not dtypes.bool_:
        raise DTypeError(f"expects a bool tensor, got {t.dtype.name} of shape {t.shape}", op=op)
    if numeric and t.dtype is dtypes.bool_:
        raise DTypeError(f"is not defined for bool tensors (shape {t.shape})", op=op)


def _binary_types(op, a: TensorType, b: TensorType) -> tuple:
    if a.dtype is not b.dtype:
        raise DTypeError(f"operands must have one dtype, got {a.dtype.name}{list(a.shape)} and "
                         f"{b.dtype.name}{list(b.shape)}", op=op)
    return broadcast_shapes(op, a.shape, b.shape)


# ---- registration helpers ------------------------------------------------------------------

def _unary(name, impl, vjp, saves, scalar, *, floating=True, numeric=True, no_grad_reason=None,
           out_dtype=None, decompose=None, view=False):
    def infer(x: TensorType, **attrs) -> TensorType:
        _require(name, x, floating=floating, numeric=numeric)
        return TensorType(x.shape, out_dtype or x.dtype)
    infer.__qualname__ = f"infer_{name}"
    return register(OpDef(name=name, kind="elementwise", infer=infer, impl=impl, vjp=vjp,
                          saves=saves, scalar=scalar, no_grad_reason=no_grad_reason,
                          decompose=decompose, view=view))


def _binary(name, impl, vjp, saves, scalar, *, out_dtype=None, numeric=True, boolean=False,
            no_grad_reason=None):
    def infer(a: TensorType, b: TensorType) -> TensorType:
        shape = _binary_types(name, a, b)
        _require(name, a, numeric=numeric, boolean=boolean)
        return TensorType(shape, out_dtype or a.dtype)
    infer.__qualname__ = f"infer_{name}"
    return register(OpDef(name=name, kind="elementwise", infer=infer, impl=impl, vjp=vjp,
                          saves=saves, scalar=scalar, no_grad_reason=no_grad_reason))


# ---- unary ----------------------------------------------------------------------------------

def _vjp_neg(g, out, x):
    return (api.neg(g),)


_unary("neg", np.negative, _vjp_neg, (), lambda x: f"(-{x})", floating=False)


def _vjp_clone(g, out, x):
    return (g,)


# A copy (``Tensor.clone``, and composites that must not return a view: ``repeat``). In a
# graph values are immutable, so simplify drops it (``clone(x) -> x``); eagerly it is a
# new array that shares no memory, with every bit of x (-0.0, NaN payloads) kept.
_unary("clone", lambda x: np.array(x, copy=True), _vjp_clone, (), lambda x: x, floating=False,
       numeric=False)


def _vjp_exp(g, out, x):
    return (api.mul(g, out),)


_unary("exp", np.exp, _vjp_exp, ("out",), lambda x: f"math.exp({x})")


def _vjp_log(g, out, x):
    return (api.div(g, x),)


_unary("log", np.log, _vjp_log, (0,), lambda x: f"math.log({x})")


def _vjp_log1p(g, out, x):
    return (api.div(g, api.add(x, 1.0)),)


_unary("log1p", np.log1p, _vjp_log1p, (0,), lambda x: f"math.log1p({x})")


def _vjp_sqrt(g, out, x):
    return (api.div(api.mul(g, 0.5), out),)


_unary("sqrt", np.sqrt, _vjp_sqrt, ("out",), lambda x: f"math.sqrt({x})")


def _rsqrt(x):
    return 1.0 / np.sqrt(x)


def _vjp_rsqrt(g, out, x):
    # d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 out^3
    return (api.mul(api.mul(g, -0.5), api.mul(out, api.mul(out, out))),)


_unary("rsqrt", _rsqrt, _vjp_rsqrt, ("out",), lambda x: f"(1.0 / math.sqrt({x}))")


def _vjp_abs(g, out, x):
    return (api.mul(g, api.sign(x)),)


_unary("abs", np.abs, _vjp_abs, (0,), lambda x: f"abs({x})", floating=False)


def _vjp_zero(g, out, x):
    # The derivative is zero almost everywhere; PyTorch reports zeros, not "no gradient".
    return (api.zeros_like(g),)


_unary("sign", np.sign, _vjp_zero, (), lambda x: f"(({x} > 0) - ({x} < 0))", floating=False)


# Rounding, floats only (graphjit.floor and friends return an int tensor itself). ``np.floor``
# (``math.floor`` is an int in Numba's CPU target) keeps the float type; ``round`` rounds
# half to even, as torch.round and np.rint. Piecewise constant: the gradient is zero
# (``_vjp_zero``), as PyTorch's. The CUDA target has its own expressions
# (backend/cuda/elementwise.py).
for _name, _fn in (("floor", "np.floor"), ("ceil", "np.ceil"), ("round", "np.rint"),
                   ("trunc", "np.trunc")):
    _unary(_name, getattr(np, _fn[3:]), _vjp_zero, (),
           (lambda fn: lambda x: f"{fn}({x})")(_fn))


def _vjp_sin(g, out, x):
    return (api.mul(g, api.cos(x)),)


_unary("sin", np.sin, _vjp_sin, (0,), lambda x: f"math.sin({x})")


def _vjp_cos(g, out, x):
    return (api.neg(api.mul(g, api.sin(x))),)


_unary("cos", np.cos, _vjp_cos, (0,), lambda x: f"math.cos({x})")


def _vjp_tanh(g, out, x):
    return (api.mul(g, api.sub(1.0, api.mul(out, out))),)


_unary("tanh", np.tanh, _vjp_tanh, ("out",), lambda x: f"math.tanh({x})")


def _special():
    """``scipy.special``, imported on first use: importing it takes 0.15-0.2 s (it pulls in
    ``numpy.f2py`` and ``numpy.testing``), most of what ``import graphjit`` took, and only
    the eager (and interpreted) sigmoid, SiLU, erf and erf-GELU use it."""
    from scipy import special
    return special


def _sigmoid(x):
    return _special().expit(x)


def _vjp_sigmoid(g, out, x):
    return (api.mul(g, api.mul(out, api.sub(1.0, out))),)


_unary("sigmoid", _sigmoid, _vjp_sigmoid, ("out",),
       lambda x: f"(1.0 / (1.0 + math.exp(-{x})))")


def _vjp_erf(g, out, x):
    # d/dx erf(x) = 2/sqrt(pi) exp(-x^2)
    return (api.mul(g, api.mul(api.exp(api.neg(api.mul(x, x))), 2.0 / math.sqrt(math.pi))),)


def _erf(x):
    return _special().erf(x)


_unary("erf", _erf, _vjp_erf, (0,), lambda x: f"math.erf({x})")


def _relu(x):
    return np.maximum(x, 0).astype(x.dtype, copy=False)


def _vjp_relu(g, out, x):
    # NOTE: the mask is taken from the output, so the gradient at exactly 0 is 0 (PyTorch's choice).
    return (api.where(api.gt(out, 0.0), g, 0.0),)


_unary("relu", _relu, _vjp_relu, ("out",), lambda x: f"max({x}, 0.0)", floating=False)


def _leaky_relu(x, negative_slope):
    return np.where(x > 0, x, x * x.dtype.type(negative_slope))


def _vjp_leaky_relu(g, out, x, negative_slope):
    return (api.where(api.gt(x, 0.0), g, api.mul(g, negative_slope)),)


_unary("leaky_relu", _leaky_relu, _vjp_leaky_relu, (0,),
       lambda x, negative_slope: f"({x} if {x} > 0 else {x} * {negative_slope!r})")


# GELU in the same operation order everywhere: the eager NumPy impl, the scalar expression
# and the decomposition into primitives (``OpDef.decompose``, used by passes/decompose) all
# compute (x * 0.5) * (tanh(inner) + 1) with inner = (x + ((x * x) * x) * C) * K (or
# erf(x * (1 / sqrt 2))), and the VJP builds that same ``inner``: after decomposition, CSE
# makes the forward's tanh (erf) and the backward's one value, computed once.

def _gelu(x, approximate):
    t = x.dtype.type
    if approximate == "tanh":
        inner = (x + x * x * x * t(_GELU_C)) * t(_GELU_K)
        return x * t(0.5) * (np.tanh(inner) + t(1.0))
    return x * t(0.5) * (_special().erf(x * t(1.0 / _SQRT_2)) + t(1.0))


def _gelu_tanh_inner(x):
    return api.mul(api.add(x, api.mul(api.mul(api.mul(x, x), x), _GELU_C)), _GELU_K)


def _gelu_erf_arg(x):
    return api.mul(x, 1.0 / _SQRT_2)


def _decompose_gelu(x, approximate):
    f = api.tanh(_gelu_tanh_inner(x)) if approximate == "tanh" else api.erf(_gelu_erf_arg(x))
    return api.mul(api.mul(x, 0.5), api.add(f, 1.0))


def _vjp_gelu(g, out, x, approximate):
    if approximate == "tanh":
        x2 = api.mul(x, x)
        t = api.tanh(_gelu_tanh_inner(x))
        dinner = api.mul(api.add(api.mul(x2, 3.0 * _GELU_C), 1.0), _GELU_K)
        left = api.mul(api.add(t, 1.0), 0.5)
        right = api.mul(api.mul(api.mul(x, 0.5), api.sub(1.0, api.mul(t, t))), dinner)
        return (api.mul(g, api.add(left, right)),)
    cdf = api.mul(api.add(api.erf(_gelu_erf_arg(x)), 1.0), 0.5)
    pdf = api.mul(api.exp(api.mul(api.mul(x, x), -0.5)), _INV_SQRT_2PI)
    return (api.mul(g, api.add(cdf, api.mul(x, pdf))),)


def _gelu_scalar(x, approximate):
    if approximate == "tanh":
        inner = f"(({x} + {x} * {x} * {x} * {_GELU_C!r}) * {_GELU_K!r})"
        return f"({x} * 0.5 * (math.tanh({inner}) + 1.0))"
    return f"({x} * 0.5 * (math.erf({x} * {1.0 / _SQRT_2!r}) + 1.0))"


_unary("gelu", _gelu, _vjp_gelu, (0,), _gelu_scalar, decompose=_decompose_gelu)


def _silu(x):
    return x * _special().expit(x)


def _vjp_silu(g, out, x):
    s = api.sigmoid(x)
    return (api.mul(g, api.mul(s, api.add(api.mul(x, api.sub(1.0, s)), 1.0))),)


def _decompose_silu(x):
    return api.mul(x, api.sigmoid(x))  # the VJP's sigmoid(x): one value after CSE


_unary("silu", _silu, _vjp_silu, (0,), lambda x: f"({x} / (1.0 + math.exp(-{x})))",
       decompose=_decompose_silu)


def _softplus(x, beta, threshold):
    t = x.dtype.type
    bx = x * t(beta)
    return np.where(bx > threshold, x, np.logaddexp(t(0), bx) / t(beta))


def _vjp_softplus(g, out, x, beta, threshold):
    bx = api.mul(x, beta)
    return (api.where(api.gt(bx, threshold), g, api.mul(g, api.sigmoid(bx))),)


def _softplus_scalar(x, beta, threshold):
    bx = f"({x} * {beta!r})"
    return (f"({x} if {bx} > {threshold!r} else "
            f"(max({bx}, 0.0) + math.log1p(math.exp(-abs({bx})))) / {beta!r})")


_unary("softplus", _softplus, _vjp_softplus, (0,), _softplus_scalar)


def _clamp(x, min, max):
    out = x
    if min is not None:
        out = np.maximum(out, x.dtype.type(min))
    if max is not None:
        out = np.minimum(out, x.dtype.type(max))
    return out


def _vjp_clamp(g, out, x, min, max):
    # PyTorch passes the gradient where min <= x <= max (bounds included).
    mask = None
    if min is not None:
        mask = api.ge(x, min)
    if max is not None:
        upper = api.le(x, max)
        mask = upper if mask is None else api.logical_and(mask, upper)
    return (g if mask is None else api.where(mask, g, 0.0),)


def _clamp_scalar(x, min, max):
    expr = x
    if min is not None:
        expr = f"max({expr}, {min!r})"
    if max is not None:
        expr = f"min({expr}, {max!r})"
    return expr


_unary("clamp", _clamp, _vjp_clamp, (0,), _clamp_scalar, floating=False)


def _detach(x):
    return x


_unary("detach", _detach, None, (), lambda x: x, floating=False, numeric=False,
       no_grad_reason="detach cuts the gradient by definition", view=True)

_unary("logical_not", np.logical_not, None, (), lambda x: f"(not {x})", floating=False,
       numeric=False, no_grad_reason="bool result")


def _cast_infer(x: TensorType, dtype) -> TensorType:
    return TensorType(x.shape, dtype)


def _cast(x, dtype):
    return x.astype(dtype.np)


def _vjp_cast(g, out, x, dtype):
    if not x.dtype.is_floating_point:
        return (None,)
    return (api.cast(g, x.dtype),)


def _cast_scalar(x, dtype):
    return {"float32": f"np.float32({x})", "float64": f"np.float64({x})",
            "int64": f"np.int64({x})", "bool": f"({x} != 0)"}[dtype.name]


register(OpDef(name="cast", kind="elementwise", infer=_cast_infer, impl=_cast, vjp=_vjp_cast,
               saves=(), scalar=_cast_scalar))


# ---- binary ---------------------------------------------------------------------------------

def _vjp_add(g, out, a, b):
    return (api.sum_to(g, a.shape), api.sum_to(g, b.shape))


# On bool tensors add is logical or and mul logical and, as in PyTorch.
_binary("add", np.add, _vjp_add, (), lambda a, b: f"({a} + {b})", numeric=False)


def _vjp_sub(g, out, a, b):
    return (api.sum_to(g, a.shape), api.sum_to(api.neg(g), b.shape))


_binary("sub", np.subtract, _vjp_sub, (), lambda a, b: f"({a} - {b})")


def _vjp_mul(g, out, a, b):
    return (api.sum_to(api.mul(g, b), a.shape), api.sum_to(api.mul(g, a), b.shape))


_binary("mul", np.multiply, _vjp_mul, (0, 1), lambda a, b: f"({a} * {b})", numeric=False)


def _div_infer(a: TensorType, b: TensorType) -> TensorType:
    shape = _binary_types("div", a, b)
    _require("div", a, floating=True)
    return TensorType(shape, a.dtype)


def _vjp_div(g, out, a, b):
    ga = api.div(g, b)
    gb = api.neg(api.div(api.mul(g, out), b))
    return (api.sum_to(ga, a.shape), api.sum_to(gb, b.shape))


register(OpDef(name="div", kind="elementwise", infer=_div_infer, impl=np.true_divide,
               vjp=_vjp_div, saves=(1, "out"), scalar=lambda a, b: f"({a} / {b})"))


def _pow(a, b):
    if a.dtype.kind == "i" and np.any(b < 0):
        raise ValueError("integers to negative integer powers are not allowed")
    return np.power(a, b)


def _vjp_pow(g, out, a, b):
    ga = api.mul(api.mul(g, b), api.pow(a, api.sub(b, 1.0)))
    # d/db a^b = a^b log a; PyTorch defines it as 0 where a == 0 and b >= 0.
    zero_base = api.logical_and(api.eq(a, 0.0), api.ge(b, 0.0))
    safe_a = api.where(zero_base, 1.0, a)
    gb = api.where(zero_base, 0.0, api.mul(api.mul(g, out), api.log(safe_a)))
    return (api.sum_to(ga, a.shape), api.sum_to(gb, b.shape))


_binary("pow", _pow, _vjp_pow, (0, 1, "out"), lambda a, b: f"({a} ** {b})")


def _pow_scalar(x, exponent):
    # Small integer powers as products, exactly as the compiled kernels compute them
    # (``_pow_scalar_scalar``): np.power is a libm pow per element (68 ms for 4M float32).
    if exponent == 1:
        return x.copy()
    if exponent == 2:
        return x * x
    if exponent == 3:
        return x * x * x
    if exponent == 4:
        sq = x * x
        return sq * sq
    return np.power(x, x.dtype.type(exponent))


def _vjp_pow_scalar(g, out, x, exponent):
    if exponent == 0:
        return (api.zeros_like(g),)
    return (api.mul(api.mul(g, exponent), api.pow(x, exponent - 1)),)


def _pow_scalar_scalar(x, exponent):
    # Small integer powers as products: ``x ** 3.0`` is a libm pow call per element (about
    # 20 ns, and no vectorisation), ``x * x * x`` three multiplies. The products round up
    # to twice instead of once, within 2 ulp of NumPy's power.
    if exponent == 1:
        return f"({x})"
    if exponent == 2:
        return f"({x} * {x})"
    if exponent == 3:
        return f"({x} * {x} * {x})"
    if exponent == 4:
        return f"(({x} * {x}) * ({x} * {x}))"
    return f"({x} ** {exponent!r})"


_unary("pow_scalar", _pow_scalar, _vjp_pow_scalar, (0,), _pow_scalar_scalar, floating=False)


def _tie_split(g, a, b, a_wins):
    # NOTE: at a tie (a == b) each operand gets half of the gradient, as in PyTorch.
    half = api.mul(g, 0.5)
    ga = api.where(a_wins, g, api.where(api.eq(a, b), half, 0.0))
    gb = api.where(a_wins, 0.0, api.where(api.eq(a, b), half, g))
    return (api.sum_to(ga, a.shape), api.sum_to(gb, b.shape))


def _vjp_maximum(g, out, a, b):
    return _tie_split(g, a, b, api.gt(a, b))


def _vjp_minimum(g, out, a, b):
    return _tie_split(g, a, b, api.lt(a, b))


_binary("maximum", np.maximum, _vjp_maximum, (0, 1), lambda a, b: f"max({a}, {b})")
_binary("minimum", np.minimum, _vjp_minimum, (0, 1), lambda a, b: f"min({a}, {b})")

for _name, _fn, _sym in (("eq", np.equal, "=="), ("ne", np.not_equal, "!="),
                         ("lt", np.less, "<"), ("le", np.less_equal, "<="),
                         ("gt", np.greater, ">"), ("ge", np.greater_equal, ">=")):
    _binary(_name, _fn, None, (), (lambda s: lambda a, b: f"({a} {s} {b})")(_sym),
            out_dtype=dtypes.bool_, numeric=False, no_grad_reason="comparison (bool result)")

_binary("logical_and", np.logical_and, None, (), lambda a, b: f"({a} and {b})",
        numeric=False, boolean=True, no_grad_reason="bool result")
_binary("logical_or", np.logical_or, None, (), lambda a, b: f"({a} or {b})",
        numeric=False, boolean=True, no_grad_reason="bool result")


# ---- where ----------------------------------------------------------------------------------

def _where_infer(cond: TensorType, a: TensorType, b: TensorType) -> TensorType:
    _require("where", cond, boolean=True)
    if a.dtype is not b.dtype:
        raise DTypeError(f"branches must have one dtype, got {a.dtype.name} and {b.dtype.name}",
                         op="where")
    return TensorType(broadcast_shapes("where", cond.shape, a.shape, b.shape), a.dtype)


def _vjp_where(g, out, cond, a, b):
    return (None, api.sum_to(api.where(cond, g, 0.0), a.shape),
            api.sum_to(api.where(cond, 0.0, g), b.shape))


register(OpDef(name="where", kind="elementwise", infer=_where_infer, impl=np.where,
               vjp=_vjp_where, saves=(0,), scalar=lambda c, a, b: f"({a} if {c} else {b})"))
