"""graphjit.nn: module bookkeeping, layers, losses and init, against NumPy references.

Values are compared with float64 NumPy computations written here; gradients with float64
central finite differences (``check_grad`` below, independent of graphjit.testing).
"""
import copy
import math
from collections import OrderedDict

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F


def f64(a, requires_grad=False):
    return gj.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def close(actual, expected, rtol=1e-12, atol=1e-12):
    if isinstance(actual, gj.Tensor):
        actual = actual.detach().numpy()
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol)


def check_grad(fn, *arrays, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Autograd's gradient of ``fn`` (float64 tensors -> tensor) at ``arrays`` against central
    finite differences. A non-scalar output is contracted with fixed random weights first,
    so every output element's gradient counts."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    probe = fn(*[f64(a) for a in arrays])
    w = np.random.default_rng(123).uniform(0.5, 1.5, size=tuple(probe.shape))

    def scalar(*tensors):
        return (fn(*tensors) * f64(w)).sum()

    inputs = [f64(a, requires_grad=True) for a in arrays]
    scalar(*inputs).backward()
    for k, (a, t) in enumerate(zip(arrays, inputs)):
        assert t.grad is not None, f"no gradient reached input {k}"
        numeric = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            hi, lo = [x.copy() for x in arrays], [x.copy() for x in arrays]
            hi[k][i] += eps
            lo[k][i] -= eps
            numeric[i] = (scalar(*map(f64, hi)).item() - scalar(*map(f64, lo)).item()) / (2 * eps)
        np.testing.assert_allclose(t.grad.numpy(), numeric, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {k}")


# ---- modules --------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.register_buffer("scale", gj.ones(4))
        self.register_buffer("scratch", gj.zeros(2), persistent=False)
        self.register_buffer("steps", gj.tensor([0]))

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
    assert [n for n, _ in net.named_parameters(prefix="m", recurse=True)][0] == "m.block.fc.weight"
    assert list(net.block.named_parameters(recurse=False)) == []
    assert [n for n, _ in net.named_buffers()] == ["block.scale", "block.scratch", "block.steps"]
    assert len(list(net.buffers())) == 3
    # PyTorch's order: a module's own entries, then its children's; a shared module appears
    # under each of its names; non-persistent buffers are left out.
    assert list(net.state_dict()) == ["block.scale", "block.steps", "block.fc.weight",
                                      "block.fc.bias", "head.1.weight", "head.1.bias",
                                      "shared.weight", "shared.bias"]
    assert [n for n, _ in net.named_children()] == ["block", "head", "shared"]
    assert [type(c).__name__ for c in net.children()] == ["Block", "Sequential", "Linear"]
    assert [n for n, _ in net.named_modules()] == ["", "block", "block.fc", "head", "head.0",
                                                  "head.1"]
    assert len(list(net.modules())) == 6
    assert net.get_submodule("head.1") is net.head[1]
    assert isinstance(net.block.fc.weight, nn.Parameter)
    assert "fc" in net.block._modules and "weight" in net.block.fc._parameters
    assert "scale" in net.block._buffers and "scale" not in net.block.__dict__


def test_shared_parameter_listed_once():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight
    seq = nn.Sequential(a, b)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_setattr_none_delattr_and_plain_attributes():
    lin = nn.Linear(2, 3)
    lin.bias = None
    assert lin.bias is None and "bias" in lin._parameters
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert list(lin.state_dict()) == ["weight"]
    assert lin(gj.zeros(1, 2)).shape == (1, 3)
    with pytest.raises(TypeError):
        lin.weight = gj.zeros(3, 2)  # a plain tensor cannot replace a parameter
    lin.bias = nn.Parameter(gj.zeros(3))
    assert "bias" in lin._parameters and lin.bias.requires_grad
    del lin.bias
    assert "bias" not in lin._parameters
    with pytest.raises(AttributeError):
        lin.bias
    m = nn.Module()
    m.sub = nn.Tanh()
    m.sub = None
    assert m.sub is None and list(m.children()) == []
    m.note = "plain"
    assert m.note == "plain" and "note" not in m._modules
    m.register_buffer("running", gj.zeros(2))
    m.running = gj.ones(2)  # assigning a tensor to a buffer's name replaces the buffer
    assert m._buffers["running"].tolist() == [1.0, 1.0]
    with pytest.raises(KeyError):
        m.register_buffer("a.b", gj.zeros(1))
    with pytest.raises(TypeError):
        m.register_parameter("p", gj.zeros(1))


def test_repr_nested_like_torch():
    net = Net()
    assert repr(net) == (
        "Net(\n"
        "  (block): Block(\n"
        "    (fc): Linear(in_features=3, out_features=4, bias=True)\n"
        "  )\n"
        "  (head): Sequential(\n"
        "    (0): ReLU()\n"
        "    (1): Linear(in_features=4, out_features=2, bias=True)\n"
        "  )\n"
        "  (shared): Linear(in_features=3, out_features=4, bias=True)\n"
        ")")
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"


def test_train_eval_flags_propagate():
    seen = []

    class Tracks(nn.Module):
        def train(self, mode=True):
            seen.append(mode)
            return super().train(mode)

    net = Net()
    net.head.append(Tracks())
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert seen == [False]  # a child's own train() is used
    net.block.train()
    assert net.block.training and net.block.fc.training and not net.training
    net.train()
    assert all(m.training for m in net.modules()) and seen == [False, True]


def test_apply_visits_children_first():
    net = Net()
    order = []
    assert net.apply(lambda m: order.append(type(m).__name__)) is net
    # as in PyTorch, a module held by two parents (net.shared is net.block.fc) is visited twice
    assert order == ["Linear", "Block", "ReLU", "Linear", "Sequential", "Linear", "Net"]
    gj.manual_seed(0)
    net.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
    assert np.all(net.head[1].bias.detach().numpy() == 0)


def test_state_dict_shares_memory_and_round_trips():
    a, b = Net(), Net()
    sd = a.state_dict()
    assert not sd["block.fc.weight"].requires_grad
    assert np.shares_memory(sd["block.fc.weight"].numpy(), a.block.fc.weight.detach().numpy())
    w_before = b.block.fc.weight
    result = b.load_state_dict(sd)
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    assert b.block.fc.weight is w_before  # copied in place
    assert not np.shares_memory(b.block.fc.weight.detach().numpy(), sd["block.fc.weight"].numpy())
    x = gj.randn(5, 3)
    close(b(x), a(x).detach().numpy(), rtol=1e-6, atol=1e-6)
    # copy is under no_grad: the parameters stay leaves.
    assert b.block.fc.weight.is_leaf and b.block.fc.weight.grad_fn is None


def test_load_state_dict_errors_name_keys_and_shapes():
    net = Net()
    sd = net.state_dict()
    bad = dict(sd)
    bad["block.fc.weight"] = gj.zeros(5, 3)
    for strict in (True, False):
        with pytest.raises(gj.ShapeError) as e:
            net.load_state_dict(bad, strict=strict)
        msg = str(e.value)
        assert "block.fc.weight" in msg and "(5, 3)" in msg and "(4, 3)" in msg
    missing = {k: v for k, v in sd.items() if k != "head.1.bias"}
    with pytest.raises(gj.ShapeError, match=r"(?s)missing.*head\.1\.bias"):
        net.load_state_dict(missing)
    extra = dict(sd, bogus=gj.zeros(1))
    with pytest.raises(gj.ShapeError, match="unexpected.*bogus"):
        net.load_state_dict(extra)
    both = dict(missing, bogus=gj.zeros(1))
    with pytest.raises(gj.ShapeError) as e:
        net.load_state_dict(both)
    assert "head.1.bias" in str(e.value) and "bogus" in str(e.value)
    res = net.load_state_dict(both, strict=False)
    assert res.missing_keys == ["head.1.bias"] and res.unexpected_keys == ["bogus"]


def test_load_state_dict_copies_values():
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    dst.load_state_dict({"weight": f64(np.arange(6.0).reshape(2, 3)), "bias": f64([1.0, 2.0])})
    assert dst.weight.dtype is gj.float32  # the model keeps its dtype
    np.testing.assert_array_equal(dst.weight.detach().numpy(), np.arange(6.0).reshape(2, 3))
    res = dst.load_state_dict({"weight": src.weight.detach()}, strict=False)
    assert res.missing_keys == ["bias"]
    np.testing.assert_array_equal(dst.weight.detach().numpy(), src.weight.detach().numpy())
    np.testing.assert_array_equal(dst.bias.detach().numpy(), [1.0, 2.0])


def test_to_double_keeps_parameter_identity():
    net = Net()
    w = net.block.fc.weight
    before = w.detach().numpy().astype(np.float64)
    net(gj.randn(2, 3)).sum().backward()
    assert net.double() is net
    assert net.block.fc.weight is w and w.dtype is gj.float64 and isinstance(w, nn.Parameter)
    assert w.requires_grad and w.grad.dtype is gj.float64
    np.testing.assert_array_equal(w.detach().numpy(), before)
    assert net.block.scale.dtype is gj.float64
    assert net.block.steps.dtype is gj.int64  # integer buffers are left alone
    assert net(gj.randn(2, 3, dtype=gj.float64)).dtype is gj.float64
    assert net.to(gj.float32) is net and w.dtype is gj.float32
    assert net.block.scale.dtype is gj.float32
    net.float()
    assert all(p.dtype is gj.float32 for p in net.parameters())


def test_zero_grad_and_frozen_parameters():
    net = Net()
    net.block.requires_grad_(False)
    assert not any(p.requires_grad for p in net.block.parameters())
    net(gj.randn(3, 3)).sum().backward()
    assert net.block.fc.weight.grad is None and net.block.fc.bias.grad is None
    assert net.head[1].weight.grad is not None
    net.zero_grad(set_to_none=False)
    g = net.head[1].weight.grad
    assert g is not None and np.all(g.numpy() == 0)
    net.zero_grad()
    assert net.head[1].weight.grad is None
    net.requires_grad_()
    net(gj.randn(3, 3)).sum().backward()
    assert net.block.fc.weight.grad is not None


def test_deepcopy_is_independent():
    lin = nn.Linear(2, 2)
    twin = copy.deepcopy(lin)
    assert twin.weight is not lin.weight and isinstance(twin.weight, nn.Parameter)
    np.testing.assert_array_equal(twin.weight.detach().numpy(), lin.weight.detach().numpy())
    nn.init.zeros_(twin.weight)
    assert np.any(lin.weight.detach().numpy() != 0)


# ---- layers and containers --------------------------------------------------------------------

def test_linear_default_init_range_and_forward():
    gj.manual_seed(0)
    lin = nn.Linear(50, 30)
    bound = 1 / math.sqrt(50)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert w.shape == (30, 50) and b.shape == (30,) and lin.weight.dtype is gj.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound  # uniform over the whole range, not a smaller one
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
    x = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
    close(lin(gj.tensor(x)), x.astype(np.float64) @ w.T + b, rtol=1e-5, atol=1e-5)
    assert lin(gj.randn(2, 3, 50)).shape == (2, 3, 30)
    assert nn.Linear(3, 2, bias=False).bias is None
    assert nn.Linear(3, 2, dtype=gj.float64).weight.dtype is gj.float64
    gj.manual_seed(7)
    a = nn.Linear(4, 3).weight.detach().numpy().copy()
    gj.manual_seed(7)
    np.testing.assert_array_equal(nn.Linear(4, 3).weight.detach().numpy(), a)


def test_linear_gradients(rng):
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=2)
    close(F.linear(f64(x), f64(w), f64(b)), x @ w.T + b)
    check_grad(lambda x, w, b: F.linear(x, w, b), x, w, b)


def test_sequential_indexing_and_editing():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    assert isinstance(seq[1], nn.Tanh) and seq[-1] is seq[2] and seq[-3] is seq[0]
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and len(tail) == 2 and tail[0] is seq[1]
    assert list(tail._modules) == ["1", "2"]  # a slice keeps the original names
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(IndexError):
        seq[-4]
    assert [type(m).__name__ for m in seq] == ["Linear", "Tanh", "Linear"]
    x = gj.randn(4, 2)
    close(seq(x), seq[2](seq[1](seq[0](x))).detach().numpy())
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and list(seq._modules) == ["0", "1", "2", "3"]
    assert len(list(seq.parameters())) == 4
    del seq[1]
    assert list(seq._modules) == ["0", "1", "2"] and isinstance(seq[1], nn.Linear)
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    assert named[0] is named.fc and isinstance(named[-1], nn.ReLU)


def test_module_list_and_dict_register_parameters():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 3)})

    s = Stack()
    names = [n for n, _ in s.named_parameters()]
    assert names[:2] == ["layers.0.weight", "layers.0.bias"] and "heads.b.bias" in names
    assert len(names) == 10
    assert len(s.layers) == 3 and s.layers[-1] is list(s.layers)[2]
    s.layers.append(nn.Tanh())
    assert len(s.layers) == 4 and isinstance(s.layers[3], nn.Tanh)
    s.layers.insert(0, nn.ReLU())
    assert isinstance(s.layers[0], nn.ReLU)
    assert list(s.layers._modules) == [str(i) for i in range(5)]
    with pytest.raises(IndexError):
        s.layers[5]
    assert list(s.heads.keys()) == ["a", "b"] and "a" in s.heads and len(s.heads) == 2
    s.heads["c"] = nn.Identity()
    assert list(s.heads) == ["a", "b", "c"]
    del s.heads["a"]
    assert [n for n, _ in s.named_parameters()][-2:] == ["heads.b.weight", "heads.b.bias"]


