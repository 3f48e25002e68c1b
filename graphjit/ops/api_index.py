"""The indexing functions of graphjit.ops.api: ``x[key]`` (``getitem``), the ``index`` op
and its backward, and ``gather`` (``one_hot``, an ``eq`` of the labels with ``arange``, is with
the elementwise functions in api.py).

Basic indexing (ints, slices, ``None``, ``...``) becomes slices and reshapes, views as in
NumPy; a key with an integer or bool array becomes an ``index`` op. They build on
api_values.py and api_shape.py and are imported into graphjit.ops.api, where callers find
them (``api.getitem``).
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from ..shapes import normalize_dim
from .api_shape import reshape, slice_
from .api_values import _interp, _value, constant, is_value
from .registry import bind, get

# ---- indexing -------------------------------------------------------------------------------

def _is_advanced(item) -> bool:
    if is_value(item):
        return True
    if isinstance(item, (list, np.ndarray)):
        return True
    return False


def getitem(x, key):
    """``x[key]`` with NumPy/PyTorch semantics: basic indexing becomes slice + reshape
    (views); any integer or bool array in the key makes it an ``index`` op."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(_is_advanced(k) for k in key):
        return _advanced_index(x, key)
    return _basic_index(x, key)


def _basic_index(x, key):
    n_real = len([k for k in key if k is not None and k is not Ellipsis])
    if n_real > len(x.shape):
        raise ShapeError(f"too many indices ({n_real}) for a tensor of shape {tuple(x.shape)}",
                         op="getitem")
    if builtins.sum(1 for k in key if k is Ellipsis) > 1:
        raise ShapeError("an index can only have one Ellipsis (...)", op="getitem")
    if Ellipsis in [k for k in key if not is_value(k)]:
        pos = [i for i, k in enumerate(key) if k is Ellipsis][0]
        key = key[:pos] + (slice(None),) * (len(x.shape) - n_real) + key[pos + 1:]
    else:
        key = key + (slice(None),) * (len(x.shape) - n_real)
    starts, stops, steps, out_shape = [], [], [], []
    dim = 0
    for k in key:
        if k is None:
            out_shape.append(1)
            continue
        size = x.shape[dim]
        if isinstance(k, slice):
            if k.step is not None and operator.index(k.step) <= 0:
                raise ShapeError(f"slice step must be positive, got {k.step}", op="getitem")
            a, b, c = k.indices(size)
            b = builtins.max(b, a)
            starts.append(a), stops.append(b), steps.append(c)
            out_shape.append(builtins.max(0, (b - a + c - 1) // c))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            i = int(k)
            if not -size <= i < size:
                raise ShapeError(f"index {i} is out of range for dim {dim} of size {size} "
                                 f"(shape {tuple(x.shape)})", op="getitem")
            i %= size
            starts.append(i), stops.append(i + 1), steps.append(1)
        else:
            raise DTypeError(f"unsupported index {k!r} of type {type(k).__name__}", op="getitem")
        dim += 1
    out = slice_(x, starts, stops, steps)
    return reshape(out, tuple(out_shape))


def _advanced_index(x, key):
    interp = _interp()
    template, idx = [], []
    for k in key:
        if _is_advanced(k):
            v = _value(k) if not is_value(k) else k
            if v.dtype is dtypes.bool_:
                if not getattr(interp, "concrete", False):
                    raise DTypeError("boolean-mask indexing gives a data-dependent shape, which a "
                                     "static graph cannot hold; use graphjit.where(mask, x, 0) "
                                     "instead", op="getitem")
                for part in np.nonzero(np.asarray(v))[0:]:
                    template.append(("t", len(idx)))
                    idx.append(constant(part.astype(np.int64)))
                continue
            if v.dtype is not dtypes.int64:
                raise DTypeError(f"index tensors must be int64 (or bool masks), got {v.dtype.name} "
                                 f"of shape {tuple(v.shape)}", op="getitem")
            template.append(("t", len(idx)))
            idx.append(v)
        elif isinstance(k, slice):
            template.append(("s", k.start, k.stop, k.step))
        elif k is None:
            template.append(("n",))
        elif k is Ellipsis:
            template.append(("e",))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            template.append(("i", int(k)))
        else:
            raise DTypeError(f"unsupported index {k!r} of type {type(k).__name__}", op="getitem")
    return index(x, idx, tuple(template))


def index(x, idx, key):
    return bind(get("index"), x, *idx, key=tuple(key))


def index_backward(g, shape, idx, key):
    return bind(get("index_backward"), g, *idx, shape=tuple(shape), key=tuple(key))


def gather(x, dim, index_):
    """``torch.gather``: ``out[i][j][k] = x[i][index[i][j][k]][k]`` for dim=1, and so on."""
    index_ = _value(index_)
    n = len(x.shape)
    d = normalize_dim("gather", dim, n)
    if len(index_.shape) != n:
        raise ShapeError(f"index of shape {tuple(index_.shape)} must have as many dims as the "
                         f"input of shape {tuple(x.shape)}", op="gather")
    for i in range(n):
        if i != d and index_.shape[i] > x.shape[i]:
            raise ShapeError(f"index of shape {tuple(index_.shape)} is larger than the input of shape "
                             f"{tuple(x.shape)} in dim {i}", op="gather")
    data = getattr(index_, "_data", None)  # None while tracing: values are not known
    if data is not None and type(data) is not np.ndarray:  # on a GPU: check a host copy
        data = data.copy_to_host()
    if data is not None and data.size and (data.min() < 0 or data.max() >= x.shape[d]):
        bad = int(data.min() if data.min() < 0 else data.max())
        raise ShapeError(f"index {bad} is out of bounds for dimension {d} with size {x.shape[d]} "
                         f"(input of shape {tuple(x.shape)})", op="gather")
    idx, template = [], []
    for i in range(n):
        if i == d:
            idx.append(index_)
        else:
            shape = [1] * n
            shape[i] = index_.shape[i]
            idx.append(bind(get("iota"), shape=tuple(shape), dim=i, dtype=dtypes.int64))
        template.append(("t", i))
    return index(x, idx, tuple(template))
