"""PyTorch functions made of other ops (no OpDef of their own): flips and rolls, triangles,
masks and NaN tests, norms, the small products (bmm, addmm, mv, dot, outer) and einsum.

Like ``api.py`` they run on whatever values the active interpreter uses, so each one runs
eagerly, differentiates through the rules of the ops it is made of, and traces and fuses
in compiled functions with nothing of its own in the backends.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from ..shapes import broadcast_shapes, normalize_dim, normalize_dims
from . import api
from .registry import bind, get


def _iota(shape, dim):
    return bind(get("iota"), shape=tuple(shape), dim=dim, dtype=dtypes.int64)


def _float(op, x):
    if not x.dtype.is_floating_point:
        raise DTypeError(f"expects a floating point tensor, got {x.dtype.name} of shape "
                         f"{tuple(x.shape)}", op=op)


# ---- elementwise helpers ----------------------------------------------------------------------

def square(x):
    return api.mul(x, x)


def masked_fill(x, mask, value):
    """``x`` with ``value`` where ``mask`` (bool, broadcast to x's shape) is true."""
    mask = api._value(mask)
    if mask.dtype is not dtypes.bool_:
        raise DTypeError(f"the mask must be a bool tensor, got {mask.dtype.name} of shape "
                         f"{tuple(mask.shape)}", op="masked_fill")
    if tuple(broadcast_shapes("masked_fill", mask.shape, x.shape)) != tuple(x.shape):
        raise ShapeError(f"the mask of shape {tuple(mask.shape)} does not broadcast to the "
                         f"tensor's shape {tuple(x.shape)}", op="masked_fill")
    if api.is_value(value):
        if len(value.shape):
            raise ShapeError(f"the fill value must be a 0-d tensor or a number, got shape "
                             f"{tuple(value.shape)}", op="masked_fill")
        value = api.cast(value, x.dtype)
    else:
        value = api.python_kind(x.dtype)(value)
    return api.where(mask, value, x)


def isnan(x):
    x = api._value(x)
    if not x.dtype.is_floating_point:
        return api.full(x.shape, False, dtypes.bool_)
    return api.ne(x, x)


def isinf(x):
    x = api._value(x)
    if not x.dtype.is_floating_point:
        return api.full(x.shape, False, dtypes.bool_)
    return api.eq(api.abs(x), math.inf)


def isfinite(x):
    x = api._value(x)
    if not x.dtype.is_floating_point:
        return api.full(x.shape, True, dtypes.bool_)
    return api.lt(api.abs(x), math.inf)  # NaN < inf is false


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """NaN -> ``nan``, +inf -> ``posinf`` (default: the dtype's largest finite value),
    -inf -> ``neginf`` (its lowest), as ``torch.nan_to_num``."""
    x = api._value(x)
    if not x.dtype.is_floating_point:
        return x
    info = np.finfo(x.dtype.np)
    posinf = float(info.max) if posinf is None else posinf
    neginf = float(info.min) if neginf is None else neginf
    out = api.where(api.ne(x, x), float(nan), x)
    out = api.where(api.eq(x, math.inf), float(posinf), out)
    return api.where(api.eq(x, -math.inf), float(neginf), out)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``|a - b| <= atol + rtol * |b|`` elementwise (equal infinities are close; NaNs only
    with ``equal_nan``), as ``torch.isclose``."""
    a, b = api._promote(a, b)
    close = api.logical_or(api.eq(a, b), api.le(api.abs(api.sub(a, b)),
                                                 api.add(api.mul(api.abs(b), rtol), atol)))
    if a.dtype.is_floating_point:
        # (inf - inf is NaN: only the equality above makes equal infinities close.)
        close = api.logical_and(close, api.logical_or(isfinite(a), api.eq(a, b)))
        if equal_nan:
            close = api.logical_or(close, api.logical_and(isnan(a), isnan(b)))
    return close


# ---- movement ---------------------------------------------------------------------------------

def flip(x, dims):
    """The elements in reverse order along each of ``dims`` (a copy, as ``torch.flip``)."""
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    dims = normalize_dims("flip", dims, len(x.shape))
    for d in dims:
        n = x.shape[d]
        if n > 1:
            key = (slice(None),) * d + (np.arange(n - 1, -1, -1, dtype=np.int64),)
            x = api.getitem(x, key)
    return api.clone(x)


def roll(x, shifts, dims=None):
    """Elements shifted by ``shifts`` along ``dims``, wrapping around (``torch.roll``); with no
    dims, over the flattened tensor, keeping the shape."""
    if dims is None:
        if not isinstance(shifts, int):
            raise ShapeError(f"without dims, shifts must be one int, got {shifts!r}", op="roll")
        flat = roll(api.reshape(x, (-1,)), shifts, 0)
        return api.reshape(flat, tuple(x.shape))
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise ShapeError(f"shifts {shifts} and dims {dims} must have the same length", op="roll")
    for s, d in zip(shifts, dims):
        d = normalize_dim("roll", d, len(x.shape))
        n = x.shape[d]
        s = s % n if n else 0
        if s:
            x = api.cat([api.narrow(x, d, n - s, s), api.narrow(x, d, 0, n - s)], d)
    return api.clone(x)


def repeat(x, sizes):
    """``x`` repeated ``sizes[d]`` times along each dim (``Tensor.repeat``; extra leading
    sizes add dims). A copy, as PyTorch's: the reshape of the expanded view below could share
    memory with x when the repeated dims lead."""
    sizes = tuple(int(s) for s in sizes)
    lead = len(sizes) - len(x.shape)
    if lead < 0:
        raise ShapeError(f"repeat needs at least {len(x.shape)} sizes, got {sizes}", op="repeat")
    x = api.reshape(x, (1,) * lead + tuple(x.shape))
    # Interleave a new size-r dim before each dim, expand it, and merge.
    x = api.reshape(x, tuple(n for s in x.shape for n in (1, s)))
    x = api.expand(x, tuple(n for r, s in zip(sizes, x.shape[1::2]) for n in (r, s)))
    return api.clone(api.reshape(x, tuple(r * s for r, s in zip(sizes, x.shape[1::2]))))


def tile(x, dims):
    """``x`` repeated along each dim (``torch.tile``: missing leading reps count as 1)."""
    dims = tuple(dims)
    return repeat(x, (1,) * (len(x.shape) - len(dims)) + dims)


def _triangle(op, x, diagonal, lower):
    if len(x.shape) < 2:
        raise ShapeError(f"needs a tensor of at least 2 dims, got shape {tuple(x.shape)}", op=op)
    rows, cols = x.shape[-2], x.shape[-1]
    offset = api.sub(_iota((rows, cols), 1), _iota((rows, cols), 0))  # j - i
    keep = api.le(offset, diagonal) if lower else api.ge(offset, diagonal)
    zero = api.python_kind(x.dtype)(0)
    return api.where(keep, x, zero)


def elu(x, alpha=1.0):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere (``F.elu``). The exponential
    sees 0 where ``x > 0``, so a large positive ``x`` neither overflows nor gives its
    gradient ``0 * inf``; at 0 the gradient is ``alpha``, as PyTorch's."""
    x = api._value(x)
    _float("elu", x)
    positive = api.gt(x, 0.0)
    neg = api.mul(api.sub(api.exp(api.where(positive, 0.0, x)), 1.0), float(alpha))
    return api.where(positive, x, neg)


def diag(x, diagonal=0):
    """``torch.diag``: a 1-D tensor's square matrix with it on diagonal ``diagonal`` (zeros
    elsewhere), or a 2-D tensor's diagonal ``diagonal`` as a 1-D tensor."""
    x, d = api._value(x), int(diagonal)
    if len(x.shape) == 1:
        n = x.shape[0] + abs(d)
        offset = api.sub(_iota((n, n), 1), _iota((n, n), 0))  # j - i
        # Row i holds element i (d >= 0) or i + d (d < 0) of x, at column i + d.
        padded = api.cat([x, api.zeros((abs(d),), x.dtype)] if d >= 0
                         else [api.zeros((-d,), x.dtype), x], 0)
        rows = api.expand(api.reshape(padded, (n, 1)), (n, n))
        return api.where(api.eq(offset, d), rows, api.python_kind(x.dtype)(0))
    if len(x.shape) != 2:
        raise ShapeError(f"needs a 1-D or 2-D tensor, got shape {tuple(x.shape)}", op="diag")
    rows, cols = x.shape
    start_r, start_c = (0, d) if d >= 0 else (-d, 0)
    length = max(min(rows - start_r, cols - start_c), 0)
    flat = np.array([(start_r + k) * (cols + 1) + start_c - start_r for k in range(length)],
                    dtype=np.int64)
    return api.index(api.reshape(x, (rows * cols,)), [api.constant(flat)], (("t", 0),))


def tril(x, diagonal=0):
    """The lower triangle of the last two dims (``j - i <= diagonal``), zeros elsewhere."""
    return _triangle("tril", api._value(x), int(diagonal), True)


def triu(x, diagonal=0):
    """The upper triangle of the last two dims (``j - i >= diagonal``), zeros elsewhere."""
    return _triangle("triu", api._value(x), int(diagonal), False)


# ---- products ---------------------------------------------------------------------------------

def bmm(a, b):
    if len(a.shape) != 3 or len(b.shape) != 3 or a.shape[0] != b.shape[0]:
        raise ShapeError(f"needs two 3-D tensors with the same batch size, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}", op="bmm")
    return api.matmul(a, b)


def mv(a, v):
    if len(a.shape) != 2 or len(v.shape) != 1:
        raise ShapeError(f"needs a matrix and a vector, got {tuple(a.shape)} and "
                         f"{tuple(v.shape)}", op="mv")
    return api.matmul(a, v)


def dot(a, b):
    if len(a.shape) != 1 or len(b.shape) != 1 or a.shape[0] != b.shape[0]:
        raise ShapeError(f"needs two 1-D tensors of one size, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}", op="dot")
    return api.matmul(a, b)


def outer(a, b):
    if len(a.shape) != 1 or len(b.shape) != 1:
        raise ShapeError(f"needs two 1-D tensors, got {tuple(a.shape)} and {tuple(b.shape)}",
                         op="outer")
    return api.mul(api.unsqueeze(a, 1), api.unsqueeze(b, 0))


def addmm(input, mat1, mat2, *, beta=1, alpha=1):  # noqa: A002 - PyTorch's name
    """``beta * input + alpha * (mat1 @ mat2)``; ``beta == 0`` ignores input (NaN included)."""
    if len(mat1.shape) != 2 or len(mat2.shape) != 2:
        raise ShapeError(f"needs two matrices, got {tuple(mat1.shape)} and "
                         f"{tuple(mat2.shape)}", op="addmm")
    return _scaled_sum(input, api.matmul(mat1, mat2), beta, alpha)


def _scaled_sum(input, product, beta, alpha):  # noqa: A002 - PyTorch's name
    if alpha != 1:
        product = api.mul(product, alpha)
    if beta == 0:  # input is ignored (its NaNs too), but its shape still broadcasts
        shape = broadcast_shapes("addmm", api._value(input).shape, product.shape)
        return api.expand(product, shape) if tuple(shape) != tuple(product.shape) else product
    return api.add(product, input if beta == 1 else api.mul(input, beta))


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):  # noqa: A002 - PyTorch's name
    return _scaled_sum(input, bmm(batch1, batch2), beta, alpha)