def _np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _np_gelu(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))


@pytest.mark.parametrize("module, ref", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.ReLU(inplace=True), lambda x: np.maximum(x, 0)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    (nn.LeakyReLU(), lambda x: np.where(x > 0, x, 0.01 * x)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.Softplus(beta=2.0), lambda x: np.logaddexp(0, 2 * x) / 2),
    (nn.GELU(), _np_gelu),
    (nn.GELU(approximate="tanh"),
     lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
    (nn.Softmax(dim=1), lambda x: np.exp(_np_log_softmax(x, 1))),
    (nn.Softmax(dim=0), lambda x: np.exp(_np_log_softmax(x, 0))),
    (nn.Softmax(), lambda x: np.exp(_np_log_softmax(x, 1))),  # torch's implicit dim for 2-d
    (nn.LogSoftmax(dim=1), lambda x: _np_log_softmax(x, 1)),
    (nn.LogSoftmax(dim=-2), lambda x: _np_log_softmax(x, 0)),
    (nn.Flatten(), lambda x: x.reshape(x.shape[0], -1)),
    (nn.Identity(), lambda x: x),
])
def test_activation_modules(module, ref, rng):
    x = rng.normal(size=(3, 4)) * 2
    close(module(f64(x)), ref(x), rtol=1e-10, atol=1e-12)


