"""The losses of issue 21 (binary_cross_entropy, smooth_l1, huber, kl_div, cosine similarity
and embedding loss, cross_entropy's options) against NumPy formulas written here from
PyTorch's documentation (eager; compiled in test_compiled_layers.py)."""
import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.testing import gradcheck
from nn_reference import close, f64, npy


def reduce(loss, reduction):
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


REDUCTIONS = ["none", "mean", "sum"]


# ---- binary cross-entropy ------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy(reduction, rng):
    x = rng.uniform(0.05, 0.95, (3, 4))
    x[0, :3] = [0.0, 1.0, 1e-50]  # log clamped at -100, gradient still finite
    t = rng.uniform(0, 1, (3, 4))
    t[0, :3] = [1.0, 0.0, 0.5]
    w = rng.uniform(0.5, 2, (4,))  # broadcast over the rows
    xt = f64(x, requires_grad=True)
    loss = F.binary_cross_entropy(xt, f64(t), weight=f64(w), reduction=reduction)
    with np.errstate(divide="ignore"):
        pointwise = -w * (t * np.maximum(np.log(x), -100)
                          + (1 - t) * np.maximum(np.log1p(-x), -100))
    close(loss, reduce(pointwise, reduction))
    loss.backward(gj.ones_like(loss) if reduction == "none" else None)
    grad = w * (x - t) / np.maximum(x * (1 - x), 1e-12)  # PyTorch's backward formula
    close(xt.grad, grad / (x.size if reduction == "mean" else 1))
    assert np.isfinite(npy(xt.grad)).all()


def test_binary_cross_entropy_gradcheck_and_module(rng):
    x = f64(rng.uniform(0.1, 0.9, (2, 3)), requires_grad=True)
    t = f64(rng.uniform(0, 1, (2, 3)), requires_grad=True)
    assert gradcheck(lambda x, t: F.binary_cross_entropy(x, t, reduction="none"), (x, t))
    m = nn.BCELoss(weight=f64([1.0, 2.0, 3.0]), reduction="sum")
    assert list(m.state_dict()) == ["weight"]
    close(m(x, t), npy(F.binary_cross_entropy(x, t, f64([1.0, 2.0, 3.0]), reduction="sum")))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: all elements of input should be "
                                         r"between 0 and 1"):
        F.binary_cross_entropy(f64([0.5, 1.5]), f64([0.0, 1.0]))
    with pytest.raises(ValueError, match="all elements of target"):
        F.binary_cross_entropy(f64([0.5, 0.5]), f64([0.0, 2.0]))
    with pytest.raises(gj.ShapeError, match=r"binary_cross_entropy: input of shape \(2,\) and "
                                            r"target of shape \(2, 1\)"):
        F.binary_cross_entropy(f64([0.5, 0.5]), f64([[0.0], [1.0]]))