# ---- norms ------------------------------------------------------------------------------------

def _safe_root(s, p):
    """``s ** (1/p)`` whose gradient is 0 where ``s`` is 0 (PyTorch's norm gives the zero
    subgradient there; the plain power would give 0 * inf = NaN)."""
    nonzero = api.ne(s, 0.0)
    safe = api.where(nonzero, s, 1.0)
    root = api.sqrt(safe) if p == 2 else api.pow(safe, 1.0 / p)
    return api.where(nonzero, root, 0.0)


def norm(x, p="fro", dim=None, keepdim=False, dtype=None):
    """The vector ``p``-norm over ``dim`` (all elements if None), as ``torch.norm``:
    p = 2 / "fro" (sqrt of the sum of squares), 1, inf (max |x|), -inf (min |x|), 0 (the
    count of non-zeros), or any other number (``(sum |x|^p)^(1/p)``). The gradient at a
    zero vector is zero."""
    x = api._value(x)
    if dtype is not None:
        x = api.cast(x, dtype)
    _float("norm", x)
    if p == "fro":
        p = 2
    if p == "nuc":
        raise ShapeError("the nuclear norm needs singular values, which graphjit does not "
                         "compute", op="norm")
    p = float(p)
    if p == math.inf:
        return api.amax(api.abs(x), dim, keepdim)
    if p == -math.inf:
        return api.amin(api.abs(x), dim, keepdim)
    if p == 0:
        return api.sum(api.cast(api.ne(x, 0.0), x.dtype), dim, keepdim)
    if p == 1:
        return api.sum(api.abs(x), dim, keepdim)
    if p == 2:
        return _safe_root(api.sum(api.mul(x, x), dim, keepdim), 2)
    return _safe_root(api.sum(api.pow(api.abs(x), p), dim, keepdim), p)