def test_softmax_implicit_dim_follows_torch(rng):
    # Without a dim PyTorch uses 0 for 0-, 1- and 3-d input, else 1.
    for shape, dim in [((4,), 0), ((2, 3, 4), 0), ((2, 3, 4, 2), 1)]:
        x = rng.normal(size=shape)
        close(nn.Softmax()(f64(x)), np.exp(_np_log_softmax(x, dim)))
        close(nn.LogSoftmax()(f64(x)), _np_log_softmax(x, dim))


def test_softplus_threshold_and_flatten_dims(rng):
    x = np.array([-30.0, -1.0, 0.5, 25.0])
    close(nn.Softplus(threshold=5.0)(f64(x)), np.where(x > 5, x, np.logaddexp(0, x)))
    y = rng.normal(size=(2, 3, 4, 5))
    assert nn.Flatten()(f64(y)).shape == (2, 60)
    assert nn.Flatten(0, 1)(f64(y)).shape == (6, 4, 5)
    assert nn.Flatten(1, 2)(f64(y)).shape == (2, 12, 5)


@pytest.mark.parametrize("fn", [F.relu, F.tanh, F.sigmoid, F.silu, F.gelu,
                                lambda x: F.gelu(x, approximate="tanh"),
                                lambda x: F.leaky_relu(x, 0.1), lambda x: F.softplus(x, 1.5),
                                lambda x: F.softmax(x, 1), lambda x: F.log_softmax(x, 0)])
