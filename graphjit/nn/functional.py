"""``graphjit.nn.functional``: activations and losses as functions (``torch.nn.functional``).

Everything is written with graphjit ops, so it runs eagerly, traces into graphs and
differentiates with no extra rules.
"""
from __future__ import annotations

from .. import devices, dtypes
from ..errors import DTypeError, ShapeError
from ..ops import api
from ..ops.api import (gelu, leaky_relu, log_softmax, relu, sigmoid, silu, softmax,  # noqa: F401
                       softplus, tanh)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` with ``weight`` of shape [out_features, in_features]."""
    out = api.matmul(input, api.transpose(weight, 0, 1) if len(weight.shape) == 2 else weight)
    return out if bias is None else api.add(out, bias)


def _reduce(loss, reduction: str, op: str):
    if reduction == "none":
        return loss
    if reduction == "mean":
        return api.mean(loss)
    if reduction == "sum":
        return api.sum(loss)
    raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _check_pointwise(op, input, target):
    if tuple(input.shape) != tuple(target.shape):
        raise ShapeError(f"input of shape {tuple(input.shape)} and target of shape "
                         f"{tuple(target.shape)} must have the same shape", op=op)
    for what, t in (("input", input), ("target", target)):
        if not t.dtype.is_floating_point:
            raise DTypeError(f"{what} must be floating point, got {t.dtype.name} of shape "
                             f"{tuple(t.shape)}", op=op)


def mse_loss(input, target, reduction: str = "mean"):
    _check_pointwise("mse_loss", input, target)
    d = api.sub(input, target)
    return _reduce(api.mul(d, d), reduction, "mse_loss")


def l1_loss(input, target, reduction: str = "mean"):
    _check_pointwise("l1_loss", input, target)
    return _reduce(api.abs(api.sub(input, target)), reduction, "l1_loss")


def _class_dim(input, op):
    if len(input.shape) == 0:
        raise ShapeError("input must have a class dimension, got a 0-d tensor", op=op)
    return 0 if len(input.shape) == 1 else 1


def _check_index_target(op, input, target, cdim, ignore_index=-100):
    expected = tuple(s for i, s in enumerate(input.shape) if i != cdim)
    if target.dtype is not dtypes.int64:
        raise DTypeError(f"class-index target must be int64, got {target.dtype.name} of shape "
                         f"{tuple(target.shape)} (input {tuple(input.shape)}); for class "
                         "probabilities pass a float target of the input's shape", op=op)
    if tuple(target.shape) != expected:
        raise ShapeError(f"target of shape {tuple(target.shape)} does not fit input of shape "
                         f"{tuple(input.shape)} (expected {expected})", op=op)
    data = getattr(target, "_data", None)  # None while tracing: values are not known
    data = None if data is None else devices.to_host(data)
    if data is not None and data.size:
        n_classes = input.shape[cdim]
        bad = data[(data != ignore_index) & ((data < 0) | (data >= n_classes))]
        if bad.size:
            raise ShapeError(f"target {int(bad[0])} is out of bounds for {n_classes} classes "
                             f"(input of shape {tuple(input.shape)})", op=op)


def _check_weight(op, weight, input, cdim):
    if weight is None:
        return
    n_classes = input.shape[cdim]
    if tuple(weight.shape) != (n_classes,):
        raise ShapeError(f"class weight of shape {tuple(weight.shape)} must have one entry per "
                         f"class, shape ({n_classes},), for input of shape {tuple(input.shape)}",
                         op=op)
    if not weight.dtype.is_floating_point:
        raise DTypeError(f"class weight must be floating point, got {weight.dtype.name}", op=op)


def _weight_view(weight, input, cdim):
    shape = [1] * len(input.shape)
    shape[cdim] = input.shape[cdim]
    return api.reshape(weight, tuple(shape))


def nll_loss(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean"):
    """Negative log likelihood of class indices, given log-probabilities ``input``."""
    if not input.dtype.is_floating_point:
        raise DTypeError(f"input (log-probabilities) must be floating point, got "
                         f"{input.dtype.name}", op="nll_loss")
    cdim = _class_dim(input, "nll_loss")
    _check_index_target("nll_loss", input, target, cdim, ignore_index)
    _check_weight("nll_loss", weight, input, cdim)
    return _nll(input, target, weight, ignore_index, reduction, "nll_loss")


def _nll(logp, target, weight, ignore_index, reduction, op, smoothing=0.0):
    cdim = _class_dim(logp, op)
    n_classes = logp.shape[cdim]
    keep = api.ne(target, ignore_index)
    safe = api.where(keep, target, 0)
    picked = api.squeeze(api.gather(logp, cdim, api.unsqueeze(safe, cdim)), cdim)
    w = api.cast(keep, logp.dtype)
    if weight is not None:
        w = api.mul(w, api.index(weight, [safe], (("t", 0),)))
    loss = api.neg(api.mul(picked, w))
    if smoothing:
        all_logp = api.mul(logp, _weight_view(weight, logp, cdim)) if weight is not None else logp
        smooth = api.mul(api.neg(api.sum(all_logp, cdim)), api.cast(keep, logp.dtype))
    if reduction == "none":
        if smoothing:
            return api.add(api.mul(loss, 1.0 - smoothing), api.mul(smooth, smoothing / n_classes))
        return loss
    if reduction == "sum":
        total = api.sum(loss)
        if smoothing:
            total = api.add(api.mul(total, 1.0 - smoothing),
                            api.mul(api.sum(smooth), smoothing / n_classes))
        return total
    if reduction != "mean":
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    # PyTorch's weighted mean: divide by the total weight of the targets that count.
    denom = api.sum(w)
    total = api.div(api.sum(loss), denom)
    if smoothing:
        total = api.add(api.mul(total, 1.0 - smoothing),
                        api.mul(api.div(api.sum(smooth), denom), smoothing / n_classes))
    return total


def cross_entropy(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """Cross-entropy of logits ``input`` [N, C, ...] with class indices [N, ...] (int64) or
    class probabilities (float, input's shape). Stable for large logits (log-sum-exp)."""
    if not input.dtype.is_floating_point:
        raise DTypeError(f"input (logits) must be floating point, got {input.dtype.name}",
                         op="cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    cdim = _class_dim(input, "cross_entropy")
    _check_weight("cross_entropy", weight, input, cdim)
    logp = api.log_softmax(input, cdim)
    index_shape = tuple(s for i, s in enumerate(input.shape) if i != cdim)
    if target.dtype.is_floating_point and tuple(target.shape) == index_shape != tuple(input.shape):
        raise DTypeError(f"target of shape {tuple(target.shape)} looks like class indices but is "
                         f"{target.dtype.name}; class indices must be int64 (input "
                         f"{tuple(input.shape)})", op="cross_entropy")
    if target.dtype.is_floating_point:
        if tuple(target.shape) != tuple(input.shape):
            raise ShapeError(f"probability target of shape {tuple(target.shape)} must have the "
                             f"input's shape {tuple(input.shape)} (class indices must be int64)",
                             op="cross_entropy")
        n_classes = input.shape[cdim]
        if label_smoothing:
            target = api.add(api.mul(target, 1.0 - label_smoothing), label_smoothing / n_classes)
        terms = api.mul(logp, target)
        if weight is not None:
            terms = api.mul(terms, _weight_view(weight, input, cdim))
        return _reduce(api.neg(api.sum(terms, cdim)), reduction, "cross_entropy")
    _check_index_target("cross_entropy", input, target, cdim, ignore_index)
    return _nll(logp, target, weight, ignore_index, reduction, "cross_entropy", label_smoothing)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction: str = "mean",
                                     pos_weight=None):
    """``-[t log s(x) + (1 - t) log(1 - s(x))]`` computed stably from logits ``x``."""
    _check_pointwise("binary_cross_entropy_with_logits", input, target)
    # -log sigmoid(x) = max(-x, 0) + log(1 + exp(-|x|)), finite for any x. Both pieces pick
    # their branch with the same `where`, so the gradient at x == 0 is the true one
    # (sigmoid(0) - 1), not a sum of whatever subgradients abs and relu use at 0.
    neg = api.lt(input, 0.0)
    log_sig_neg = api.add(api.where(neg, api.neg(input), 0.0),
                          api.log1p(api.exp(api.where(neg, input, api.neg(input)))))
    if pos_weight is None:
        loss = api.add(api.mul(api.sub(1.0, target), input), log_sig_neg)
    else:
        coef = api.add(api.mul(api.sub(pos_weight, 1.0), target), 1.0)
        loss = api.add(api.mul(api.sub(1.0, target), input), api.mul(coef, log_sig_neg))
    if weight is not None:
        loss = api.mul(loss, weight)
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")
