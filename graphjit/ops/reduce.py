"""Reductions over a tuple of dims: sum, amax, amin, argmax.

``mean``, ``var``, ``std`` and ``logsumexp`` are composites in ``api`` built on these.
Attributes are normalised by ``api`` before binding: ``dims`` is a sorted tuple of
non-negative ints, ``keepdim`` a bool.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError
from ..shapes import TensorType, numel, reduced_shape
from . import api
from .registry import OpDef, register


def _keep_shape(shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def _reduce_cost(out: TensorType, x: TensorType, **attrs):
    return numel(x.shape), numel(x.shape) * x.dtype.itemsize + numel(out.shape) * out.dtype.itemsize


def _sum_infer(x: TensorType, dims, keepdim) -> TensorType:
    dtype = x.dtype if x.dtype.is_floating_point else dtypes.int64
    return TensorType(reduced_shape(x.shape, dims, keepdim), dtype)


def _sum(x, dims, keepdim):
    dtype = x.dtype if x.dtype.kind == "f" else np.int64
    return np.sum(x, axis=dims, keepdims=keepdim, dtype=dtype)


def _broadcast_back(g, shape, dims):
    """The gradient of a reduction, reshaped to keepdim form and expanded to the input."""
    return api.expand(api.reshape(g, _keep_shape(shape, dims)), shape)


def _vjp_sum(g, out, x, dims, keepdim):
    return (_broadcast_back(g, x.shape, dims),)


register(OpDef(name="sum", kind="reduce", infer=_sum_infer, impl=_sum, vjp=_vjp_sum, saves=(),
               cost=_reduce_cost))


def _extreme_infer(name):
    def infer(x: TensorType, dims, keepdim) -> TensorType:
        if x.dtype is dtypes.bool_:
            raise DTypeError(f"is not defined for bool tensors (shape {x.shape})", op=name)
        if numel(x.shape) == 0:
            raise DTypeError(f"of an empty tensor of shape {x.shape} has no identity", op=name)
        return TensorType(reduced_shape(x.shape, dims, keepdim), x.dtype)
    return infer


def _vjp_extreme(g, out, x, dims, keepdim):
    # NOTE: ties share the gradient evenly, as in PyTorch's amax/amin.
    out_k = api.reshape(out, _keep_shape(x.shape, dims))
    mask = api.cast(api.eq(x, out_k), g.dtype)
    count = api.sum(mask, dim=dims, keepdim=True)
    return (api.div(api.mul(_broadcast_back(g, x.shape, dims), mask), count),)


register(OpDef(name="amax", kind="reduce", infer=_extreme_infer("amax"),
               impl=lambda x, dims, keepdim: np.amax(x, axis=dims, keepdims=keepdim),
               vjp=_vjp_extreme, saves=(0, "out"), cost=_reduce_cost))
register(OpDef(name="amin", kind="reduce", infer=_extreme_infer("amin"),
               impl=lambda x, dims, keepdim: np.amin(x, axis=dims, keepdims=keepdim),
               vjp=_vjp_extreme, saves=(0, "out"), cost=_reduce_cost))


def _argmax_infer(x: TensorType, dim, keepdim) -> TensorType:
    if numel(x.shape) == 0:
        raise DTypeError(f"of an empty tensor of shape {x.shape} is undefined", op="argmax")
    if dim is None:
        shape = tuple(1 for _ in x.shape) if keepdim else ()
    else:
        shape = reduced_shape(x.shape, (dim,), keepdim)
    return TensorType(shape, dtypes.int64)


def _argmax(x, dim, keepdim):
    out = np.argmax(x, axis=dim, keepdims=keepdim)
    return np.asarray(out, dtype=np.int64)


register(OpDef(name="argmax", kind="reduce", infer=_argmax_infer, impl=_argmax, vjp=None,
               no_grad_reason="integer result", cost=_reduce_cost))