def test_activation_gradients(fn, rng):
    x = rng.normal(size=(2, 3))
    x[np.abs(x) < 0.05] = 0.3  # keep away from relu's kink
    check_grad(fn, x)


# ---- losses -----------------------------------------------------------------------------------

REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1(reduction, rng):
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    red = REDUCE[reduction]
    close(nn.MSELoss(reduction=reduction)(f64(a), f64(b)), red((a - b) ** 2))
    close(F.mse_loss(f64(a), f64(b), reduction=reduction), red((a - b) ** 2))
    close(nn.L1Loss(reduction=reduction)(f64(a), f64(b)), red(np.abs(a - b)))
    check_grad(lambda x, y: F.mse_loss(x, y, reduction=reduction), a, b)
    check_grad(lambda x, y: F.l1_loss(x, y, reduction=reduction), a, b)


def _np_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
    """Reference for class-index targets; x [N, C, ...], t [N, ...]."""
    c = x.shape[1]
    logp = _np_log_softmax(x, 1)
    w = np.ones(c) if weight is None else np.asarray(weight)
    keep = t != ignore_index
    ts = np.where(keep, t, 0)
    picked = np.take_along_axis(logp, ts[:, None], 1)[:, 0]
    nll = -picked * w[ts] * keep
    w_shape = [1] * x.ndim
    w_shape[1] = c
    smooth = -(logp * w.reshape(w_shape)).sum(1) * keep
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
    w = rng.uniform(0.2, 3.0, 4) if weighted else None
    loss = nn.CrossEntropyLoss(weight=None if w is None else f64(w), reduction=reduction,
                               label_smoothing=smoothing)(f64(x), gj.tensor(t))
    expected = _np_cross_entropy(x, t, w, -100, reduction, smoothing)
    close(loss, expected)
    check_grad(lambda x: F.cross_entropy(x, gj.tensor(t), weight=None if w is None else f64(w),
                                         reduction=reduction, label_smoothing=smoothing), x)


