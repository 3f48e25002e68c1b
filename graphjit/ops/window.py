"""Sliding windows over the two spatial dims of NCHW tensors: ``unfold`` (im2col) and its
adjoint ``fold`` (col2im).

Convolutions, transposed convolutions, pooling and ``F.unfold``/``F.fold`` are composites
of these two and ordinary ops (``graphjit/nn/functional_conv.py``), so they differentiate,
trace and fuse with no rules of their own.

# NOTE: [Window layout]
``unfold`` takes x [N, C, H, W] to cols [N, C, KH, KW, OH, OW] with

    cols[n, c, i, j, oh, ow] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw]

where ``xp`` is x padded by ``padding = (top, bottom, left, right)`` with ``pad_value``
(0.0 for convolution and average pooling, -inf for max pooling) and
``OH = (H + top + bottom - dh*(KH-1) - 1) // sh + 1`` (likewise OW). The order of the dims
is chosen so that ``reshape(cols, [N, C*KH*KW, OH*OW])`` is PyTorch's ``F.unfold`` layout and
``reshape(cols, [N, G, C/G*KH*KW, OH*OW])`` the right operand of a grouped convolution's
matrix product, both without a copy. Padding is four explicit non-negative ints so that
"same" padding of even kernels and ceil-mode pooling (extra windows at the bottom/right)
need no other op.

With ``layout="CN"`` the same elements are stored as cols [C, KH, KW, N, OH, OW] (the batch
inside the window dims): ``reshape(cols, [C*KH*KW, N*OH*OW])`` is then the right operand
of a convolution's matrix product over the whole batch at once, one GEMM
``[OC, C*KH*KW] @ [C*KH*KW, N*OH*OW]`` instead of one small GEMM per image (and its weight
gradient one GEMM too, not N products summed). ``layout="NC"`` is the default.

``fold`` takes cols of either layout back to [N, C, H, W] (``output_size = (H, W)``), adding
the windows that overlap and dropping what lands in the padding: it is the transpose of
``unfold`` as a linear map, so each op's gradient is the other (``unfold``'s with
pad_value 0). Its sum runs over (i, j) in row-major order; a compiled kernel that adds in
that order gives eager's bits.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import DTypeError, ShapeError
from ..shapes import TensorType, numel
from .registry import OpDef, bind, get, register


def _pair_of_ints(op, name, value, minimum):
    ok = (isinstance(value, tuple) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value))
    if not ok:
        raise ShapeError(f"{name} must be two ints >= {minimum}, got {value!r}", op=op)


LAYOUTS = ("NC", "CN")


def window_shape(n, c, kernel, counts, layout):
    """The shape of the windows of an [n, c, ...] tensor in ``layout``."""
    return ((n, c) if layout == "NC" else (c,)) + tuple(kernel) + \
        ((n,) if layout == "CN" else ()) + tuple(counts)


def _batch_channels(cols_shape, layout):
    """(N, C) of windows of shape ``cols_shape`` in ``layout``."""
    return tuple(cols_shape[:2]) if layout == "NC" else (cols_shape[3], cols_shape[0])


def _check_attrs(op, kernel, dilation, stride, padding, layout):
    if layout not in LAYOUTS:
        raise ShapeError(f"layout must be one of {LAYOUTS}, got {layout!r}", op=op)
    _pair_of_ints(op, "kernel", kernel, 1)
    _pair_of_ints(op, "dilation", dilation, 1)
    _pair_of_ints(op, "stride", stride, 1)
    ok = (isinstance(padding, tuple) and len(padding) == 4
          and all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding))
    if not ok:
        raise ShapeError(f"padding must be four ints >= 0 (top, bottom, left, right), got "
                         f"{padding!r}", op=op)


def window_counts(op, size, kernel, dilation, stride, padding, shape):
    """(OH, OW): how many windows fit along H and W of an input of spatial ``size``;
    a ShapeError naming ``shape`` when the (dilated) kernel is larger than the padded input."""
    out = []
    for d in range(2):
        padded = size[d] + padding[2 * d] + padding[2 * d + 1]
        span = dilation[d] * (kernel[d] - 1) + 1
        if padded < span:
            raise ShapeError(
                f"the kernel {kernel} with dilation {dilation} spans {span} along "
                f"{'HW'[d]}, more than the padded input size {padded} (input of shape "
                f"{tuple(shape)}, padding {padding})", op=op)
        out.append((padded - span) // stride[d] + 1)
    return tuple(out)


def _window_cost(out: TensorType, x: TensorType, **attrs):
    # unfold moves each window element once; fold adds each one once.
    moved = (numel(x.shape) + numel(out.shape)) * out.dtype.itemsize
    flops = numel(x.shape) if len(x.shape) == 6 else 0
    return flops, moved


# ---- unfold -----------------------------------------------------------------------------------

def _unfold_infer(x: TensorType, kernel, dilation, stride, padding, pad_value,
                  layout) -> TensorType:
    _check_attrs("unfold", kernel, dilation, stride, padding, layout)
    if x.ndim != 4:
        raise ShapeError(f"expects a 4-D input [N, C, H, W], got shape {x.shape}", op="unfold")
    if not math.isfinite(pad_value) and not x.dtype.is_floating_point:
        raise DTypeError(f"pad_value {pad_value} needs a floating point input, got "
                         f"{x.dtype.name} of shape {x.shape}", op="unfold")
    oh, ow = window_counts("unfold", x.shape[2:], kernel, dilation, stride, padding, x.shape)
    return TensorType(window_shape(*x.shape[:2], kernel, (oh, ow), layout), x.dtype)


def _unfold(x, kernel, dilation, stride, padding, pad_value, layout):
    n, c, h, w = x.shape
    top, bottom, left, right = padding
    if any(padding):
        xp = np.full((n, c, h + top + bottom, w + left + right), pad_value, dtype=x.dtype)
        xp[:, :, top:top + h, left:left + w] = x
    else:
        xp = x
    oh, ow = window_counts("unfold", xp.shape[2:], kernel, dilation, stride, (0, 0, 0, 0),
                           xp.shape)
    sn, sc, sh, sw = xp.strides
    view = as_strided(xp, shape=(n, c) + kernel + (oh, ow),
                      strides=(sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0],
                               sw * stride[1]), writeable=False)
    if layout == "CN":
        view = view.transpose(1, 2, 3, 0, 4, 5)
    # Always a copy: where the windows are the input's own layout (one window covering a
    # 2x2 image), ascontiguousarray would return a view of x, and an in-place change of x
    # (an optimizer step) would show through the windows (found by the fuzzer).
    return np.array(view, order="C", copy=True)


def _vjp_unfold(g, out, x, kernel, dilation, stride, padding, pad_value, layout):
    return (fold(g, tuple(x.shape[2:]), kernel, dilation, stride, padding, layout),)


register(OpDef(name="unfold", kind="opaque", infer=_unfold_infer, impl=_unfold, vjp=_vjp_unfold,
               saves=(), cost=_window_cost))


# ---- fold -------------------------------------------------------------------------------------

def _fold_infer(g: TensorType, output_size, kernel, dilation, stride, padding,
                layout) -> TensorType:
    _check_attrs("fold", kernel, dilation, stride, padding, layout)
    _pair_of_ints("fold", "output_size", output_size, 1)
    kernel_dims = slice(2, 4) if layout == "NC" else slice(1, 3)
    if g.ndim != 6 or tuple(g.shape[kernel_dims]) != kernel:
        dims = "[N, C, KH, KW, OH, OW]" if layout == "NC" else "[C, KH, KW, N, OH, OW]"
        raise ShapeError(f"expects windows {dims} (layout {layout}) with KH, KW = {kernel}, "
                         f"got shape {g.shape}", op="fold")
    n, c = _batch_channels(g.shape, layout)
    counts = window_counts("fold", output_size, kernel, dilation, stride, padding,
                           (n, c) + output_size)
    if tuple(g.shape[4:]) != counts:
        raise ShapeError(f"windows of shape {g.shape} do not fit output size {output_size}: "
                         f"kernel {kernel}, dilation {dilation}, stride {stride} and padding "
                         f"{padding} give {counts[0]}x{counts[1]} windows, not "
                         f"{g.shape[4]}x{g.shape[5]}", op="fold")
    return TensorType((n, c) + output_size, g.dtype)


def _fold(g, output_size, kernel, dilation, stride, padding, layout):
    if layout == "CN":
        g = g.transpose(3, 0, 1, 2, 4, 5)  # a view in the NC order: the same adds
    n, c, kh, kw, oh, ow = g.shape
    top, bottom, left, right = padding
    h, w = output_size
    out = np.zeros((n, c, h + top + bottom, w + left + right), dtype=g.dtype)
    for i in range(kh):
        r0 = i * dilation[0]
        rows = slice(r0, r0 + stride[0] * (oh - 1) + 1, stride[0])
        for j in range(kw):
            c0 = j * dilation[1]
            out[:, :, rows, c0:c0 + stride[1] * (ow - 1) + 1:stride[1]] += g[:, :, i, j]
    if any(padding):
        out = np.ascontiguousarray(out[:, :, top:top + h, left:left + w])
    return out


def _vjp_fold(g, out, cols, output_size, kernel, dilation, stride, padding, layout):
    return (unfold(g, kernel, dilation, stride, padding, 0.0, layout),)


register(OpDef(name="fold", kind="opaque", infer=_fold_infer, impl=_fold, vjp=_vjp_fold,
               saves=(), cost=_window_cost))


# ---- binding ----------------------------------------------------------------------------------

def _ints(values) -> tuple:
    return tuple(int(v) for v in values)


def unfold(x, kernel, dilation=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0), pad_value=0.0,
           layout="NC"):
    """The ``unfold`` primitive (see [Window layout]) with normalised attributes."""
    return bind(get("unfold"), x, kernel=_ints(kernel), dilation=_ints(dilation),
                stride=_ints(stride), padding=_ints(padding), pad_value=float(pad_value),
                layout=layout)


def fold(cols, output_size, kernel, dilation=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0),
         layout="NC"):
    """The ``fold`` primitive (see [Window layout]) with normalised attributes."""
    return bind(get("fold"), cols, output_size=_ints(output_size), kernel=_ints(kernel),
                dilation=_ints(dilation), stride=_ints(stride), padding=_ints(padding),
                layout=layout)
