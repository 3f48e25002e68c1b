"""Convolution and batch norm (``torch.nn.functional``'s names, signatures, defaults and
numbers; NCHW); with pooling (``functional_pool``), padding and resampling
(``functional_resample``) re-exported by ``graphjit.nn.functional``.

All of it is composites of graphjit ops: the two window primitives ``unfold``/``fold``
(``graphjit/ops/window.py``) and ``matmul``, ``argmax``, ``where``, ``sum``, ``index``,
reshapes. So it runs eagerly, traces into graphs and differentiates with no rules of its own,
and a convolution's matrix products are the compiler's GEMMs (bias and ReLU then run in
their epilogues).
"""
from __future__ import annotations

from ..autograd_tape import no_grad
from ..errors import DTypeError, ShapeError
from ..ops import api
from ..ops.window import fold as _fold_op
from ..ops.window import unfold as _unfold_op
from ..ops.window import window_counts
from ._spatial import (_batched, _option_error, _require_float, _tuple, _unbatched,
                       _zero_pad_end)
from .functional_pool import (adaptive_avg_pool1d, adaptive_avg_pool2d,  # noqa: F401
                              adaptive_max_pool1d, adaptive_max_pool2d, avg_pool1d, avg_pool2d,
                              max_pool1d, max_pool2d)
from .functional_resample import interpolate, pad  # noqa: F401

# What ``graphjit.nn.functional`` re-exports (its last line imports them).
__all__ = ["adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "avg_pool1d", "avg_pool2d", "batch_norm", "conv1d", "conv2d",
           "conv_transpose2d", "fold", "interpolate", "max_pool1d", "max_pool2d", "pad", "unfold"]


# ---- convolution ----------------------------------------------------------------------------

