"""Pooling (``torch.nn.functional``'s max, average and adaptive pooling in 1-D and 2-D;
NCHW), composites of ``unfold`` (``graphjit/ops/window.py``), ``argmax``, ``where``, ``sum``,
``index`` and matrix products.

# NOTE: [First maximum]
Max pooling takes, in each window, the FIRST maximum in row-major window order (and a NaN
over any number), as PyTorch's CPU kernels do: ``argmax`` over the window picks it, and the
value is ``sum(where(argmax == k, window, -0.0))`` over the window. The gradient therefore
goes to that one element, where ``amax``'s rule would split it between tied elements (ties
are common after a ReLU: all-zero windows). ``-0.0`` is the filler because ``v + -0.0 == v``
for every v, -0.0 included. A ``where`` + ``sum`` fuses into one reduction loop when
compiled, and its gradient is a ``where``, not a scatter. With several NaNs in one window
PyTorch reports the last one's index, this the first (the value is NaN either way).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import ShapeError
from ..ops import api
from ..ops.window import unfold as _unfold_op
from ._spatial import (_as_dtype, _batched, _constant, _frozen, _iota, _option_error,
                       _require_float, _take, _tuple, _unbatched)


# ---- pooling --------------------------------------------------------------------------------

def _pool_size(size, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's ``pooling_output_shape``: with ceil_mode the last window may hang over the
    end, but must start inside the input or the left padding."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * padding - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_geometry(op, x, kernel, stride, padding, dilation, ceil_mode):
    """((OH, OW), unfold padding (top, bottom, left, right)) of a pooling of 4-D ``x``: the
    bottom/right padding grows to hold ceil_mode's last windows."""
    for k, p in zip(kernel, padding):
        if p > k // 2:
            raise _option_error(op, f"pad should be at most half of the kernel size, but got "
                                    f"padding={padding} and kernel_size={kernel}")
    counts, pads = [], []
    for d in range(2):
        size = x.shape[2 + d]
        out = _pool_size(size, kernel[d], stride[d], padding[d], dilation[d], ceil_mode)
        counts.append(out)
        needed = (out - 1) * stride[d] + dilation[d] * (kernel[d] - 1) + 1
        pads += [padding[d], max(padding[d], needed - size - padding[d])]
    if any(c < 1 for c in counts):
        raise ShapeError(f"given input of shape {tuple(x.shape)}, the calculated output size "
                         f"{tuple(x.shape[:2]) + tuple(counts)} is too small (kernel_size "
                         f"{kernel}, stride {stride}, padding {padding}, dilation {dilation})",
                         op=op)
    return tuple(counts), tuple(pads)


def _pool_args(op, kernel_size, stride, padding, dilation, n=2):
    kernel = _tuple(op, "kernel_size", kernel_size, n, 1)
    # PyTorch: no stride (None or an empty list) means stride = kernel_size.
    stride = kernel if stride is None or stride == [] or stride == () else \
        _tuple(op, "stride", stride, n, 1)
    return kernel, stride, _tuple(op, "padding", padding, n, 0), \
        _tuple(op, "dilation", dilation, n, 1)


