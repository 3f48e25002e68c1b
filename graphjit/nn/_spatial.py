"""Argument forms and small pieces shared by the spatial functionals (convolution, pooling,
padding, resampling: ``functional_conv``, ``functional_pool``, ``functional_resample``)."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError, user_frame
from ..ops import api
from ..ops.registry import bind, get


def _option_error(op: str, message: str) -> ValueError:
    """A ValueError for a bad option, naming the op and the user's line like ShapeError."""
    where = user_frame()
    return ValueError(f"{op}: {message}" + (f"\n  (at {where})" if where else ""))


def _tuple(op, name, value, n, minimum):
    """An int or a sequence of ``n`` ints, each >= ``minimum``, as a tuple of ``n`` ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == 1 and n > 1:
        value = (value[0],) * n
    ok = (isinstance(value, (tuple, list)) and len(value) == n
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value))
    if not ok:
        raise _option_error(op, f"{name} must be an int or {n} ints, got {value!r}")
    value = tuple(int(v) for v in value)
    if any(v < minimum for v in value):
        raise _option_error(op, f"{name} must be >= {minimum}, got {value}")
    return value


def _batched(op, x, spatial: int):
    """``x`` with a batch dim (PyTorch accepts unbatched [C, *spatial] too), and whether one
    was added; a ShapeError for other ranks."""
    nd = len(x.shape)
    if nd == spatial + 2:
        return x, False
    if nd == spatial + 1:
        return api.unsqueeze(x, 0), True
    raise ShapeError(f"expected {spatial + 1}-D (unbatched) or {spatial + 2}-D (batched) input, "
                     f"got input of shape {tuple(x.shape)}", op=op)


def _unbatched(out, added):
    return api.squeeze(out, 0) if added else out


def _require_float(op, what, x):
    if not x.dtype.is_floating_point:
        raise DTypeError(f"{what} must be floating point, got {x.dtype.name} of shape "
                         f"{tuple(x.shape)}", op=op)


def _constant(array):
    """A constant value (an index map, divisors, weights): an input of a traced graph, read
    at every call. The index maps come from ``functools.lru_cache``s, frozen read-only, so
    eager mode does not rebuild them for every call."""
    return api.constant(array)


def _frozen(array):
    array.setflags(write=False)
    return array


def _iota(shape, dim):
    return bind(get("iota"), shape=tuple(shape), dim=dim, dtype=dtypes.int64)


def _zero_pad_end(x, extra):
    """``x`` with ``extra[d]`` zeros appended along each dim d (``slice_backward`` places a
    value into zeros; its gradient is the slice back)."""
    if not any(extra):
        return x
    shape = tuple(s + e for s, e in zip(x.shape, extra))
    n = len(shape)
    return api.slice_backward(x, shape, (0,) * n, tuple(x.shape), (1,) * n)


def _take(x, dim, index):
    """``x`` indexed along ``dim`` by the int64 array ``index`` (its dims land at ``dim``)."""
    key = tuple(("s", None, None, None) for _ in range(dim)) + (("t", 0),)
    return api.index(x, [_constant(index)], key)


def _as_dtype(array, dtype):
    out = array.astype(dtype.np)
    return _frozen(out)