def test_cross_entropy_weighted_mean_is_not_plain_mean(rng):
    # PyTorch divides by the summed weights of the counted targets, not by N.
    x = rng.normal(size=(4, 3))
    t = np.array([0, 2, 2, 1])
    w = np.array([1.0, 2.0, 5.0])
    per = -_np_log_softmax(x, 1)[np.arange(4), t] * w[t]
    loss = F.cross_entropy(f64(x), gj.tensor(t), weight=f64(w))
    close(loss, per.sum() / w[t].sum())
    assert abs(loss.item() - per.mean()) > 1e-3


def test_cross_entropy_ignore_index(rng):
    x = rng.normal(size=(5, 3))
    t = np.array([1, 7, 0, 7, 2])
    loss = F.cross_entropy(f64(x), gj.tensor(t), ignore_index=7, reduction="none")
    close(loss, _np_cross_entropy(x, t, ignore_index=7, reduction="none"))
    assert loss.tolist()[1] == 0.0 and loss.tolist()[3] == 0.0
    close(F.cross_entropy(f64(x), gj.tensor(t), ignore_index=7),
          _np_cross_entropy(x, t, ignore_index=7))
    xg = f64(x, requires_grad=True)
    F.cross_entropy(xg, gj.tensor(t), ignore_index=7).backward()
    assert np.all(xg.grad.numpy()[[1, 3]] == 0)


def test_cross_entropy_huge_logits_are_finite():
    huge = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4], [-1e4, -1e4, -1e4]])
    t = np.array([1, 2, 0])
    x = f64(huge, requires_grad=True)
    loss = F.cross_entropy(x, gj.tensor(t), reduction="none")
    close(loss, [1e4, math.log(2.0), math.log(3.0)])
    loss.sum().backward()
    probs = np.exp(_np_log_softmax(huge, 1))
    close(x.grad, probs - np.eye(3)[t])
    for smoothing in (0.0, 0.1):
        out = F.cross_entropy(f64(huge), gj.tensor(t), label_smoothing=smoothing)
        close(out, _np_cross_entropy(huge, t, smoothing=smoothing))
    x32 = gj.tensor(huge.astype(np.float32))
    assert np.isfinite(F.cross_entropy(x32, gj.tensor(t)).item())


