"""Normalisation layers: ``LayerNorm`` and ``GroupNorm`` (``torch.nn``'s)."""
from __future__ import annotations

from .. import creation
from ..errors import ShapeError
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class LayerNorm(Module):
    """Normalises the last ``len(normalized_shape)`` dims, then (``elementwise_affine``)
    ``* weight + bias``, weight ones and bias zeros of ``normalized_shape`` (no bias with
    ``bias=False``)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = F._shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(creation.empty(*self.normalized_shape, dtype=dtype))
            if bias:
                self.bias = Parameter(creation.empty(*self.normalized_shape, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        n = len(self.normalized_shape)
        if tuple(input.shape[max(len(input.shape) - n, 0):]) != self.normalized_shape:
            raise ShapeError(f"input of shape {tuple(input.shape)} does not end in "
                             f"normalized_shape {self.normalized_shape}", op="LayerNorm")
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Input [N, C, *] with ``C = num_channels`` split into ``num_groups`` groups, each
    normalised; then (``affine``) ``* weight + bias`` per channel, ones and zeros of [C]."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ShapeError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})", op="GroupNorm")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = Parameter(creation.empty(num_channels, dtype=dtype))
            self.bias = Parameter(creation.empty(num_channels, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input):
        if len(input.shape) < 2 or input.shape[1] != self.num_channels:
            raise ShapeError(f"expected input [N, {self.num_channels}, *], got shape "
                             f"{tuple(input.shape)}", op="GroupNorm")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
