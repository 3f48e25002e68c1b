"""graphjit.nn: module bookkeeping, layers and losses against NumPy references."""
import math

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.testing import assert_close, gradcheck


def f64(a, requires_grad=False):
    return gj.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.register_buffer("scale", gj.ones(4))
        self.register_buffer("scratch", gj.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc(x) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
        self.shared = self.block.fc  # the same module twice: its parameters count once

    def forward(self, x):
        return self.head(self.block(x))


def test_registration_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["block.fc.weight", "block.fc.bias", "head.1.weight", "head.1.bias"]
    assert len(list(net.parameters())) == 4
    assert [n for n, _ in net.named_buffers()] == ["block.scale", "block.scratch"]
    # PyTorch's order: a module's own entries, then its children's; a shared module appears
    # under each of its names; non-persistent buffers are left out.
    assert list(net.state_dict()) == ["block.scale", "block.fc.weight", "block.fc.bias",
                                      "head.1.weight", "head.1.bias", "shared.weight",
                                      "shared.bias"]
    assert [n for n, _ in net.named_children()] == ["block", "head", "shared"]
    assert len(list(net.modules())) == 6  # net, block, fc, head, relu, linear
    assert isinstance(net.block.fc.weight, nn.Parameter)
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_state_dict_shares_memory_and_round_trips():
    a, b = Net(), Net()
    sd = a.state_dict()
    assert not sd["block.fc.weight"].requires_grad
    assert np.shares_memory(sd["block.fc.weight"].numpy(), a.block.fc.weight.detach().numpy())
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = gj.randn(5, 3)
    assert_close(b(x).detach(), a(x).detach())


def test_load_state_dict_errors_name_keys_and_shapes():
    net = Net()
    sd = net.state_dict()
    bad = dict(sd)
    bad["block.fc.weight"] = gj.zeros(5, 3)
    with pytest.raises(gj.ShapeError) as e:
        net.load_state_dict(bad)
    assert "block.fc.weight" in str(e.value) and "(5, 3)" in str(e.value) and "(4, 3)" in str(e.value)
    missing = {k: v for k, v in sd.items() if k != "head.1.bias"}
    with pytest.raises(gj.ShapeError, match="missing.*head.1.bias"):
        net.load_state_dict(missing)
    extra = dict(sd, bogus=gj.zeros(1))
    with pytest.raises(gj.ShapeError, match="unexpected.*bogus"):
        net.load_state_dict(extra)
    res = net.load_state_dict(extra, strict=False)
    assert res.unexpected_keys == ["bogus"]


def test_to_double_keeps_parameter_identity():
    net = Net()
    w = net.block.fc.weight
    before = w.detach().numpy().astype(np.float64)
    net.double()
    assert net.block.fc.weight is w and w.dtype is gj.float64
    np.testing.assert_array_equal(w.detach().numpy(), before)
    assert net.block.scale.dtype is gj.float64
    assert net(gj.randn(2, 3, dtype=gj.float64)).dtype is gj.float64


def test_linear_default_init_range_and_forward():
    gj.manual_seed(0)
    lin = nn.Linear(50, 30)
    bound = 1 / math.sqrt(50)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert w.shape == (30, 50) and b.shape == (30,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.9 * bound  # uniform over the whole range, not a smaller one
    x = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
    assert_close(lin(gj.tensor(x)).detach(), x @ w.T + b, rtol=1e-5, atol=1e-5)
    assert nn.Linear(3, 2, bias=False).bias is None


def test_sequential_indexing():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    assert isinstance(seq[1], nn.Tanh) and seq[-1] is seq[2]
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and len(tail) == 2
    with pytest.raises(IndexError):
        seq[3]
    x = gj.randn(4, 2)
    assert_close(seq(x).detach(), seq[2](seq[1](seq[0](x))).detach())


def test_frozen_parameters_get_no_grad():
    net = Net()
    net.block.requires_grad_(False)
    net(gj.randn(3, 3)).sum().backward()
    assert net.block.fc.weight.grad is None
    assert net.head[1].weight.grad is not None
    net.zero_grad()
    assert net.head[1].weight.grad is None


# ---- losses ---------------------------------------------------------------------------------

def _np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1(reduction, rng):
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    red = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction]
    assert_close(nn.MSELoss(reduction=reduction)(f64(a), f64(b)), red((a - b) ** 2))
    assert_close(F.l1_loss(f64(a), f64(b), reduction=reduction), red(np.abs(a - b)))


def _np_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
    logp = _np_log_softmax(x, 1)
    n, c = x.shape
    w = np.ones(c) if weight is None else weight
    keep = t != ignore_index
    ts = np.where(keep, t, 0)
    nll = -logp[np.arange(n), ts] * w[ts] * keep
    smooth = -(logp * w).sum(1) * keep
    if reduction == "none":
        return (1 - smoothing) * nll + smoothing / c * smooth
    if reduction == "sum":
        return (1 - smoothing) * nll.sum() + smoothing / c * smooth.sum()
    denom = (w[ts] * keep).sum()
    return (1 - smoothing) * nll.sum() / denom + smoothing / c * smooth.sum() / denom


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_class_indices(reduction, weighted, smoothing, rng):
    x = rng.normal(size=(6, 4))
    t = np.array([0, 3, -100, 1, 2, 3])
    w = rng.uniform(0.5, 2.0, 4) if weighted else None
    loss = nn.CrossEntropyLoss(weight=None if w is None else f64(w), reduction=reduction,
                               label_smoothing=smoothing)(f64(x), gj.tensor(t))
    assert_close(loss, _np_cross_entropy(x, t, w, -100, reduction, smoothing), rtol=1e-12, atol=1e-12)


def test_cross_entropy_gradient_and_huge_logits():
    x = f64(np.random.default_rng(3).normal(size=(3, 5)), requires_grad=True)
    t = gj.tensor([4, 0, 2])
    assert gradcheck(lambda x: F.cross_entropy(x, t), (x,))
    huge = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    loss = F.cross_entropy(f64(huge, requires_grad=True), gj.tensor([1, 2]), reduction="none")
    assert_close(loss, np.array([1e4, math.log(2.0)]), rtol=1e-12, atol=1e-12)
    loss.sum().backward()


def test_cross_entropy_probability_targets(rng):
    x = rng.normal(size=(4, 3))
    p = rng.dirichlet(np.ones(3), size=4)
    expected = -(p * _np_log_softmax(x, 1)).sum(1).mean()
    assert_close(F.cross_entropy(f64(x), f64(p)), expected, rtol=1e-12, atol=1e-12)
    smoothed = p * 0.9 + 0.1 / 3
    assert_close(F.cross_entropy(f64(x), f64(p), label_smoothing=0.1),
                 -(smoothed * _np_log_softmax(x, 1)).sum(1).mean(), rtol=1e-12, atol=1e-12)


def test_cross_entropy_spatial_dims(rng):
    x = rng.normal(size=(2, 3, 4))
    t = rng.integers(0, 3, size=(2, 4))
    logp = _np_log_softmax(x, 1)
    expected = -np.take_along_axis(logp, t[:, None, :], 1).mean()
    assert_close(F.cross_entropy(f64(x), gj.tensor(t)), expected, rtol=1e-12, atol=1e-12)


def test_nll_loss_matches_cross_entropy(rng):
    x = rng.normal(size=(5, 4))
    t = gj.tensor(rng.integers(0, 4, 5))
    assert_close(nn.NLLLoss()(F.log_softmax(f64(x), 1), t), F.cross_entropy(f64(x), t),
                 rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pos_weight", [None, [0.5, 2.0, 3.0]])
def test_bce_with_logits_stable(pos_weight, rng):
    x = np.array([[-1e4, 0.3, 1e4], [2.0, -3.0, 0.0]])
    y = np.array([[0.0, 1.0, 1.0], [0.3, 0.0, 1.0]])
    pw = np.ones(3) if pos_weight is None else np.array(pos_weight)
    log_sig = -np.logaddexp(0, -x)
    log_one_minus = -np.logaddexp(0, x)
    expected = -(pw * y * log_sig + (1 - y) * log_one_minus)
    loss = nn.BCEWithLogitsLoss(reduction="none",
                                pos_weight=None if pos_weight is None else f64(pw))(f64(x), f64(y))
    assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    xs = f64(rng.normal(size=(2, 3)), requires_grad=True)
    assert gradcheck(lambda v: F.binary_cross_entropy_with_logits(v, f64(y)), (xs,))


def test_loss_input_errors():
    with pytest.raises(gj.DTypeError, match="int64"):
        F.cross_entropy(gj.randn(4, 3), gj.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(gj.ShapeError, match=r"\(4, 3\).*\(5,\)|\(5,\).*\(4, 3\)"):
        F.cross_entropy(gj.randn(4, 3), gj.tensor([0, 1, 2, 1, 0]))
    with pytest.raises(gj.DTypeError, match="mse_loss"):
        F.mse_loss(gj.randn(3), gj.tensor([1, 2, 3]))
    with pytest.raises(gj.ShapeError, match=r"mse_loss.*\(3,\).*\(4,\)"):
        nn.MSELoss()(gj.randn(3), gj.randn(4))


@pytest.mark.parametrize("module, ref", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.Softplus(beta=2.0), lambda x: np.logaddexp(0, 2 * x) / 2),
    (nn.GELU(approximate="tanh"),
     lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
    (nn.Softmax(dim=1), lambda x: np.exp(_np_log_softmax(x, 1))),
    (nn.LogSoftmax(dim=1), lambda x: _np_log_softmax(x, 1)),
    (nn.Flatten(), lambda x: x.reshape(x.shape[0], -1)),
    (nn.Identity(), lambda x: x),
])
def test_activation_modules(module, ref, rng):
    x = rng.normal(size=(3, 4))
    assert_close(module(f64(x)), ref(x), rtol=1e-12, atol=1e-12)


def test_init_functions():
    gj.manual_seed(1)
    w = gj.empty(200, 100)
    nn.init.xavier_uniform_(w)
    bound = math.sqrt(6 / 300)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.95 * bound
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 100)) < 0.01
    nn.init.constant_(w, 0.5)
    assert np.all(w.numpy() == 0.5)
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
