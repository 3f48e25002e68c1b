"""Matrix multiply on operands of two or more dims, with broadcast batch dims.

``api.matmul`` maps PyTorch's 1-D cases onto this primitive (unsqueeze, then squeeze).
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..shapes import TensorType, broadcast_shapes, numel
from . import api
from .registry import OpDef, register


def _matmul_infer(a: TensorType, b: TensorType) -> TensorType:
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"primitive needs operands of >= 2 dims, got {a.shape} and {b.shape}",
                         op="matmul")
    if a.dtype is not b.dtype:
        raise DTypeError(f"operands must have one dtype, got {a.dtype.name}{list(a.shape)} and "
                         f"{b.dtype.name}{list(b.shape)}", op="matmul")
    if a.dtype.category == 0:
        raise DTypeError(f"is not defined for bool tensors {a.shape} @ {b.shape}", op="matmul")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({a.shape[-2]}x{a.shape[-1]} and {b.shape[-2]}x{b.shape[-1]})",
                         op="matmul")
    try:
        batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"the batch dims of {a.shape} and {b.shape} cannot be broadcast together "
                         f"({a.shape[:-2]} vs {b.shape[:-2]})", op="matmul") from None
    return TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _vjp_matmul(g, out, a, b):
    ga = api.sum_to(api.matmul(g, api.transpose(b, -1, -2)), a.shape)
    gb = api.sum_to(api.matmul(api.transpose(a, -1, -2), g), b.shape)
    return (ga, gb)


def _matmul_cost(out: TensorType, a: TensorType, b: TensorType):
    flops = 2 * numel(out.shape) * a.shape[-1]
    moved = (numel(a.shape) + numel(b.shape) + numel(out.shape)) * out.dtype.itemsize
    return flops, moved


register(OpDef(name="matmul", kind="matmul", infer=_matmul_infer, impl=np.matmul,
               vjp=_vjp_matmul, saves=(0, 1), cost=_matmul_cost))
