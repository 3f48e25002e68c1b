"""Padding and resampling (``torch.nn.functional``'s ``pad`` and ``interpolate``), as
gathers along one dim at a time with constant index maps (and constant weights for the
linear modes)."""
from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import ShapeError
from ..ops import api
from ._spatial import _constant, _frozen, _option_error, _require_float, _take, _tuple
from .functional_pool import adaptive_avg_pool1d, adaptive_avg_pool2d


# ---- padding --------------------------------------------------------------------------------

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


@functools.lru_cache(maxsize=256)
def _pad_index(mode, size, before, after):
    """Source position along one dim of each output position of a non-constant pad."""
    p = np.arange(-before, size + after)
    if mode == "reflect":
        p = np.abs(p)
        p = np.where(p >= size, 2 * (size - 1) - p, p)
    elif mode == "replicate":
        p = np.clip(p, 0, size - 1)
    else:
        p = np.mod(p, size)
    return _frozen(p.astype(np.int64))


def pad(input, pad, mode="constant", value=None):
    """PyTorch's ``F.pad``: ``pad = (left, right, top, bottom, ...)`` pairs from the last dim
    backwards; negative amounts crop. Modes: "constant" (``value``, default 0; any number of
    dims), "reflect" (mirror without repeating the edge), "replicate" (repeat the edge),
    "circular" (wrap around); the last three pad the last 1-3 dims of a batched or unbatched
    input."""
    op = "pad"
    x = input
    pad = tuple(pad)
    nd = len(x.shape)
    if len(pad) % 2 or not pad:
        raise _option_error(op, f"padding length must be divisible by 2, got {pad}")
    if len(pad) // 2 > nd:
        raise ShapeError(f"padding length {len(pad)} is more than two per dim of the input of "
                         f"shape {tuple(x.shape)}", op=op)
    if not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in pad):
        raise _option_error(op, f"padding must be ints, got {pad}")
    if mode not in _PAD_MODES:
        raise _option_error(op, f"mode must be one of {_PAD_MODES}, got {mode!r}")
    pairs = {nd - 1 - i: (int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)}
    for d, (before, after) in pairs.items():
        if x.shape[d] + before + after < 0:
            raise ShapeError(f"the input size {x.shape[d]} of dim {d}, plus padding {before} and "
                             f"{after}, is a negative output size (input of shape "
                             f"{tuple(x.shape)})", op=op)
    if mode == "constant":
        return _pad_constant(x, pairs, 0.0 if value is None else value)
    if value is not None and value != 0:
        raise _option_error(op, f"padding mode {mode!r} doesn't take a value argument")
    k = len(pairs)
    if k > 3 or nd not in (k + 1, k + 2):
        raise ShapeError(f"mode {mode!r} with {len(pad)} padding values pads the last {k} dims "
                         f"of a {k + 1}-D or {k + 2}-D input, got input of shape "
                         f"{tuple(x.shape)}", op=op)
    for d, (before, after) in sorted(pairs.items(), reverse=True):
        size = x.shape[d]
        if mode == "reflect" and (before >= size or after >= size):
            raise ShapeError(f"padding size should be less than the corresponding input "
                             f"dimension, but got padding ({before}, {after}) at dimension {d} "
                             f"of input of shape {tuple(x.shape)}", op=op)
        if mode == "circular" and (before > size or after > size):
            raise ShapeError(f"padding ({before}, {after}) at dimension {d} of input of shape "
                             f"{tuple(x.shape)} would wrap around more than once", op=op)
        if mode == "replicate" and size == 0:
            raise ShapeError(f"cannot replicate the edge of empty dimension {d} (input of shape "
                             f"{tuple(x.shape)})", op=op)
        if mode == "circular" and (before < 0 or after < 0):
            # PyTorch crops first, then wraps the cropped values around.
            x = api.narrow(x, d, max(-before, 0), size - max(-before, 0) - max(-after, 0))
            size, before, after = x.shape[d], max(before, 0), max(after, 0)
        if before or after:
            x = _take(x, d, _pad_index(mode, size, before, after))
    return x


def _pad_constant(x, pairs, value):
    n = len(x.shape)
    starts, stops = [0] * n, list(x.shape)
    for d, (before, after) in pairs.items():  # crop first
        starts[d] = max(-before, 0)
        stops[d] = x.shape[d] - max(-after, 0)
    x = api.slice_(x, starts, stops, [1] * n)
    grow = [0] * n
    shape = list(x.shape)
    for d, (before, after) in pairs.items():
        grow[d] = max(before, 0)
        shape[d] += max(before, 0) + max(after, 0)
    if tuple(shape) == tuple(x.shape):
        return x
    inner = tuple(g + s for g, s in zip(grow, x.shape))
    out = api.slice_backward(x, shape, tuple(grow), inner, (1,) * n)
    if value == 0 and math.copysign(1.0, value) > 0:  # (-0.0 is a value of its own)
        return out
    inside = np.zeros([s if d in pairs else 1 for d, s in enumerate(shape)], dtype=bool)
    inside[tuple(slice(g, e) if d in pairs else slice(None)
                 for d, (g, e) in enumerate(zip(grow, inner)))] = True
    return api.where(_constant(_frozen(inside)), out, value)


# ---- interpolation --------------------------------------------------------------------------

_LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}


def _float32_scale(scale, size, out):
    """PyTorch's ``compute_scales_value<float>``: 1 / scale_factor when given, else size/out."""
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(size) / np.float32(out)


