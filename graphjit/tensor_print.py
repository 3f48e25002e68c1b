"""How a tensor prints: ``repr(t)``/``str(t)`` (PyTorch's ``tensor([...], ...)`` text) and
``format(t, spec)``. ``Tensor.__repr__`` and ``Tensor.__format__`` in graphjit/tensor.py
call these; nothing here changes a tensor.
"""
from __future__ import annotations

import math

import numpy as np

from . import _tracing, devices, dtypes


def tensor_repr(t) -> str:
    """``tensor(<data>, <extras>)``: the extras are what differs from a default tensor (an
    empty tensor's size, the device, a non-default float dtype, ``grad_fn`` or
    ``requires_grad``). A traced tensor prints as its tracer describes it."""
    tracer = _tracing.active()
    if tracer is not None:
        text = tracer.describe(t)
        if text is not None:
            return text
    body = format_data(devices.to_host(t._data))
    extras = []
    dt = t.dtype
    if t._data.size == 0:
        extras.append(f"size={t.shape}")
    if t.is_cuda:
        extras.append(f"device='{t.device}'")
    if dt.is_floating_point and dt is not dtypes.get_default_dtype():
        extras.append(f"dtype={dt!r}")
    if t._grad_fn is not None:
        extras.append(f"grad_fn=<{t._grad_fn.name()}>")
    elif t._requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + ", ".join([body] + extras) + ")"


def tensor_format(t, spec: str) -> str:
    """``format(t, spec)``: see ``Tensor.__format__``."""
    if not spec:
        return str(t)
    if t.ndim == 0:
        return format(t.item(), spec)
    raise TypeError(f"unsupported format string passed to Tensor.__format__ (a tensor of "
                    f"shape {tuple(t.shape)}: format its .item() or .tolist())")


def _float_formatter(values: np.ndarray):
    """PyTorch's choice of float format for the printed elements ``values``: whole numbers
    as ``1.``, else 4 decimals, or scientific when the magnitudes span more than 1000x or leave
    [1e-4, 1e8); every element padded to one width."""
    finite = np.abs(values[np.isfinite(values)]).astype(np.float64)
    nonzero = finite[finite > 0]
    if finite.size and np.all(finite == np.round(finite)) and (not nonzero.size
                                                              or nonzero.max() < 1e8):
        fmt = "{:.0f}.".format
    elif nonzero.size and (nonzero.max() / nonzero.min() > 1000.0 or nonzero.max() >= 1e8
                           or nonzero.min() < 1e-4):
        fmt = "{:.4e}".format
    else:
        fmt = "{:.4f}".format
    def text(v):  # NaN and infinities as PyTorch prints them: nan, inf, -inf
        v = float(v)
        return fmt(v) if math.isfinite(v) else ("nan" if v != v else "inf" if v > 0 else "-inf")
    width = max((len(text(v)) for v in values.ravel().tolist()), default=0)
    return lambda v: text(v).rjust(width)


def format_data(data: np.ndarray) -> str:
    """The elements of ``data`` as PyTorch prints them (summarised past 1000 elements)."""
    threshold, edge = 1000, 3
    kw = {}
    if data.dtype.kind == "f" and data.size:
        flat = data.ravel()
        # A summarised tensor: roughly the printed elements decide the format, as in torch.
        shown = flat if data.size <= threshold else np.concatenate([flat[:edge], flat[-edge:]])
        kw["formatter"] = {"float_kind": _float_formatter(shown)}
    return np.array2string(data, separator=", ", prefix="tensor(", threshold=threshold,
                           edgeitems=edge, **kw)