@functools.lru_cache(maxsize=256)
def _max_pool_index_map(size, kernel, stride, pads, dilation, counts):
    """[KH*KW, OH, OW] int64: the flat index h * W + w into the input plane of each window
    element; padding elements get the window's first real element, whose index PyTorch
    reports when nothing beats -inf."""
    h, w = size
    kh, kw = kernel
    oh, ow = counts
    top, left = pads[0], pads[2]
    r = (np.arange(oh)[None, None, :, None] * stride[0] - top
         + np.arange(kh)[:, None, None, None] * dilation[0])
    c = (np.arange(ow)[None, None, None, :] * stride[1] - left
         + np.arange(kw)[None, :, None, None] * dilation[1])
    r, c = np.broadcast_arrays(r, c)
    first_r = np.where(r[:1] < 0, r[:1] + dilation[0] * -(r[:1] // dilation[0]), r[:1])
    first_c = np.where(c[:, :1] < 0, c[:, :1] + dilation[1] * -(c[:, :1] // dilation[1]),
                       c[:, :1])
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    flat = np.where(inside, r * w + c, np.broadcast_to(first_r, r.shape) * w
                    + np.broadcast_to(first_c, c.shape))
    return _frozen(np.ascontiguousarray(flat.reshape(kh * kw, oh, ow), dtype=np.int64))


def _first_max(windows, dim):
    """(value, hit mask) of the first maximum along ``dim`` (see [First maximum])."""
    first = api.argmax(windows, dim, keepdim=True)
    shape = [1] * len(windows.shape)
    shape[dim] = windows.shape[dim]
    hit = api.eq(first, _iota(shape, dim))
    return api.sum(api.where(hit, windows, -0.0), dim), hit


def _max_pool2d(op, x, kernel, stride, padding, dilation, ceil_mode, return_indices):
    _require_float(op, "input", x)
    counts, pads = _pool_geometry(op, x, kernel, stride, padding, dilation, ceil_mode)
    n, c = x.shape[:2]
    cols = _unfold_op(x, kernel, dilation, stride, pads, -math.inf)
    cols = api.reshape(cols, (n, c, kernel[0] * kernel[1]) + counts)
    out, hit = _first_max(cols, 2)
    if not return_indices:
        return out, None
    index_map = _max_pool_index_map(tuple(x.shape[2:]), kernel, stride, pads, dilation, counts)
    indices = api.sum(api.where(hit, _constant(index_map), 0), 2)
    return out, indices


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling of [N, C, H, W] (or [C, H, W]); ``stride`` defaults to
    ``kernel_size``, padding (at most half the kernel) is -inf. With ``return_indices`` also
    the flat index ``h * W + w`` of each maximum in its input plane. The maximum taken (and
    the one the gradient reaches) is the first in row-major window order: see [First
    maximum]."""
    op = "max_pool2d"
    x, added = _batched(op, input, 2)
    kernel, stride, padding, dilation = _pool_args(op, kernel_size, stride, padding, dilation)
    out, indices = _max_pool2d(op, x, kernel, stride, padding, dilation, ceil_mode,
                               return_indices)
    out = _unbatched(out, added)
    return (out, _unbatched(indices, added)) if return_indices else out


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-D max pooling of [N, C, L] (or [C, L]): ``max_pool2d`` over [N, C, 1, L]."""
    op = "max_pool1d"
    x, added = _batched(op, input, 1)
    kernel, stride, padding, dilation = _pool_args(op, kernel_size, stride, padding, dilation, 1)
    out, indices = _max_pool2d(op, api.unsqueeze(x, 2), (1,) + kernel, (1,) + stride,
                               (0,) + padding, (1,) + dilation, ceil_mode, return_indices)
    out = _unbatched(api.squeeze(out, 2), added)
    return (out, _unbatched(api.squeeze(indices, 2), added)) if return_indices else out


@functools.lru_cache(maxsize=256)
def _avg_divisors(size, kernel, stride, padding, counts, count_include_pad):
    """PyTorch's avg_pool2d divisor of each output position, [OH, OW] float64: the window
    clipped to the padded input (count_include_pad) or to the input itself."""
    per_dim = []
    for d in range(2):
        start = np.arange(counts[d]) * stride[d] - padding[d]
        end = np.minimum(start + kernel[d], size[d] + padding[d])
        pool = end - start
        if not count_include_pad:
            pool = np.minimum(end, size[d]) - np.maximum(start, 0)
        per_dim.append(pool)
    return _frozen((per_dim[0][:, None] * per_dim[1][None, :]).astype(np.float64))


def _avg_pool2d(op, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    _require_float(op, "input", x)
    if divisor_override is not None and (not isinstance(divisor_override, int)
                                         or isinstance(divisor_override, bool)
                                         or divisor_override == 0):
        raise _option_error(op, f"divisor must be a non-zero int, got {divisor_override!r}")
    counts, pads = _pool_geometry(op, x, kernel, stride, padding, (1, 1), ceil_mode)
    cols = _unfold_op(x, kernel, (1, 1), stride, pads, 0.0)
    total = api.sum(cols, (2, 3))
    if divisor_override is not None:
        return api.div(total, float(divisor_override))
    divisors = _avg_divisors(tuple(x.shape[2:]), kernel, stride, padding, counts,
                             bool(count_include_pad))
    if (divisors == divisors.flat[0]).all():
        return api.div(total, float(divisors.flat[0]))
    return api.div(total, _constant(_as_dtype(divisors, x.dtype)))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling of [N, C, H, W] (or [C, H, W]) with PyTorch's divisors: the window
    size, counting zero padding (``count_include_pad``) or not, windows of ``ceil_mode``
    clipped to the padded input; or ``divisor_override``."""
    op = "avg_pool2d"
    x, added = _batched(op, input, 2)
    kernel, stride, padding, _ = _pool_args(op, kernel_size, stride, padding, 1)
    out = _avg_pool2d(op, x, kernel, stride, padding, ceil_mode, count_include_pad,
                      divisor_override)
    return _unbatched(out, added)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-D average pooling of [N, C, L] (or [C, L]): ``avg_pool2d`` over [N, C, 1, L]."""
    op = "avg_pool1d"
    x, added = _batched(op, input, 1)
    kernel, stride, padding, _ = _pool_args(op, kernel_size, stride, padding, 1, 1)
    out = _avg_pool2d(op, api.unsqueeze(x, 2), (1,) + kernel, (1,) + stride, (0,) + padding,
                      ceil_mode, count_include_pad, None)
    return _unbatched(api.squeeze(out, 2), added)


# ---- adaptive pooling -----------------------------------------------------------------------

def _adaptive_size(op, x, output_size, n):
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        output_size = (int(output_size),) * n
    if not isinstance(output_size, (tuple, list)) or len(output_size) != n:
        raise _option_error(op, f"output_size must be an int or {n} ints (None keeps the "
                                f"input's size), got {output_size!r}")
    size = tuple(x.shape[2 + d] if s is None else s for d, s in enumerate(output_size))
    if any(not isinstance(s, (int, np.integer)) or s < 1 for s in size):
        raise _option_error(op, f"output_size must be positive, got {output_size!r}")
    for d in range(n):
        if x.shape[2 + d] < 1:
            raise ShapeError(f"input of shape {tuple(x.shape)} has an empty spatial dim", op=op)
    return tuple(int(s) for s in size)


@functools.lru_cache(maxsize=256)
def _adaptive_windows(size, out):
    """PyTorch's adaptive windows along one dim: [start, end) with start = floor(i*size/out)
    and end = ceil((i+1)*size/out), as an index map [out, longest window] whose short windows
    repeat their last element (argmax picks the first of equal values, so a repeat never
    wins, and its gradient is nothing), and the window lengths."""
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    longest = int((end - start).max())
    index = np.minimum(start[:, None] + np.arange(longest)[None, :], end[:, None] - 1)
    return _frozen(index.astype(np.int64)), _frozen((end - start).astype(np.int64))


def _adaptive_avg_dim(x, dim, out):
    size = x.shape[dim]
    if out == size:
        return x
    if size % out == 0:  # equal windows side by side: a reshape and a mean
        shape = tuple(x.shape[:dim]) + (out, size // out) + tuple(x.shape[dim + 1:])
        return api.mean(api.reshape(x, shape), dim + 1)
    index, lengths = _adaptive_windows(size, out)
    avg = np.zeros((out, size))
    for o in range(out):
        avg[o, index[o, 0]:index[o, 0] + lengths[o]] = 1.0 / lengths[o]
    avg = _constant(_as_dtype(avg, x.dtype))
    if dim == len(x.shape) - 1:
        return api.matmul(x, api.transpose(avg, 0, 1))
    moved = api.transpose(x, dim, -2)
    return api.transpose(api.matmul(avg, moved), dim, -2)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling of [N, C, H, W] (or [C, H, W]) to ``output_size`` (an int, or two
    ints/None) with PyTorch's windows ``[floor(i*H/OH), ceil((i+1)*H/OH))``; separable:
    pools W then H, each by a reshape + mean where the windows are equal, else by a matrix
    product with a constant averaging matrix."""
    op = "adaptive_avg_pool2d"
    x, added = _batched(op, input, 2)
    _require_float(op, "input", x)
    oh, ow = _adaptive_size(op, x, output_size, 2)
    return _unbatched(_adaptive_avg_dim(_adaptive_avg_dim(x, 3, ow), 2, oh), added)


def adaptive_avg_pool1d(input, output_size):
    """Average pooling of [N, C, L] (or [C, L]) to ``output_size`` over PyTorch's adaptive
    windows."""
    op = "adaptive_avg_pool1d"
    x, added = _batched(op, input, 1)
    _require_float(op, "input", x)
    (ol,) = _adaptive_size(op, x, output_size, 1)
    return _unbatched(_adaptive_avg_dim(x, 2, ol), added)


def _adaptive_max_dim(x, dim, out, with_index):
    """Max over PyTorch's adaptive windows along ``dim``: (values, the winning position along
    ``dim`` or None, the hit mask, the window index map)."""
    index, _ = _adaptive_windows(x.shape[dim], out)
    windows = _take(x, dim, index)              # the window dim lands at dim + 1
    value, hit = _first_max(windows, dim + 1)
    position = None
    if with_index:
        shape = (out, index.shape[1]) + (1,) * (len(x.shape) - dim - 1)
        position = api.sum(api.where(hit, _constant(_frozen(index.reshape(shape))), 0), dim + 1)
    return value, position, hit, index


def _adaptive_max_pool2d(op, x, size, return_indices):
    _require_float(op, "input", x)
    oh, ow = size
    h, w = x.shape[2:]
    if h % oh == 0 and w % ow == 0:  # equal windows side by side: a plain max pooling
        kernel = (h // oh, w // ow)
        return _max_pool2d(op, x, kernel, kernel, (0, 0), (1, 1), False, return_indices)
    # First maximum in row-major order, separably: the first maximum of each row segment,
    # then the first row whose maximum is the largest.
    by_row, col, _, _ = _adaptive_max_dim(x, 3, ow, return_indices)
    out, row, hit, index = _adaptive_max_dim(by_row, 2, oh, return_indices)
    if not return_indices:
        return out, None
    col = api.sum(api.where(hit, _take(col, 2, index), 0), 3)
    return out, api.add(api.mul(row, w), col)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max pooling of [N, C, H, W] (or [C, H, W]) to ``output_size`` over PyTorch's adaptive
    windows (see ``adaptive_avg_pool2d``); the first maximum in row-major order wins (see
    [First maximum]); ``return_indices`` adds its flat index ``h * W + w``."""
    op = "adaptive_max_pool2d"
    x, added = _batched(op, input, 2)
    out, indices = _adaptive_max_pool2d(op, x, _adaptive_size(op, x, output_size, 2),
                                        return_indices)
    out = _unbatched(out, added)
    return (out, _unbatched(indices, added)) if return_indices else out


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Max pooling of [N, C, L] (or [C, L]) to ``output_size`` over PyTorch's adaptive
    windows; ``return_indices`` adds the position of each maximum along L."""
    op = "adaptive_max_pool1d"
    x, added = _batched(op, input, 1)
    (ol,) = _adaptive_size(op, x, output_size, 1)
    out, indices = _adaptive_max_pool2d(op, api.unsqueeze(x, 2), (1, ol), return_indices)
    out = _unbatched(api.squeeze(out, 2), added)
    if not return_indices:
        return out
    return out, _unbatched(api.squeeze(indices, 2), added)
