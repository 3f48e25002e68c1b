"""Ops with no tensor inputs: ``full`` (a constant fill) and ``iota`` (index along a dim).

They let a traced graph hold constants as tiny nodes instead of baked-in arrays: Python
scalars in user code become ``full`` of shape [], and ``gather``'s index grids are ``iota``.
"""
from __future__ import annotations

import numpy as np

from ..shapes import TensorType, numel
from .registry import OpDef, register


def _full_infer(shape, value, dtype) -> TensorType:
    return TensorType(tuple(shape), dtype)


def _full(shape, value, dtype):
    return np.full(shape, value, dtype=dtype.np)


def _gen_cost(out: TensorType, **attrs):
    return 0, numel(out.shape) * out.dtype.itemsize


register(OpDef(name="full", kind="elementwise", infer=_full_infer, impl=_full, vjp=None,
               no_grad_reason="constant", scalar=lambda shape, value, dtype: repr(value),
               cost=_gen_cost))


def _iota_infer(shape, dim, dtype) -> TensorType:
    return TensorType(tuple(shape), dtype)


def _iota(shape, dim, dtype):
    view = [1] * len(shape)
    view[dim] = shape[dim]
    return np.broadcast_to(np.arange(shape[dim], dtype=dtype.np).reshape(view), shape).copy()


register(OpDef(name="iota", kind="elementwise", infer=_iota_infer, impl=_iota, vjp=None,
               no_grad_reason="constant", cost=_gen_cost))