# ---- einsum -----------------------------------------------------------------------------------

def _parse_einsum(equation, operands):
    eq = equation.replace(" ", "")
    if "..." in eq:
        raise ShapeError("'...' in einsum equations is not supported yet; write the dims out",
                         op="einsum")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ShapeError(f"'{equation}' names {len(terms)} operands, got {len(operands)}",
                         op="einsum")
    sizes = {}
    for term, x in zip(terms, operands):
        if len(term) != len(x.shape):
            raise ShapeError(f"'{term}' has {len(term)} subscripts but its operand has shape "
                             f"{tuple(x.shape)}", op="einsum")
        if len(set(term)) != len(term):
            raise ShapeError(f"a repeated subscript in '{term}' (a diagonal) is not supported "
                             "yet", op="einsum")
        for c, n in zip(term, x.shape):
            if sizes.setdefault(c, n) != n and n != 1 and sizes[c] != 1:
                raise ShapeError(f"subscript '{c}' has sizes {sizes[c]} and {n} in "
                                 f"'{equation}'", op="einsum")
            sizes[c] = builtins.max(sizes[c], n)
    for c in out:
        if c not in sizes:
            raise ShapeError(f"output subscript '{c}' appears in no operand of '{equation}'",
                             op="einsum")
    return terms, out, sizes


