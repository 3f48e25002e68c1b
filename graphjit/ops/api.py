"""The tensor functions, written once over whatever values the active interpreter uses.

Every public function of graphjit (``graphjit.add``, ``Tensor.sum``, ``F.softmax`` ...) ends
here. This layer turns PyTorch's user-level forms into primitive ops with static,
normalised attributes: it promotes dtypes (inserting explicit ``cast`` ops), turns Python
scalars into constants, resolves ``-1`` in shapes and negative dims, and builds composite
functions (mean, var, logsumexp, softmax, 1-D matmul, squeeze, stack, gather ...) from
primitives, so that they run eagerly, trace into graphs and differentiate with no extra
rules. The VJP rules of the primitives are written with these same functions.

This module has the elementwise functions, reductions and matmul. Below it, each importing
only the ones under it: api_values.py (values, constants, dtype promotion), api_shape.py (the
shape functions) and api_index.py (indexing); their functions are imported here, so that
every function is ``api.X``.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from ..shapes import broadcast_shapes, normalize_dim, normalize_dims, numel
from .api_index import (  # noqa: F401 - api.X for every tensor function
    _advanced_index, _basic_index, _is_advanced, gather, getitem, index, index_backward)
from .api_shape import (  # noqa: F401
    _shape_arg, broadcast_to, cat, chunk, expand, flatten, narrow, permute, reshape, slice_,
    slice_backward, split, squeeze, stack, t, transpose, unsqueeze)
from .api_values import (  # noqa: F401
    _as, _interp, _operand_info, _promote, _value, cast, constant, full, is_value, ones_like,
    python_kind, zeros, zeros_like)
from .registry import bind, get


def _unary_float(name):
    def fn(x, **attrs):
        x = _value(x)
        if not x.dtype.is_floating_point:
            x = _as(x, dtypes.get_default_dtype())
        return bind(get(name), x, **attrs)
    fn.__name__ = name
    return fn


def _unary_numeric(name):
    def fn(x, **attrs):
        return bind(get(name), _value(x), **attrs)
    fn.__name__ = name
    return fn


def _binary(name, floating=False):
    def fn(a, b):
        return bind(get(name), *_promote(a, b, floating=floating))
    fn.__name__ = name
    return fn


def detach(x):
    return bind(get("detach"), x)


def clone(x):
    """A copy of ``x`` that shares no memory with it (differentiable)."""
    return bind(get("clone"), x)


# ---- elementwise ----------------------------------------------------------------------------

exp = _unary_float("exp")
log = _unary_float("log")
log1p = _unary_float("log1p")
sqrt = _unary_float("sqrt")
rsqrt = _unary_float("rsqrt")
sin = _unary_float("sin")
cos = _unary_float("cos")
tanh = _unary_float("tanh")
sigmoid = _unary_float("sigmoid")
erf = _unary_float("erf")
silu = _unary_float("silu")
neg = _unary_numeric("neg")
abs = _unary_numeric("abs")  # noqa: A001 - PyTorch's name
sign = _unary_numeric("sign")
relu = _unary_numeric("relu")
_mul = _binary("mul")
_add = _binary("add")
_sub = _binary("sub")
div = _binary("div", floating=True)
maximum = _binary("maximum")
minimum = _binary("minimum")
eq = _binary("eq")
ne = _binary("ne")
lt = _binary("lt")
le = _binary("le")
gt = _binary("gt")
ge = _binary("ge")


def _scaled(b, alpha):
    # A tensor alpha (a traced hyper-parameter) is always multiplied: comparing it with 1
    # would need its value.
    return b if not is_value(alpha) and alpha == 1 else mul(b, alpha)


def add(a, b, alpha=1):
    return _add(a, _scaled(b, alpha))


def sub(a, b, alpha=1):
    return _sub(a, _scaled(b, alpha))


def mul(a, b):
    return _mul(a, b)


def rsub(a, b):
    return sub(b, a)


def _logical(name):
    def fn(a, b):
        return bind(get(name), _as(_value(a), dtypes.bool_), _as(_value(b), dtypes.bool_))
    fn.__name__ = name
    return fn


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")


def logical_not(x):
    return bind(get("logical_not"), _as(_value(x), dtypes.bool_))


def pow(a, b):  # noqa: A001 - PyTorch's name
    """``a ** b``. A Python-number exponent is an attribute (``pow_scalar``), so ``x ** 2``
    compiles to ``x * x`` and its gradient never touches ``log(x)``."""
    if is_value(a) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if not a.dtype.is_floating_point and isinstance(b, int) and b < 0:
            raise DTypeError(f"integers to negative integer powers are not allowed "
                             f"({a.dtype.name} tensor of shape {tuple(a.shape)} ** {b})", op="pow")
        if not a.dtype.is_floating_point and isinstance(b, float):
            a = _as(a, dtypes.get_default_dtype())
        return bind(get("pow_scalar"), a, exponent=b)
    return bind(get("pow"), *_promote(a, b))


def leaky_relu(x, negative_slope=0.01):
    return bind(get("leaky_relu"), _value(x), negative_slope=float(negative_slope))


def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _unary_float("gelu")(x, approximate=approximate)


def softplus(x, beta=1.0, threshold=20.0):
    return _unary_float("softplus")(x, beta=float(beta), threshold=float(threshold))


def clamp(x, min=None, max=None):  # noqa: A002 - PyTorch's names
    x = _value(x)
    if is_value(min) or is_value(max):
        out = x
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if not x.dtype.is_floating_point and any(isinstance(v, float) for v in (min, max)):
        x = _as(x, dtypes.get_default_dtype())
    conv = float if x.dtype.is_floating_point else int
    return bind(get("clamp"), x, min=None if min is None else conv(min),
                max=None if max is None else conv(max))


def where(cond, a, b):
    cond = _value(cond)
    if cond.dtype is not dtypes.bool_:
        raise DTypeError(f"condition must be a bool tensor, got {cond.dtype.name} of shape "
                         f"{tuple(cond.shape)}", op="where")
    a, b = _promote(a, b)
    return bind(get("where"), cond, a, b)


# ---- reductions -----------------------------------------------------------------------------

def sum(x, dim=None, keepdim=False, dtype=None):  # noqa: A001 - PyTorch's name
    x = _value(x)
    if dtype is not None:
        x = cast(x, dtype)
    dims = normalize_dims("sum", dim, len(x.shape))
    return bind(get("sum"), x, dims=dims, keepdim=bool(keepdim))


def _reduced_count(x, dims) -> int:
    return numel([x.shape[d] for d in dims])


def _require_float(op, x):
    if not x.dtype.is_floating_point:
        raise DTypeError(f"needs a floating point tensor, got {x.dtype.name} of shape "
                         f"{tuple(x.shape)}; convert it with .float() first", op=op)


def mean(x, dim=None, keepdim=False, dtype=None):
    x = _value(x)
    if dtype is not None:
        x = cast(x, dtype)
    _require_float("mean", x)
    dims = normalize_dims("mean", dim, len(x.shape))
    return div(sum(x, dims, keepdim), _reduced_count(x, dims))


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    x = _value(x)
    _require_float("var", x)
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    dims = normalize_dims("var", dim, len(x.shape))
    d = sub(x, mean(x, dims, keepdim=True))
    n = _reduced_count(x, dims)
    return div(sum(mul(d, d), dims, keepdim), builtins.max(n - correction, 0))


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return sqrt(var(x, dim, unbiased, keepdim, correction=correction))


def amax(x, dim=None, keepdim=False):
    x = _value(x)
    return bind(get("amax"), x, dims=normalize_dims("amax", dim, len(x.shape)), keepdim=bool(keepdim))


def amin(x, dim=None, keepdim=False):
    x = _value(x)
    return bind(get("amin"), x, dims=normalize_dims("amin", dim, len(x.shape)), keepdim=bool(keepdim))


def argmax(x, dim=None, keepdim=False):
    x = _value(x)
    if dim is not None:
        dim = normalize_dim("argmax", dim, len(x.shape))
    return bind(get("argmax"), x, dim=dim, keepdim=bool(keepdim))


def argmin(x, dim=None, keepdim=False):
    return argmax(neg(x), dim, keepdim)


def logsumexp(x, dim=None, keepdim=False):
    x = _value(x)
    _require_float("logsumexp", x)
    dims = normalize_dims("logsumexp", dim, len(x.shape))
    # NOTE: the shift m only keeps exp() in range; its gradient cancels, so it is detached.
    m = detach(amax(x, dims, keepdim=True))
    m = where(eq(abs(m), math.inf), 0.0, m)
    out = add(log(sum(exp(sub(x, m)), dims, keepdim=True)), m)
    return out if keepdim else squeeze(out, dims) if dims else out


def softmax(x, dim, dtype=None):
    x = _value(x)
    if dtype is not None:
        x = cast(x, dtype)
    _require_float("softmax", x)
    m = detach(amax(x, dim, keepdim=True))
    e = exp(sub(x, m))
    return div(e, sum(e, dim, keepdim=True))


def log_softmax(x, dim, dtype=None):
    x = _value(x)
    if dtype is not None:
        x = cast(x, dtype)
    _require_float("log_softmax", x)
    return sub(x, logsumexp(x, dim, keepdim=True))


def sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` (the inverse of broadcasting)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = len(g.shape) - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and g.shape[lead + i] != 1)
    out = bind(get("sum"), g, dims=dims, keepdim=True)
    return reshape(out, shape)




# ---- linear algebra -------------------------------------------------------------------------

def matmul(a, b):
    """PyTorch's matmul: 1-D operands are promoted to matrices and the added dim removed."""
    a, b = _value(a), _value(b)
    if len(a.shape) == 0 or len(b.shape) == 0:
        raise ShapeError(f"both operands need at least 1 dim, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}", op="matmul")
    if a.dtype is not b.dtype:
        a, b = _promote(a, b)
    a2 = reshape(a, (1,) + tuple(a.shape)) if len(a.shape) == 1 else a
    b2 = reshape(b, tuple(b.shape) + (1,)) if len(b.shape) == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ShapeError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                         f"(inner sizes {a2.shape[-1]} and {b2.shape[-2]} differ)", op="matmul")
    out = bind(get("matmul"), a2, b2)
    if len(a.shape) == 1 and len(b.shape) == 1:
        return reshape(out, ())
    if len(a.shape) == 1:
        return reshape(out, tuple(out.shape[:-2]) + (out.shape[-1],))
    if len(b.shape) == 1:
        return reshape(out, tuple(out.shape[:-1]))
    return out


def mm(a, b):
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ShapeError(f"needs two matrices, got {tuple(a.shape)} and {tuple(b.shape)}", op="mm")
    return matmul(a, b)


def one_hot(labels, num_classes):
    labels = _value(labels)
    classes = constant(np.arange(num_classes, dtype=np.int64))
    return cast(eq(unsqueeze(labels, -1), classes), dtypes.int64)