def test_cross_entropy_probability_targets(rng):
    x = rng.normal(size=(4, 3))
    p = rng.dirichlet(np.ones(3), size=4)
    logp = _np_log_softmax(x, 1)
    close(F.cross_entropy(f64(x), f64(p)), -(p * logp).sum(1).mean())
    close(nn.CrossEntropyLoss(reduction="none")(f64(x), f64(p)), -(p * logp).sum(1))
    close(F.cross_entropy(f64(x), f64(p), reduction="sum"), -(p * logp).sum())
    smoothed = p * 0.9 + 0.1 / 3
    close(F.cross_entropy(f64(x), f64(p), label_smoothing=0.1), -(smoothed * logp).sum(1).mean())
    w = np.array([0.5, 1.0, 2.0])
    close(F.cross_entropy(f64(x), f64(p), weight=f64(w)), -(p * logp * w).sum(1).mean())
    check_grad(lambda x, p: F.cross_entropy(x, p, weight=f64(w), label_smoothing=0.1), x, p)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_spatial_dims(reduction, rng):
    x = rng.normal(size=(2, 3, 4))
    t = rng.integers(0, 3, size=(2, 4))
    t[0, 1] = -100
    w = np.array([0.3, 1.0, 2.0])
    loss = F.cross_entropy(f64(x), gj.tensor(t), weight=f64(w), reduction=reduction,
                           label_smoothing=0.1)
    close(loss, _np_cross_entropy(x, t, w, reduction=reduction, smoothing=0.1))
    if reduction == "mean":
        check_grad(lambda x: F.cross_entropy(x, gj.tensor(t), weight=f64(w)), x)


def test_cross_entropy_unbatched(rng):
    x = rng.normal(size=4)
    close(F.cross_entropy(f64(x), gj.tensor(2)), -_np_log_softmax(x, 0)[2])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(reduction, rng):
    logp = _np_log_softmax(rng.normal(size=(5, 4)), 1)
    t = np.array([3, 0, -1, 2, 0])
    w = np.array([1.0, 0.5, 2.0, 3.0])
    keep = t != -1
    ts = np.where(keep, t, 0)
    per = -logp[np.arange(5), ts] * w[ts] * keep
    expected = {"none": per, "sum": per.sum(), "mean": per.sum() / (w[ts] * keep).sum()}[reduction]
    loss = nn.NLLLoss(weight=f64(w), ignore_index=-1, reduction=reduction)(f64(logp), gj.tensor(t))
    close(loss, expected)
    check_grad(lambda v: F.nll_loss(v, gj.tensor(t), weight=f64(w), ignore_index=-1,
                                    reduction=reduction), logp)
    t2 = gj.tensor(rng.integers(0, 4, 5))
    close(F.nll_loss(F.log_softmax(f64(logp), 1), t2), F.cross_entropy(f64(logp), t2).item())


def _np_bce_logits(x, y, weight=None, pos_weight=None):
    log_sig = -np.logaddexp(0, -x)
    log_one_minus = -np.logaddexp(0, x)
    pw = 1.0 if pos_weight is None else pos_weight
    out = -(pw * y * log_sig + (1 - y) * log_one_minus)
    return out if weight is None else out * weight


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [None, [0.5, 2.0, 3.0]])
def test_bce_with_logits(reduction, pos_weight, rng):
    x = rng.normal(size=(4, 3)) * 3
    y = rng.uniform(size=(4, 3))
    pw = None if pos_weight is None else np.array(pos_weight)
    w = rng.uniform(0.5, 2.0, size=(4, 3))
    loss = nn.BCEWithLogitsLoss(weight=f64(w), reduction=reduction,
                                pos_weight=None if pw is None else f64(pw))(f64(x), f64(y))
    close(loss, REDUCE[reduction](_np_bce_logits(x, y, w, pw)))
    check_grad(lambda v, t: F.binary_cross_entropy_with_logits(
        v, t, reduction=reduction, pos_weight=None if pw is None else f64(pw)), x, y)


