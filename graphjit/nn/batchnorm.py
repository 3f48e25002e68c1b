"""Batch normalisation layers (``torch.nn``'s ``BatchNorm1d`` and ``BatchNorm2d``)."""
from __future__ import annotations

from .. import creation, dtypes
from ..autograd_tape import no_grad
from ..errors import ShapeError
from ..ops import api
from . import functional_conv as F
from . import init
from .module import Module
from .parameter import Parameter


class _BatchNorm(Module):
    """Shared by the batch norms: parameters ``weight`` (ones) and ``bias`` (zeros) when
    ``affine``; buffers ``running_mean`` (zeros), ``running_var`` (ones) and
    ``num_batches_tracked`` (int64) when ``track_running_stats``, all in ``state_dict()``
    under PyTorch's keys.

    In training mode the batch statistics normalise and the running ones are updated in place
    (``momentum=None``: a cumulative average over the batches seen); in eval mode the running
    statistics normalise (or the batch's, without ``track_running_stats``). The mode is a
    Python value, so a compiled function traces again after ``train()``/``eval()``."""

    _dims = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(creation.empty(num_features, dtype=dtype))
            self.bias = Parameter(creation.empty(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", creation.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", creation.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", creation.zeros((), dtype=dtypes.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input_dim(self, input) -> None:
        if len(input.shape) not in self._dims:
            want = " or ".join(f"{d}D" for d in self._dims)
            raise ShapeError(f"expected {want} input, got input of shape {tuple(input.shape)}",
                             op=type(self).__name__)

    def forward(self, input):
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average: 1 / batches seen
                factor = api.div(1.0, api.cast(self.num_batches_tracked,
                                                      self.running_mean.dtype))
        use_batch_stats = self.training or (self.running_mean is None
                                            and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of [N, C] or [N, C, L] over N (and L), per channel C."""
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm of [N, C, H, W] over N, H and W, per channel C."""
    _dims = (4,)