def _sum_out(x, term, keep):
    """Sum ``x`` (subscripts ``term``) over the subscripts not in ``keep``."""
    gone = [i for i, c in enumerate(term) if c not in keep]
    if gone:
        x = api.sum(x, tuple(gone))
        term = "".join(c for c in term if c in keep)
    return x, term


def _contract(a, ta, b, tb, keep):
    """``a`` (subscripts ``ta``) times ``b`` summed over the subscripts shared by both and not
    in ``keep``: one batched matmul over [batch, left, shared] x [batch, shared, right]."""
    batch = [c for c in ta if c in tb and c in keep]
    shared = [c for c in ta if c in tb and c not in keep]
    left = [c for c in ta if c not in tb]
    right = [c for c in tb if c not in ta]

    def arrange(x, term, groups):
        order = [term.index(c) for g in groups for c in g]
        x = api.permute(x, tuple(order))
        shape = [x.shape[i] for i in range(len(order))]
        sizes, at = [], 0
        for g in groups:
            n = 1
            for _ in g:
                n *= shape[at]
                at += 1
            sizes.append(n)
        return x, api.reshape(x, tuple(sizes))

    xa, ma = arrange(a, ta, [batch, left, shared])
    xb, mb = arrange(b, tb, [batch, shared, right])
    batch_shape = [builtins.max(xa.shape[i], xb.shape[i]) for i in range(len(batch))]
    left_shape = list(xa.shape[len(batch):len(batch) + len(left)])
    right_shape = list(xb.shape[len(batch) + len(shared):])
    if any(xa.shape[i] != xb.shape[i] for i in range(len(batch))):
        raise ShapeError(f"batch subscripts {''.join(batch)} differ in size: "
                         f"{tuple(a.shape)} and {tuple(b.shape)}", op="einsum")
    product = api.matmul(ma, mb)
    out = api.reshape(product, tuple(batch_shape + left_shape + right_shape))
    return out, "".join(batch + left + right)


def einsum(equation, *operands):
    """``torch.einsum`` for explicit subscripts (no ``...``, no repeated subscript within one
    operand): operands are contracted left to right, each pair as one batched matmul; dims
    summed away early when no later operand or the output needs them."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    operands = [api._value(x) for x in operands]
    terms, out, _ = _parse_einsum(equation, operands)
    x, term = operands[0], terms[0]
    rest = list(zip(operands[1:], terms[1:]))
    needed = set(out) | {c for _, t in rest for c in t}
    x, term = _sum_out(x, term, needed)
    for k, (y, ty) in enumerate(rest):
        later = set(out) | {c for _, t in rest[k + 1:] for c in t}
        y, ty = _sum_out(y, ty, later | set(term))
        x, term = _contract(x, term, y, ty, later)
    x, term = _sum_out(x, term, set(out))
    return api.permute(x, tuple(term.index(c) for c in out)) if term != out else x


# ---- rounding, scans, orders (graphjit/ops/scan.py and the rounding ops) -----------------------

class ValuesIndices(tuple):
    """``(values, indices)`` as ``torch.sort``, ``torch.topk`` and ``Tensor.max(dim)`` return."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _rounding(name):
    def fn(x):
        x = api._value(x)
        return bind(get(name), x) if x.dtype.is_floating_point else x  # ints are whole
    fn.__name__ = name
    fn.__doc__ = f"``{name}`` of each element (gradient zero, as PyTorch's)."
    return fn