def test_bce_with_logits_stable_and_exact_gradient_at_zero():
    x = np.array([[-1e4, 0.0, 1e4], [1e4, -1e4, 0.0], [30.0, -30.0, 0.0]])
    y = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.3, 0.0, 0.5]])
    xt = f64(x, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(xt, f64(y), reduction="none")
    close(loss, _np_bce_logits(x, y))
    assert loss.tolist()[0][0] == 0.0 and loss.tolist()[1][0] == 1e4
    loss.sum().backward()
    # d/dx = sigmoid(x) - y, including at x == 0 (where abs/relu have kinks)
    sig = np.exp(-np.logaddexp(0, -x))
    close(xt.grad, sig - y)
    pw = np.array([2.0, 3.0, 4.0])
    xt.grad = None
    F.binary_cross_entropy_with_logits(xt, f64(y), pos_weight=f64(pw), reduction="sum").backward()
    close(xt.grad, (pw * y + 1 - y) * sig - pw * y)


def test_loss_input_errors():
    with pytest.raises(gj.DTypeError, match=r"(?s)cross_entropy.*int64.*float32|"
                                            r"cross_entropy.*float32.*int64"):
        F.cross_entropy(gj.randn(4, 3), gj.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(gj.DTypeError, match="cross_entropy"):
        nn.CrossEntropyLoss()(gj.randn(4, 3), gj.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(gj.ShapeError, match=r"cross_entropy.*(\(4, 3\).*\(5,\)|\(5,\).*\(4, 3\))"):
        F.cross_entropy(gj.randn(4, 3), gj.tensor([0, 1, 2, 1, 0]))
    with pytest.raises(gj.ShapeError, match=r"cross_entropy.*\(4, 2\)"):
        F.cross_entropy(gj.randn(4, 3), gj.randn(4, 2))
    with pytest.raises(gj.ShapeError, match=r"cross_entropy.*\(2,\)"):
        F.cross_entropy(gj.randn(4, 3), gj.tensor([0, 1, 2, 1]), weight=gj.ones(2))
    with pytest.raises(gj.DTypeError, match="nll_loss.*int64"):
        F.nll_loss(gj.randn(4, 3), gj.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(gj.DTypeError, match=r"mse_loss.*int64.*\(3,\)"):
        F.mse_loss(gj.randn(3), gj.tensor([1, 2, 3]))
    with pytest.raises(gj.DTypeError, match="l1_loss"):
        nn.L1Loss()(gj.randn(3), gj.tensor([1, 2, 3]))
    with pytest.raises(gj.ShapeError, match=r"mse_loss.*\(3,\).*\(4,\)"):
        nn.MSELoss()(gj.randn(3), gj.randn(4))
    with pytest.raises(gj.ShapeError, match=r"binary_cross_entropy_with_logits.*\(2, 3\).*\(3,\)"):
        nn.BCEWithLogitsLoss()(gj.randn(2, 3), gj.rand(3))
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


# ---- init -------------------------------------------------------------------------------------

def test_init_functions():
    gj.manual_seed(1)
    w = gj.empty(200, 100)
    assert nn.init.xavier_uniform_(w) is w
    bound = math.sqrt(6 / 300)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.95 * bound
    nn.init.xavier_normal_(w, gain=2.0)
    assert abs(w.numpy().std() - 2 * math.sqrt(2 / 300)) < 0.01
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 100)) < 0.01
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 200)) < 0.01
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    kb = math.sqrt(3) * math.sqrt(2 / 100)
    assert np.abs(w.numpy()).max() <= kb and np.abs(w.numpy()).max() > 0.95 * kb
    nn.init.uniform_(w, -2.0, 3.0)
    assert w.numpy().min() >= -2.0 and w.numpy().max() <= 3.0 and abs(w.numpy().mean() - 0.5) < 0.05
    nn.init.normal_(w, 1.0, 0.5)
    assert abs(w.numpy().mean() - 1.0) < 0.02 and abs(w.numpy().std() - 0.5) < 0.02
    nn.init.constant_(w, 0.5)
    assert np.all(w.numpy() == 0.5)
    nn.init.zeros_(w)
    assert np.all(w.numpy() == 0)
    nn.init.ones_(w)
    assert np.all(w.numpy() == 1)
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert nn.init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert nn.init.calculate_gain("sigmoid") == 1.0
    with pytest.raises(ValueError):
        nn.init.calculate_gain("bogus")


def test_init_on_parameter_keeps_it_a_leaf_and_is_seeded():
    p = nn.Parameter(gj.empty(4, 3))
    gj.manual_seed(3)
    nn.init.normal_(p)
    first = p.detach().numpy().copy()
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    gj.manual_seed(3)
    nn.init.normal_(p)
    np.testing.assert_array_equal(p.detach().numpy(), first)
    p64 = nn.Parameter(gj.empty(3, 3, dtype=gj.float64))
    nn.init.xavier_uniform_(p64)
    assert p64.dtype is gj.float64