def _conv_padding(op, padding, kernel, dilation, stride, n):
    """Per spatial dim (before, after) for ``padding``: ints, "valid" or "same" (the extra
    element of an odd total goes after, as in PyTorch)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise _option_error(op, f"invalid padding string {padding!r}, should be one of "
                                    "{'valid', 'same'}")
        if any(s != 1 for s in stride):
            raise _option_error(op, "padding='same' is not supported for strided convolutions")
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    return tuple((p, p) for p in _tuple(op, "padding", padding, n, 0))


def _check_conv(op, x, weight, bias, groups, transposed):
    _require_float(op, "input", x)
    if weight.dtype is not x.dtype:
        raise DTypeError(f"input type ({x.dtype.name}) and weight type ({weight.dtype.name}) "
                         f"should be the same (input {tuple(x.shape)}, weight "
                         f"{tuple(weight.shape)})", op=op)
    if len(weight.shape) != len(x.shape):
        layout = "in_channels, out_channels/groups" if transposed else \
            "out_channels, in_channels/groups"
        raise ShapeError(f"weight of shape {tuple(weight.shape)} must have {len(x.shape)} dims "
                         f"[{layout}, *kernel] for input of shape {tuple(x.shape)}", op=op)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise _option_error(op, f"groups must be a positive int, got {groups!r}")
    c = x.shape[1]
    if transposed:
        if weight.shape[0] != c or c % groups:
            raise ShapeError(f"given transposed weight of shape {tuple(weight.shape)} and "
                             f"groups={groups}, expected input of shape {tuple(x.shape)} to have "
                             f"{weight.shape[0]} channels (divisible by groups), but got {c} "
                             f"channels instead", op=op)
        out_channels = weight.shape[1] * groups
    else:
        if weight.shape[0] % groups:
            raise ShapeError(f"weight of shape {tuple(weight.shape)}: out_channels "
                             f"{weight.shape[0]} must be divisible by groups={groups}", op=op)
        if weight.shape[1] * groups != c:
            raise ShapeError(f"given groups={groups}, weight of shape {tuple(weight.shape)}, "
                             f"expected input of shape {tuple(x.shape)} to have "
                             f"{weight.shape[1] * groups} channels, but got {c} channels "
                             f"instead", op=op)
        out_channels = weight.shape[0]
    if bias is not None:
        if tuple(bias.shape) != (out_channels,):
            raise ShapeError(f"bias of shape {tuple(bias.shape)} must have shape "
                             f"({out_channels},), one entry per output channel (weight "
                             f"{tuple(weight.shape)})", op=op)
        if bias.dtype is not x.dtype:
            raise DTypeError(f"bias type ({bias.dtype.name}) and input type ({x.dtype.name}) "
                             "should be the same", op=op)
    return out_channels


def _check_kernel_fits(op, x, kernel, dilation, pads):
    padded = tuple(x.shape[2 + d] + pads[d][0] + pads[d][1] for d in range(2))
    span = tuple(dilation[d] * (kernel[d] - 1) + 1 for d in range(2))
    if any(p < s for p, s in zip(padded, span)):
        raise ShapeError(f"calculated padded input size per channel: ({padded[0]} x "
                         f"{padded[1]}); kernel size: ({span[0]} x {span[1]}) (with dilation). "
                         f"Kernel size can't be greater than actual input size (input of shape "
                         f"{tuple(x.shape)})", op=op)


def _conv2d(x, weight, bias, stride, pads, dilation, groups):
    """The convolution of 4-D ``x`` [N, C, H, W] by ``weight`` [OC, C/G, KH, KW]: unfold in
    the "CN" layout (see [Window layout]), ONE matrix product over the whole batch per group,
    ``[OC/G, C/G*KH*KW] @ [C/G*KH*KW, N*OH*OW]``, + bias, and the [OC, N, ...] result seen
    as [N, OC, ...]. Its gradients are then one GEMM each too (a per-image product would be
    N small GEMMs, and the weight gradient their sum)."""
    n, c = x.shape[:2]
    oc, cg, kh, kw = weight.shape
    flat_pads = pads[0] + pads[1]
    if (kh, kw) == (1, 1) and stride == (1, 1) and not any(flat_pads):
        cols = api.permute(x, (1, 0, 2, 3))  # a 1x1 convolution's windows: x itself, [C, N, ...]
        oh, ow = x.shape[2:]
    else:
        cols = _unfold_op(x, (kh, kw), dilation, stride, flat_pads, layout="CN")
        oh, ow = cols.shape[4:]  # [C, KH, KW, N, OH, OW]
    k, columns = cg * kh * kw, n * oh * ow
    if groups == 1:
        out = api.matmul(api.reshape(weight, (oc, k)), api.reshape(cols, (k, columns)))
    else:
        w = api.reshape(weight, (groups, oc // groups, k))
        out = api.matmul(w, api.reshape(cols, (groups, k, columns)))  # [G, OC/G, N*L]
    out = api.reshape(out, (oc, columns))
    if bias is not None:  # added before the permute: the GEMM's epilogue adds it
        out = api.add(out, api.reshape(bias, (oc, 1)))
    return api.permute(api.reshape(out, (oc, n, oh, ow)), (1, 0, 2, 3))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) of ``input`` [N, C, H, W] (or
    [C, H, W]) by ``weight`` [out_channels, C/groups, kH, kW]. ``padding``: ints, "valid" or
    "same" (stride 1 only); ``groups`` splits the channels (``groups == C``: depthwise)."""
    op = "conv2d"
    x, added = _batched(op, input, 2)
    _check_conv(op, x, weight, bias, groups, transposed=False)
    stride = _tuple(op, "stride", stride, 2, 1)
    dilation = _tuple(op, "dilation", dilation, 2, 1)
    kernel = tuple(weight.shape[2:])
    pads = _conv_padding(op, padding, kernel, dilation, stride, 2)
    _check_kernel_fits(op, x, kernel, dilation, pads)
    return _unbatched(_conv2d(x, weight, bias, stride, pads, dilation, groups), added)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of ``input`` [N, C, L] (or [C, L]) by ``weight`` [out_channels,
    C/groups, K]: ``conv2d`` over [N, C, 1, L]."""
    op = "conv1d"
    x, added = _batched(op, input, 1)
    _check_conv(op, x, weight, bias, groups, transposed=False)
    stride = (1,) + _tuple(op, "stride", stride, 1, 1)
    dilation = (1,) + _tuple(op, "dilation", dilation, 1, 1)
    kernel = (1,) + tuple(weight.shape[2:])
    pads = ((0, 0),) + _conv_padding(op, padding, kernel[1:], dilation[1:], stride[1:], 1)
    x4 = api.unsqueeze(x, 2)
    _check_kernel_fits(op, x4, kernel, dilation, pads)
    out = _conv2d(x4, api.unsqueeze(weight, 2), bias, stride, pads, dilation, groups)
    return _unbatched(api.squeeze(out, 2), added)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-D convolution (the gradient of ``conv2d`` with respect to its input) of
    ``input`` [N, C_in, H, W] by ``weight`` [C_in, out_channels/groups, kH, kW]; the output
    has ``(H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1`` rows."""
    op = "conv_transpose2d"
    x, added = _batched(op, input, 2)
    out_channels = _check_conv(op, x, weight, bias, groups, transposed=True)
    stride = _tuple(op, "stride", stride, 2, 1)
    padding = _tuple(op, "padding", padding, 2, 0)
    output_padding = _tuple(op, "output_padding", output_padding, 2, 0)
    dilation = _tuple(op, "dilation", dilation, 2, 1)
    if any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        raise _option_error(op, f"output padding must be smaller than either stride or "
                                f"dilation, but got output_padding={output_padding}, "
                                f"stride={stride}, dilation={dilation}")
    n, cin, h, w = x.shape
    kh, kw = weight.shape[2:]
    size = tuple((i - 1) * s - 2 * p + d * (k - 1) + o + 1 for i, s, p, d, k, o in
                 zip((h, w), stride, padding, dilation, (kh, kw), output_padding))
    if any(s < 1 for s in size):
        raise ShapeError(f"the output size {size} is too small (input of shape {tuple(x.shape)}, "
                         f"weight {tuple(weight.shape)}, stride {stride}, padding {padding}, "
                         f"dilation {dilation}, output_padding {output_padding})", op=op)
    # The input seen as [C_in, N*H*W], so each group is ONE matrix product over the batch
    # whose result is the windows in the "CN" layout [OC, KH, KW, N, H, W].
    k = out_channels // groups * kh * kw
    xc = api.reshape(api.permute(x, (1, 0, 2, 3)), (cin, n * h * w))
    if groups == 1:
        w_t = api.transpose(api.reshape(weight, (cin, k)), 0, 1)            # [OC*K, C_in]
        cols = api.matmul(w_t, xc)                                           # [OC*K, N*HW]
    else:
        w_t = api.transpose(api.reshape(weight, (groups, cin // groups, k)), 1, 2)
        cols = api.matmul(w_t, api.reshape(xc, (groups, cin // groups, n * h * w)))
    cols = api.reshape(cols, (out_channels, kh, kw, n, h, w))
    # fold is the adjoint of a convolution over the output: padding p before and p - op after
    # (the output_padding rows are real rows that can receive values). Where that is
    # negative, fold a smaller output and append the zero rows nothing reaches.
    after = tuple(p - o for p, o in zip(padding, output_padding))
    folded = tuple(s + min(a, 0) for s, a in zip(size, after))
    pads = (padding[0], max(after[0], 0), padding[1], max(after[1], 0))
    out = _fold_op(cols, folded, (kh, kw), dilation, stride, pads, layout="CN")
    out = _zero_pad_end(out, (0, 0, size[0] - folded[0], size[1] - folded[1]))
    if bias is not None:
        out = api.add(out, api.reshape(bias, (out_channels, 1, 1)))
    return _unbatched(out, added)


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """PyTorch's ``F.unfold``: the sliding blocks of ``input`` [N, C, H, W] (or [C, H, W]) as
    columns, [N, C * kH * kW, L] with L the number of blocks."""
    op = "unfold"
    x, added = _batched(op, input, 2)
    kernel = _tuple(op, "kernel_size", kernel_size, 2, 1)
    dilation = _tuple(op, "dilation", dilation, 2, 1)
    padding = _tuple(op, "padding", padding, 2, 0)
    stride = _tuple(op, "stride", stride, 2, 1)
    cols = _unfold_op(x, kernel, dilation, stride, (padding[0],) * 2 + (padding[1],) * 2)
    n, c, kh, kw, oh, ow = cols.shape
    return _unbatched(api.reshape(cols, (n, c * kh * kw, oh * ow)), added)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """PyTorch's ``F.fold``: columns [N, C * kH * kW, L] (or [C * kH * kW, L]) summed back
    into an image [N, C, *output_size], overlapping blocks added."""
    op = "fold"
    if len(input.shape) not in (2, 3):
        raise ShapeError(f"expected 2-D (unbatched) or 3-D (batched) input, got input of shape "
                         f"{tuple(input.shape)}", op=op)
    added = len(input.shape) == 2
    cols = api.unsqueeze(input, 0) if added else input
    size = _tuple(op, "output_size", output_size, 2, 1)
    kernel = _tuple(op, "kernel_size", kernel_size, 2, 1)
    dilation = _tuple(op, "dilation", dilation, 2, 1)
    padding = _tuple(op, "padding", padding, 2, 0)
    stride = _tuple(op, "stride", stride, 2, 1)
    n, ck, length = cols.shape
    if ck % (kernel[0] * kernel[1]):
        raise ShapeError(f"expected size of input's dimension 1 to be divisible by the product "
                         f"of kernel_size {kernel}, but got input of shape "
                         f"{tuple(input.shape)}", op=op)
    pads = (padding[0],) * 2 + (padding[1],) * 2
    oh, ow = window_counts(op, size, kernel, dilation, stride, pads, tuple(input.shape))
    if oh * ow != length:
        raise ShapeError(f"given output_size={size}, kernel_size={kernel}, dilation={dilation}, "
                         f"padding={padding}, stride={stride}, expected size of input's "
                         f"dimension 2 to match the calculated number of sliding blocks "
                         f"{oh} * {ow} = {oh * ow}, but got input of shape {tuple(input.shape)}",
                         op=op)
    c = ck // (kernel[0] * kernel[1])
    out = _fold_op(api.reshape(cols, (n, c) + kernel + (oh, ow)), size, kernel, dilation, stride,
                   pads)
    return _unbatched(out, added)


# ---- batch norm -----------------------------------------------------------------------------

def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation of [N, C, *] over every dim but C.

    ``training``: normalise by the batch's mean and biased variance, and (when given) update
    ``running_mean``/``running_var`` in place, under no_grad, to ``(1 - momentum) * running
    + momentum * batch statistic`` with the unbiased variance. ``momentum`` may be a 0-d
    tensor (``BatchNorm``'s cumulative average, momentum=None, passes 1 / batches seen).
    Otherwise normalise by the running statistics. Then ``* weight + bias`` when given."""
    op = "batch_norm"
    x = input
    _require_float(op, "input", x)
    if len(x.shape) < 2:
        raise ShapeError(f"expected an input of at least 2 dims [N, C, *], got shape "
                         f"{tuple(x.shape)}", op=op)
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"{name} of shape {tuple(t.shape)} must have shape ({c},), one "
                             f"entry per channel of the input of shape {tuple(x.shape)}", op=op)
    if (running_mean is None) != (running_var is None):
        raise _option_error(op, "running_mean and running_var must be given together")
    if not training and running_mean is None:
        raise _option_error(op, "running_mean and running_var must be given when training is "
                                "False")
    dims = (0,) + tuple(range(2, len(x.shape)))
    count = 1
    for d in dims:
        count *= x.shape[d]
    stat_shape = (1, c) + (1,) * (len(x.shape) - 2)
    if training:
        if count <= 1:
            raise _option_error(op, f"expected more than 1 value per channel when training, "
                                    f"got input of shape {tuple(x.shape)}")
        mean = api.mean(x, dims, keepdim=True)
        centred = api.sub(x, mean)
        square_sum = api.sum(api.mul(centred, centred), dims, keepdim=True)
        var = api.div(square_sum, count)
        if running_mean is not None:
            with no_grad():
                _blend(running_mean, api.reshape(mean, (c,)), momentum)
                _blend(running_var, api.reshape(api.div(square_sum, count - 1), (c,)), momentum)
    else:
        mean = api.reshape(running_mean, stat_shape)
        var = api.reshape(running_var, stat_shape)
        centred = api.sub(x, mean)
    out = api.mul(centred, api.rsqrt(api.add(var, eps)))
    if weight is not None:
        out = api.mul(out, api.reshape(weight, stat_shape))
    if bias is not None:
        out = api.add(out, api.reshape(bias, stat_shape))
    return out


def _blend(running, batch, momentum):
    """running <- momentum * batch + (1 - momentum) * running, in place (PyTorch's order)."""
    if api.is_value(momentum):
        momentum = api.cast(momentum, running.dtype)
    keep = api.sub(1.0, momentum) if api.is_value(momentum) else 1.0 - momentum
    running.copy_(api.add(api.mul(batch, momentum), api.mul(running, keep)))
