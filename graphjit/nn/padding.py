"""Padding layers (``torch.nn``'s): constant (zero), reflection, replication and circular
padding of the last 1 or 2 dims, each ``F.pad`` with a fixed mode."""
from __future__ import annotations

from . import functional_resample as F
from ._spatial import _option_error
from .module import Module


class _PadNd(Module):
    _mode = "constant"
    _n = 2

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * (2 * self._n)
        padding = tuple(padding)
        if len(padding) != 2 * self._n:
            raise _option_error(type(self).__name__, f"padding must be an int or "
                                                     f"{2 * self._n} ints, got {padding!r}")
        self.padding = padding
        self.value = value

    def forward(self, input):
        if self._mode == "constant":
            return F.pad(input, self.padding, "constant", self.value)
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}" + (f", value={self.value}" if self._mode == "constant" else "")


def _pad_class(name, mode, n, doc):
    return type(name, (_PadNd,), {"_mode": mode, "_n": n, "__doc__": doc})


ConstantPad1d = _pad_class("ConstantPad1d", "constant", 1, "Pads the last dim with ``value``.")
ConstantPad2d = _pad_class("ConstantPad2d", "constant", 2,
                           "Pads the last 2 dims with ``value``.")
ReflectionPad1d = _pad_class("ReflectionPad1d", "reflect", 1,
                             "Mirrors the last dim at its ends (the edge is not repeated).")
ReflectionPad2d = _pad_class("ReflectionPad2d", "reflect", 2,
                             "Mirrors the last 2 dims at their ends (edges not repeated).")
ReplicationPad1d = _pad_class("ReplicationPad1d", "replicate", 1,
                              "Repeats the edge values of the last dim.")
ReplicationPad2d = _pad_class("ReplicationPad2d", "replicate", 2,
                              "Repeats the edge values of the last 2 dims.")
CircularPad1d = _pad_class("CircularPad1d", "circular", 1, "Wraps the last dim around.")
CircularPad2d = _pad_class("CircularPad2d", "circular", 2, "Wraps the last 2 dims around.")


class ZeroPad1d(ConstantPad1d):
    """Pads the last dim with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad2d(ConstantPad2d):
    """Pads the last 2 dims with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)