# ---- utils ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "op_by_op"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm(norm_type, compiled, rng):
    ga, gb = rng.normal(size=(3, 2)), rng.normal(size=4)
    a, b = nn.Parameter(f64(np.zeros((3, 2)))), nn.Parameter(f64(np.zeros(4)))
    c = nn.Parameter(f64([1.0]))
    a.grad, b.grad = f64(ga), f64(gb)
    flat = np.concatenate([ga.ravel(), gb])
    if norm_type == math.inf:
        norm = np.abs(flat).max()
    else:
        norm = (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    total = nn.utils.clip_grad_norm_([a, b, c], max_norm=0.5, norm_type=norm_type,
                                     compiled=compiled)
    close(total, norm)
    scale = 0.5 / (norm + 1e-6)
    close(a.grad, ga * scale)
    close(b.grad, gb * scale)
    assert c.grad is None
    before = a.grad.numpy().copy()
    nn.utils.clip_grad_norm_(a, max_norm=1e6, norm_type=norm_type,
                             compiled=compiled)  # below the limit: unchanged
    close(a.grad, before)


def test_clip_grad_value_and_vector_round_trip(rng):
    lin = nn.Linear(3, 2).double()
    lin(f64(rng.normal(size=(4, 3)) * 10)).sum().backward()
    g = lin.weight.grad.numpy().copy()
    nn.utils.clip_grad_value_(lin.parameters(), 0.5)
    close(lin.weight.grad, np.clip(g, -0.5, 0.5))
    vec = nn.utils.parameters_to_vector(lin.parameters())
    assert vec.shape == (8,)
    close(vec, np.concatenate([lin.weight.detach().numpy().ravel(), lin.bias.detach().numpy()]))
    nn.utils.vector_to_parameters(f64(np.arange(8.0)), lin.parameters())
    close(lin.bias, [6.0, 7.0])
    close(lin.weight, np.arange(6.0).reshape(2, 3))
    with pytest.raises(gj.ShapeError, match="vector_to_parameters"):
        nn.utils.vector_to_parameters(f64(np.arange(7.0)), lin.parameters())


@pytest.mark.parametrize("fn", [
    lambda x, t: F.cross_entropy(x, t), lambda x, t: F.nll_loss(x.log_softmax(-1), t)])
def test_negative_or_too_large_class_index_is_an_error(fn):
    x = gj.randn(2, 3)
    for bad in (-1, 3):
        with pytest.raises(gj.ShapeError, match=f"target {bad} is out of bounds for 3 classes"):
            fn(x, gj.tensor([bad, 0]))
    fn(x, gj.tensor([-100, 0]))  # ignore_index is fine


def test_gather_negative_index_is_an_error():
    with pytest.raises(gj.ShapeError, match="index -1 is out of bounds for dimension 1 with size 3"):
        gj.gather(gj.randn(2, 3), 1, gj.tensor([[-1], [0]]))


def test_eager_clipping_runs_compiled_programs(rng):
    from graphjit.nn.utils import _COMPILED, _clip_norm, _clip_value
    a = nn.Parameter(f64(np.zeros(5)))
    a.grad = f64(rng.normal(size=5) * 10)
    nn.utils.clip_grad_norm_([a], 1.0)
    nn.utils.clip_grad_value_([a], 0.1)
    assert _COMPILED[_clip_norm].cache_size >= 1 and _COMPILED[_clip_value].cache_size >= 1
    assert np.abs(a.grad.numpy()).max() <= 0.1


def test_clipping_inside_a_compiled_step_matches_eager(rng):
    x, y = f64(rng.normal(size=(6, 3)) * 5), f64(rng.normal(size=(6, 2)) * 5)
    runs = []
    for compiled in (False, True):
        gj.manual_seed(4)
        lin = nn.Linear(3, 2).double()
        opt = gj.optim.SGD(lin.parameters(), lr=0.1)

        def step():
            opt.zero_grad()
            loss = ((lin(x) - y) ** 2).mean()
            loss.backward()
            total = nn.utils.clip_grad_norm_(lin.parameters(), 0.5)
            nn.utils.clip_grad_value_(lin.parameters(), 0.2)
            opt.step()
            return total

        fn = gj.compile(step) if compiled else step
        norms = [fn().item() for _ in range(4)]
        runs.append((norms, lin.weight.detach().numpy().copy()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-10)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-10)
    assert runs[0][0][0] > 0.5  # the clipping did act
