"""Movement ops: reshape, permute, expand, slice (+ its gradient), cat.

``api`` resolves user-level forms (``-1`` in shapes, negative dims, python slices,
squeeze/unsqueeze/flatten/transpose/stack) into these primitives with fully static,
normalised attributes.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..shapes import TensorType, numel
from . import api
from .registry import OpDef, register


def _move_cost(out: TensorType, *inputs: TensorType, **attrs):
    return 0, 2 * numel(out.shape) * out.dtype.itemsize


def _reshape_infer(x: TensorType, shape) -> TensorType:
    if numel(shape) != numel(x.shape):
        raise ShapeError(f"cannot reshape a tensor of shape {x.shape} ({numel(x.shape)} elements) "
                         f"into shape {shape}", op="reshape")
    return TensorType(tuple(shape), x.dtype)


def _vjp_reshape(g, out, x, shape):
    return (api.reshape(g, x.shape),)


register(OpDef(name="reshape", kind="shape", infer=_reshape_infer,
               impl=lambda x, shape: np.reshape(x, shape), vjp=_vjp_reshape, saves=(),
               view=True, cost=_move_cost))


def _permute_infer(x: TensorType, dims) -> TensorType:
    if sorted(dims) != list(range(x.ndim)):
        raise ShapeError(f"dims {dims} are not a permutation of the {x.ndim} dims of shape {x.shape}",
                         op="permute")
    return TensorType(tuple(x.shape[d] for d in dims), x.dtype)


def _vjp_permute(g, out, x, dims):
    inverse = tuple(int(i) for i in np.argsort(dims))
    return (api.permute(g, inverse),)


register(OpDef(name="permute", kind="shape", infer=_permute_infer,
               impl=lambda x, dims: np.transpose(x, dims), vjp=_vjp_permute, saves=(),
               view=True, cost=_move_cost))


def _expand_infer(x: TensorType, shape) -> TensorType:
    shape = tuple(shape)
    lead = len(shape) - x.ndim
    ok = lead >= 0 and all(s == d or s == 1 for s, d in zip(x.shape, shape[lead:]))
    if not ok:
        raise ShapeError(f"cannot expand shape {x.shape} to {shape} (only size-1 dims "
                         "expand, and new dims go in front)", op="expand")
    return TensorType(shape, x.dtype)


def _vjp_expand(g, out, x, shape):
    return (api.sum_to(g, x.shape),)


register(OpDef(name="expand", kind="shape", infer=_expand_infer,
               impl=lambda x, shape: np.broadcast_to(x, shape), vjp=_vjp_expand, saves=(),
               view=True, cost=_move_cost))


def _slice_shape(starts, stops, steps):
    return tuple(max(0, (stop - start + step - 1) // step)
                 for start, stop, step in zip(starts, stops, steps))


def _slice_infer(x: TensorType, starts, stops, steps) -> TensorType:
    if not len(starts) == len(stops) == len(steps) == x.ndim:
        raise ShapeError(f"needs one (start, stop, step) per dim of {x.shape}", op="slice")
    for d, (start, stop, step) in enumerate(zip(starts, stops, steps)):
        if step <= 0 or not 0 <= start <= x.shape[d] or not 0 <= stop <= x.shape[d]:
            raise ShapeError(f"bad normalised slice {start}:{stop}:{step} for dim {d} of {x.shape}",
                             op="slice")
    return TensorType(_slice_shape(starts, stops, steps), x.dtype)


def _slice_key(starts, stops, steps):
    return tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))


def _slice(x, starts, stops, steps):
    return x[_slice_key(starts, stops, steps)]


def _vjp_slice(g, out, x, starts, stops, steps):
    return (api.slice_backward(g, x.shape, starts, stops, steps),)


register(OpDef(name="slice", kind="shape", infer=_slice_infer, impl=_slice, vjp=_vjp_slice,
               saves=(), view=True, cost=_move_cost))


def _slice_backward_infer(g: TensorType, shape, starts, stops, steps) -> TensorType:
    expected = _slice_shape(starts, stops, steps)
    if tuple(g.shape) != expected:
        raise ShapeError(f"gradient of shape {g.shape} does not fit slice shape {expected}",
                         op="slice_backward")
    return TensorType(tuple(shape), g.dtype)


def _slice_backward(g, shape, starts, stops, steps):
    out = np.zeros(shape, dtype=g.dtype)
    out[_slice_key(starts, stops, steps)] = g
    return out


def _vjp_slice_backward(gg, out, g, shape, starts, stops, steps):
    return (api.slice_(gg, starts, stops, steps),)


register(OpDef(name="slice_backward", kind="shape", infer=_slice_backward_infer,
               impl=_slice_backward, vjp=_vjp_slice_backward, saves=(), cost=_move_cost))


def _cat_infer(*xs: TensorType, dim) -> TensorType:
    if not xs:
        raise ShapeError("needs at least one tensor", op="cat")
    first = xs[0]
    for i, x in enumerate(xs[1:], 1):
        if x.dtype is not first.dtype:
            raise DTypeError(f"tensors must have one dtype, got {first.dtype.name} (tensor 0) and "
                             f"{x.dtype.name} (tensor {i})", op="cat")
        same = x.ndim == first.ndim and all(a == b for d, (a, b) in enumerate(zip(x.shape, first.shape))
                                            if d != dim)
        if not same:
            raise ShapeError(f"shapes {first.shape} (tensor 0) and {x.shape} (tensor {i}) must match "
                             f"in every dim but dim {dim}", op="cat")
    size = sum(x.shape[dim] for x in xs)
    shape = tuple(size if d == dim else s for d, s in enumerate(first.shape))
    return TensorType(shape, first.dtype)


def _cat(*xs, dim):
    return np.concatenate(xs, axis=dim)


def _vjp_cat(g, out, *xs, dim):
    grads = []
    offset = 0
    for x in xs:
        size = x.shape[dim]
        grads.append(api.narrow(g, dim, offset, size))
        offset += size
    return tuple(grads)


register(OpDef(name="cat", kind="shape", infer=_cat_infer, impl=_cat, vjp=_vjp_cat, saves=(),
               variadic=True, cost=_move_cost))
