"""The loss functions of ``graphjit.nn.functional`` (``torch.nn.functional``'s names,
arguments and numbers), written with graphjit ops: they run eagerly, trace and differentiate
with no extra rules. ``graphjit.nn.functional`` re-exports every public name here."""
from __future__ import annotations

from .. import devices, dtypes
from ..errors import DTypeError, ShapeError
from ..ops import api


def _reduce(loss, reduction: str, op: str):
    if reduction == "none":
        return loss
    if reduction == "mean":
        return api.mean(loss)
    if reduction == "sum":
        return api.sum(loss)
    raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _host(t):
    """``t``'s values as a NumPy array, or None while tracing (values are not known then)."""
    data = getattr(t, "_data", None)
    return None if data is None else devices.to_host(data)


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
    data = _host(target)
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


def binary_cross_entropy(input, target, weight=None, reduction: str = "mean"):
    """``-weight * [t log(x) + (1 - t) log(1 - x)]`` of probabilities ``x``, each log clamped
    at -100 as PyTorch does (so ``x`` of exactly 0 or 1 gives a finite loss). The gradient
    with respect to ``x`` is PyTorch's ``weight * (x - t) / max(x (1 - x), 1e-12)``, finite
    at 0 and 1 as well; the one with respect to ``t`` is ``weight * (log(1 - x) - log(x))``.
    Eagerly, values outside [0, 1] are an error (they are not checked inside a compiled
    function). Second derivatives with respect to ``x`` are not supported (they come out 0)."""
    op = "binary_cross_entropy"
    _check_pointwise(op, input, target)
    for what, t in (("input", input), ("target", target)):
        data = _host(t)
        if data is not None and data.size and not ((data >= 0) & (data <= 1)).all():
            raise ValueError(f"{op}: all elements of {what} should be between 0 and 1 (shape "
                             f"{tuple(t.shape)}); for logits use binary_cross_entropy_with_logits")
    x = api.detach(input)
    log_x = api.clamp(api.log(x), min=-100.0)
    log_1mx = api.clamp(api.log1p(api.neg(x)), min=-100.0)
    loss = api.sub(api.mul(api.sub(target, 1.0), log_1mx), api.mul(target, log_x))
    # NOTE: the gradient with respect to x comes from the term (input - x) * coef, which is
    # exactly 0 in the forward pass: autograd through the clamped logs would give 0 * inf =
    # NaN at x = 0 or 1, where PyTorch's formula (coef) stays finite.
    coef = api.div(api.sub(x, api.detach(target)),
                   api.maximum(api.mul(api.sub(1.0, x), x), 1e-12))
    loss = api.add(loss, api.mul(api.sub(input, x), coef))
    if weight is not None:
        loss = api.mul(loss, weight)
    return _reduce(loss, reduction, op)


def _check_nonnegative(op, name, value, strict=False):
    if value < 0 or (strict and value == 0):
        raise ValueError(f"{op} does not support {'non-positive' if strict else 'negative'} "
                         f"values for {name}, got {value}")


def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``, with ``d = x - t``
    (``beta=0`` is the L1 loss)."""
    _check_pointwise("smooth_l1_loss", input, target)
    _check_nonnegative("smooth_l1_loss", "beta", beta)
    d = api.sub(input, target)
    if beta == 0:
        return _reduce(api.abs(d), reduction, "smooth_l1_loss")
    a = api.abs(d)
    loss = api.where(api.lt(a, beta), api.mul(api.mul(d, d), 0.5 / beta), api.sub(a, 0.5 * beta))
    return _reduce(loss, reduction, "smooth_l1_loss")


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0):
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``, with ``d = x - t``."""
    _check_pointwise("huber_loss", input, target)
    _check_nonnegative("huber_loss", "delta", delta, strict=True)
    d = api.sub(input, target)
    a = api.abs(d)
    loss = api.where(api.lt(a, delta), api.mul(api.mul(d, d), 0.5),
                     api.mul(api.sub(a, 0.5 * delta), delta))
    return _reduce(loss, reduction, "huber_loss")


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False):
    """Kullback-Leibler divergence of log-probabilities ``input`` from ``target``:
    ``t (log t - x)`` pointwise, 0 where ``t == 0`` (``exp(t) (t - x)`` with
    ``log_target``). ``reduction='batchmean'`` divides the sum by the batch size (input's
    first dim), which is the true KL divergence; 'mean' divides by the element count, as
    PyTorch does. ``size_average`` / ``reduce`` are PyTorch's deprecated spellings."""
    op = "kl_div"
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce)
    if tuple(input.shape) != tuple(target.shape):
        # PyTorch broadcasts here; graphjit asks for the one shape, which is what users mean.
        raise ShapeError(f"input of shape {tuple(input.shape)} and target of shape "
                         f"{tuple(target.shape)} must have the same shape", op=op)
    if log_target:
        loss = api.mul(api.exp(target), api.sub(target, input))
    else:
        zero = api.eq(target, 0.0)
        safe = api.where(zero, 1.0, target)  # log never sees 0, so no 0 * inf in the gradient
        loss = api.where(zero, 0.0, api.mul(target, api.sub(api.log(safe), input)))
    if reduction == "batchmean":
        batch = input.shape[0] if len(input.shape) else 1
        return api.div(api.sum(loss), batch)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'none', 'batchmean', 'mean' or 'sum', got "
                         f"{reduction!r}")
    return _reduce(loss, reduction, op)


def _legacy_reduction(size_average, reduce) -> str:
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else "mean" if size_average else "sum"


def cosine_embedding_loss(input1, input2, target, margin: float = 0.0, reduction: str = "mean"):
    """``1 - cos(x1, x2)`` where ``target == 1``, ``max(0, cos(x1, x2) - margin)`` where
    ``target == -1``; cos along the last dim, computed as PyTorch does:
    ``x1 . x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))``."""
    op = "cosine_embedding_loss"
    if tuple(input1.shape) != tuple(input2.shape) or len(input1.shape) not in (1, 2):
        raise ShapeError(f"input1 {tuple(input1.shape)} and input2 {tuple(input2.shape)} must "
                         "be of one shape, 1-D or 2-D", op=op)
    if tuple(target.shape) != tuple(input1.shape[:-1]):
        raise ShapeError(f"target of shape {tuple(target.shape)} must have shape "
                         f"{tuple(input1.shape[:-1])} (inputs {tuple(input1.shape)})", op=op)
    dim = len(input1.shape) - 1
    dot = api.sum(api.mul(input1, input2), dim)
    m1 = api.add(api.sum(api.mul(input1, input1), dim), 1e-12)
    m2 = api.add(api.sum(api.mul(input2, input2), dim), 1e-12)
    cos = api.div(dot, api.sqrt(api.mul(m1, m2)))
    pos = api.where(api.eq(target, 1), api.sub(1.0, cos), 0.0)
    neg = api.where(api.eq(target, -1), api.relu(api.sub(cos, margin)), 0.0)
    return _reduce(api.add(pos, neg), reduction, op)