floor = _rounding("floor")
ceil = _rounding("ceil")
trunc = _rounding("trunc")
_round_half_even = _rounding("round")


def _float_only(op, x, what=""):
    if not x.dtype.is_floating_point:
        raise DTypeError(f"{what}expects a floating point tensor, got {x.dtype.name} of shape "
                         f"{tuple(x.shape)}", op=op)


def round(x, decimals=0):  # noqa: A001 - PyTorch's name
    """Round half to even (``torch.round``); with ``decimals``, ``round(x * 10**d) / 10**d``."""
    if decimals == 0:
        return _round_half_even(x)
    x = api._value(x)
    _float_only("round", x, "with decimals ")  # as PyTorch's
    scale = 10.0 ** decimals
    return api.div(_round_half_even(api.mul(x, scale)), scale)


def frac(x):
    """``x - trunc(x)``, of floating point tensors (as PyTorch's)."""
    x = api._value(x)
    _float_only("frac", x)
    return api.sub(x, trunc(x))


def _dims_of(op, x, dim, many=False):
    """``normalize_dim(s)`` for ``x``, its error naming the shape too."""
    try:
        if many:
            return normalize_dims(op, dim, len(x.shape))
        return normalize_dim(op, dim, builtins.max(len(x.shape), 1))
    except ShapeError as e:
        raise ShapeError(f"{e.bare_message}; the tensor's shape is {tuple(x.shape)}",
                         op=op) from None


def cumsum(x, dim, dtype=None):
    """Running sums along ``dim`` (``torch.cumsum``; ints and bools sum in int64)."""
    from .scan import cumsum as _cumsum
    x = api._value(x)
    if dtype is not None:
        x = api.cast(x, dtype)
    return _cumsum(x, _dims_of("cumsum", x, dim))


def prod(x, dim=None, keepdim=False, dtype=None):
    """The product over ``dim`` (all elements when None), as ``torch.prod``; its gradient is
    right where elements are zero."""
    from .scan import bind_prod
    x = api._value(x)
    if dtype is not None:
        x = api.cast(x, dtype)
    dims = tuple(range(len(x.shape))) if dim is None else _dims_of("prod", x, dim, many=True)
    return bind_prod(x, dims, keepdim)


def argsort(x, dim=-1, descending=False, stable=False):
    """Indices that sort ``x`` along ``dim`` (always stable; NaN counts as largest)."""
    from .scan import argsort as _argsort
    x = api._value(x)
    return _argsort(x, _dims_of("argsort", x, dim), descending)


def sort(x, dim=-1, descending=False, stable=False):
    """``(values, indices)`` along ``dim``, as ``torch.sort`` (stable; NaN largest); the
    values' gradient goes back through the indices."""
    x = api._value(x)
    dim = _dims_of("sort", x, dim)
    idx = argsort(x, dim, descending)
    if not len(x.shape):
        return ValuesIndices(x, idx)
    return ValuesIndices(api.gather(x, dim, idx), idx)


def topk(x, k, dim=-1, largest=True, sorted=True):  # noqa: A002 - PyTorch's name
    """The ``k`` largest (``largest=False``: smallest) elements along ``dim`` and their
    indices, as ``torch.topk`` (in order; ties keep the lower index first)."""
    x = api._value(x)
    if x.dtype is dtypes.bool_:
        raise DTypeError(f"is not defined for bool tensors (shape {tuple(x.shape)})", op="topk")
    d = _dims_of("topk", x, dim)
    n = x.shape[d] if len(x.shape) else 1
    if not 0 <= k <= n:
        raise ShapeError(f"k ({k}) is out of range for dim {d} of size {n} (shape "
                         f"{tuple(x.shape)})", op="topk")
    idx = api.narrow(argsort(x, d, descending=largest), d, 0, k)
    return ValuesIndices(api.gather(x, d, idx), idx)