@functools.lru_cache(maxsize=256)
def _nearest_index(mode, size, out, scale):
    i = np.arange(out)
    if mode == "nearest" and out == size:
        src = i
    elif mode == "nearest" and out == 2 * size:
        src = i >> 1
    else:
        s = _float32_scale(scale, size, out)
        offset = np.float32(0.5) if mode == "nearest-exact" else np.float32(0.0)
        src = np.floor((i.astype(np.float32) + offset) * s).astype(np.int64)
    return _frozen(np.minimum(src, size - 1).astype(np.int64))


@functools.lru_cache(maxsize=256)
def _linear_weights(size, out, scale, align_corners, dtype_name):
    """PyTorch's linear interpolation along one dim: source positions i0, i1 and weights
    l0, l1 (computed in the input's precision, as PyTorch's opmath)."""
    ft = np.float64 if dtype_name == "float64" else np.float32
    i = np.arange(out)
    if align_corners:
        s = ft(size - 1) / ft(out - 1) if out > 1 else ft(0.0)
        real = s * i.astype(ft)
    else:
        s = ft(1.0 / scale) if scale is not None and scale > 0 else ft(size) / ft(out)
        real = np.maximum(s * (i.astype(ft) + ft(0.5)) - ft(0.5), ft(0.0))
    i0 = np.floor(real).astype(np.int64)
    i0 = np.minimum(i0, size - 1)
    lam = np.clip(real - i0.astype(ft), ft(0.0), ft(1.0)).astype(ft)
    i1 = i0 + (i0 < size - 1)
    return (_frozen(i0), _frozen(i1.astype(np.int64)), _frozen((ft(1.0) - lam).astype(ft)),
            _frozen(lam))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """PyTorch's ``F.interpolate`` of [N, C, *spatial] (1 to 3 spatial dims) to ``size`` or by
    ``scale_factor``. Modes "nearest" (PyTorch's legacy floor(dst * scale) rule), "nearest-
    exact", "linear"/"bilinear"/"trilinear" (``align_corners`` False: half-pixel centres,
    True: corner pixels aligned) and "area" (adaptive average pooling)."""
    op = "interpolate"
    x = input
    nd = len(x.shape) - 2
    if nd < 1 or nd > 3:
        raise ShapeError(f"expected a 3-D, 4-D or 5-D input [N, C, *spatial], got shape "
                         f"{tuple(x.shape)}", op=op)
    _require_float(op, "input", x)
    if mode not in ("nearest", "nearest-exact", "area") and mode not in _LINEAR_MODES:
        raise _option_error(op, f"mode {mode!r} is not supported (nearest, nearest-exact, "
                                "linear, bilinear, trilinear, area)")
    if mode in _LINEAR_MODES and _LINEAR_MODES[mode] != nd:
        raise ShapeError(f"got {nd + 2}-D input of shape {tuple(x.shape)}, but mode {mode!r} "
                         f"needs {_LINEAR_MODES[mode] + 2}-D input", op=op)
    if align_corners is not None and mode not in _LINEAR_MODES:
        raise _option_error(op, "align_corners option can only be set with the interpolating "
                                "modes: linear | bilinear | trilinear")
    if antialias:
        raise _option_error(op, "antialias=True is not supported")
    if (size is None) == (scale_factor is None):
        raise _option_error(op, "exactly one of size and scale_factor must be given")
    spatial = tuple(x.shape[2:])
    if size is not None:
        out = _tuple(op, "size", size, nd, 1)
        scales = (None,) * nd
    else:
        scales = tuple(float(s) for s in (scale_factor if isinstance(scale_factor, (tuple, list))
                                          else (scale_factor,) * nd))
        if len(scales) != nd or any(s <= 0 for s in scales):
            raise _option_error(op, f"scale_factor must be a positive number or {nd} of them, "
                                    f"got {scale_factor!r}")
        out = tuple(int(math.floor(n * s)) for n, s in zip(spatial, scales))
        if any(o < 1 for o in out):
            raise ShapeError(f"scale_factor {scale_factor!r} gives an empty output {out} for "
                             f"input of shape {tuple(x.shape)}", op=op)
        if recompute_scale_factor:
            scales = (None,) * nd
    if mode == "area":
        pool = {1: adaptive_avg_pool1d, 2: adaptive_avg_pool2d}.get(nd)
        if pool is None:
            raise _option_error(op, "mode 'area' supports 3-D and 4-D input")
        return pool(x, out)
    # Separable, the last dim first: for bilinear that is PyTorch's order of operations.
    for d in reversed(range(nd)):
        dim = 2 + d
        if mode in _LINEAR_MODES:
            i0, i1, l0, l1 = _linear_weights(spatial[d], out[d], scales[d], bool(align_corners),
                                             x.dtype.name)
            shape = (out[d],) + (1,) * (nd - 1 - d)
            w0 = _constant(_frozen(l0.astype(x.dtype.np).reshape(shape)))
            w1 = _constant(_frozen(l1.astype(x.dtype.np).reshape(shape)))
            x = api.add(api.mul(_take(x, dim, i0), w0), api.mul(_take(x, dim, i1), w1))
        elif out[d] != spatial[d] or mode != "nearest":
            x = _take(x, dim, _nearest_index(mode, spatial[d], out[d], scales[d]))
    return x