# ---- smooth L1 / Huber ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [1.0, 0.4, 0.0])
def test_smooth_l1_loss(beta, reduction, rng):
    x, t = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    d = np.abs(x - t)
    ref = np.where(d < beta, 0.5 * d ** 2 / max(beta, 1e-300), d - 0.5 * beta)
    close(F.smooth_l1_loss(f64(x), f64(t), reduction=reduction, beta=beta), reduce(ref, reduction))
    close(nn.SmoothL1Loss(reduction, beta)(f64(x), f64(t)), reduce(ref, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [1.0, 0.3, 2.5])
def test_huber_loss(delta, reduction, rng):
    x, t = rng.standard_normal((2, 5)) * 2, rng.standard_normal((2, 5))
    d = np.abs(x - t)
    ref = np.where(d < delta, 0.5 * d ** 2, delta * (d - 0.5 * delta))
    close(F.huber_loss(f64(x), f64(t), reduction=reduction, delta=delta), reduce(ref, reduction))
    close(nn.HuberLoss(reduction, delta)(f64(x), f64(t)), reduce(ref, reduction))


def test_smooth_l1_and_huber_gradients(rng):
    x = f64(rng.standard_normal((2, 4)) * 2, requires_grad=True)
    t = f64(rng.standard_normal((2, 4)))
    assert gradcheck(lambda x: F.smooth_l1_loss(x, t, reduction="none", beta=0.7), (x,))
    assert gradcheck(lambda x: F.huber_loss(x, t, reduction="none", delta=0.7), (x,))
    z = f64([0.5, -2.0], requires_grad=True)  # d = 0 exactly: gradient 0, as in PyTorch
    F.smooth_l1_loss(z, f64([0.5, 1.0]), reduction="sum").backward()
    close(z.grad, [0.0, -1.0])
    with pytest.raises(ValueError, match="smooth_l1_loss does not support negative values for "
                                         "beta"):
        F.smooth_l1_loss(z, z, beta=-1.0)
    with pytest.raises(ValueError, match="huber_loss does not support non-positive values for "
                                         "delta"):
        F.huber_loss(z, z, delta=0.0)


# ---- KL divergence -------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target, rng):
    logits = rng.standard_normal((3, 4))
    inp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    t = rng.dirichlet(np.ones(4), 3)
    t[0, 1] = 0.0  # 0 log 0 = 0
    if log_target:
        tt = np.log(t + 0.1)
        ref = np.exp(tt) * (tt - inp)
    else:
        tt = t
        with np.errstate(divide="ignore", invalid="ignore"):
            ref = np.where(t > 0, t * (np.log(t) - inp), 0.0)
    expected = ref.sum() / 3 if reduction == "batchmean" else reduce(ref, reduction)
    x = f64(inp, requires_grad=True)
    out = F.kl_div(x, f64(tt), reduction=reduction, log_target=log_target)
    close(out, expected)
    close(nn.KLDivLoss(reduction, log_target)(x, f64(tt)), expected)
    out.sum().backward()
    scale = {"none": 1, "sum": 1, "mean": 1 / 12, "batchmean": 1 / 3}[reduction]
    close(x.grad, -np.exp(tt) * scale if log_target else -t * scale)


def test_kl_div_gradcheck_and_errors(rng):
    x = f64(rng.standard_normal((2, 3)), requires_grad=True)
    t = f64(rng.uniform(0.1, 1, (2, 3)), requires_grad=True)
    assert gradcheck(lambda x, t: F.kl_div(x, t, reduction="batchmean"), (x, t))
    with pytest.raises(ValueError, match="'batchmean'"):
        F.kl_div(x, t, reduction="avg")
    with pytest.raises(ValueError, match="L1Loss: reduction must be one of 'none', 'mean', 'sum'"):
        nn.L1Loss(reduction="batchmean")
    close(F.kl_div(x, t, size_average=False), npy(F.kl_div(x, t, reduction="sum")))


# ---- cosine --------------------------------------------------------------------------------------

def test_cosine_similarity(rng):
    x1, x2 = rng.standard_normal((3, 4, 2)), rng.standard_normal((1, 4, 2))  # broadcast
    ref = (x1 * x2).sum(1) / (np.linalg.norm(x1, axis=1) * np.linalg.norm(x2, axis=1))
    close(F.cosine_similarity(f64(x1), f64(x2)), ref)
    close(nn.CosineSimilarity(dim=-1)(f64(x1), f64(x2)),
          (x1 * x2).sum(-1) / (np.linalg.norm(x1, axis=-1) * np.linalg.norm(x2, axis=-1)))
    zero = f64(np.zeros((1, 3)), requires_grad=True)  # max(||x||, eps): 0, finite gradient
    other = f64([[1.0, 2.0, 2.0]])
    out = F.cosine_similarity(zero, other)
    close(out, [0.0])
    out.backward()
    close(zero.grad, [[1 / 3 / 1e-8, 2 / 3 / 1e-8, 2 / 3 / 1e-8]], rtol=1e-9)
    a = f64(rng.standard_normal((2, 3)), requires_grad=True)
    c = f64(rng.standard_normal((2, 3)), requires_grad=True)
    assert gradcheck(lambda a, c: F.cosine_similarity(a, c, dim=1), (a, c))
    with pytest.raises(gj.ShapeError, match="cosine_similarity"):
        F.cosine_similarity(gj.zeros(2, 3), gj.zeros(4, 3))


def test_normalize(rng):
    x = rng.standard_normal((3, 4))
    x[1] = 0.0  # max(||x||, eps): zeros stay zeros
    for p in (2.0, 1.0, 3.0):
        norm = (np.abs(x) ** p).sum(1, keepdims=True) ** (1 / p)
        close(F.normalize(f64(x), p=p), x / np.maximum(norm, 1e-12))
    close(F.normalize(f64(x), dim=0), x / np.linalg.norm(x, axis=0, keepdims=True))
    a = f64(rng.standard_normal((2, 3)), requires_grad=True)
    assert gradcheck(lambda a: F.normalize(a, dim=1), (a,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_embedding_loss(reduction, rng):
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    y = np.array([1, -1, 1, -1])
    cos = (x1 * x2).sum(1) / np.sqrt(((x1 ** 2).sum(1) + 1e-12) * ((x2 ** 2).sum(1) + 1e-12))
    ref = np.where(y == 1, 1 - cos, np.maximum(cos - 0.1, 0))
    out = nn.CosineEmbeddingLoss(margin=0.1, reduction=reduction)(
        f64(x1), f64(x2), gj.tensor(y))
    close(out, reduce(ref, reduction))
    close(F.cosine_embedding_loss(f64(x1[0]), f64(x2[0]), gj.tensor(1)), 1 - cos[0])
    with pytest.raises(gj.ShapeError, match=r"target of shape \(3,\) must have shape \(4,\)"):
        F.cosine_embedding_loss(f64(x1), f64(x2), gj.tensor([1, 1, 1]))


# ---- cross_entropy's options ---------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_weight_label_smoothing_ignore_index(reduction, rng):
    logits = rng.standard_normal((5, 4))
    y = np.array([0, 3, -100, 2, 3])
    w = rng.uniform(0.5, 2.0, 4)
    eps = 0.2
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    keep = y != -100
    ys = np.where(keep, y, 0)
    nll = -w[ys] * logp[np.arange(5), ys] * keep
    smooth = -(logp * w).sum(1) * keep
    if reduction == "mean":
        denom = (w[ys] * keep).sum()
        ref = (1 - eps) * nll.sum() / denom + eps / 4 * smooth.sum() / denom
    else:
        ref = reduce((1 - eps) * nll + eps / 4 * smooth, reduction)
    out = F.cross_entropy(f64(logits), gj.tensor(y), weight=f64(w), label_smoothing=eps,
                          reduction=reduction)
    close(out, ref)
    mod = nn.CrossEntropyLoss(weight=f64(w), label_smoothing=eps, reduction=reduction,
                              ignore_index=-100)
    close(mod(f64(logits), gj.tensor(y)), ref)
