"""Integer-array ("advanced") indexing and its gradient, a scatter-add.

# NOTE: [Index keys]
The ``key`` attribute is a hashable template of the user's subscript, one entry per item:
``("t", k)`` is the k-th index tensor among the op's inputs after ``x``; ``("s", start, stop,
step)`` a slice (None allowed, as in Python); ``("i", n)`` an int; ``("n",)`` None;
``("e",)`` Ellipsis. Rebuilt into a NumPy key, it gives NumPy's (= PyTorch's) advanced
indexing semantics exactly, including where the indexed dims land in the result.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from ..shapes import TensorType, numel
from . import api
from .registry import OpDef, register


def build_key(key, index_arrays):
    out = []
    for entry in key:
        tag = entry[0]
        if tag == "t":
            out.append(index_arrays[entry[1]])
        elif tag == "s":
            out.append(slice(entry[1], entry[2], entry[3]))
        elif tag == "i":
            out.append(entry[1])
        elif tag == "n":
            out.append(None)
        else:
            out.append(Ellipsis)
    return tuple(out)


def _check_indices(op, idx: tuple):
    for i, t in enumerate(idx):
        if t.dtype is not dtypes.int64:
            raise DTypeError(f"index tensors must be int64, got {t.dtype.name} of shape {t.shape} "
                             f"(index {i})", op=op)


def _index_shape(op, shape, key, idx_types):
    dummy = np.broadcast_to(np.zeros((), dtype=np.bool_), shape)
    dummies = [np.zeros(t.shape, dtype=np.int64) for t in idx_types]
    try:
        return dummy[build_key(key, dummies)].shape
    except IndexError as e:
        raise ShapeError(f"cannot index a tensor of shape {tuple(shape)} with "
                         f"{describe_key(key, idx_types)}: {e}", op=op) from None


def describe_key(key, idx_types) -> str:
    parts = []
    for entry in key:
        tag = entry[0]
        if tag == "t":
            t = idx_types[entry[1]]
            parts.append(f"{t.dtype.short}{list(t.shape)}")
        elif tag == "s":
            parts.append(":".join("" if v is None else str(v) for v in entry[1:]))
        elif tag == "i":
            parts.append(str(entry[1]))
        elif tag == "n":
            parts.append("None")
        else:
            parts.append("...")
    return "[" + ", ".join(parts) + "]"


def _index_infer(x: TensorType, *idx: TensorType, key) -> TensorType:
    _check_indices("index", idx)
    return TensorType(_index_shape("index", x.shape, key, idx), x.dtype)


def _index(x, *idx, key):
    try:
        return x[build_key(key, idx)]
    except IndexError as e:
        raise ShapeError(f"index out of range for a tensor of shape {x.shape}: {e}",
                         op="index") from None


def _vjp_index(g, out, x, *idx, key):
    return (api.index_backward(g, x.shape, idx, key),) + (None,) * len(idx)


def _index_cost(out: TensorType, x: TensorType, *idx: TensorType, key, **_):
    moved = 2 * numel(out.shape) * out.dtype.itemsize + sum(numel(t.shape) * 8 for t in idx)
    return 0, moved


register(OpDef(name="index", kind="index", infer=_index_infer, impl=_index, vjp=_vjp_index,
               saves=("1:",), variadic=True, cost=_index_cost))


def _index_backward_infer(g: TensorType, *idx: TensorType, shape, key) -> TensorType:
    _check_indices("index_backward", idx)
    expected = _index_shape("index_backward", shape, key, idx)
    if tuple(g.shape) != tuple(expected):
        raise ShapeError(f"gradient of shape {g.shape} does not fit the indexed shape {expected}",
                         op="index_backward")
    return TensorType(tuple(shape), g.dtype)


def _index_backward(g, *idx, shape, key):
    out = np.zeros(shape, dtype=g.dtype)
    # add.at accumulates repeated indices (x[[0, 0]] sends both gradients to x[0]).
    np.add.at(out, build_key(key, idx), g)
    return out


def _vjp_index_backward(gg, out, g, *idx, shape, key):
    return (api.index(gg, idx, key),) + (None,) * len(idx)


register(OpDef(name="index_backward", kind="index", infer=_index_backward_infer,
               impl=_index_backward, vjp=_vjp_index_backward, saves=("1:",),
               variadic=True, cost=_index_cost))
