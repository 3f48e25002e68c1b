"""Batch norm (F.batch_norm, BatchNorm1d/2d): outputs and running statistics over several steps
against NumPy, momentum=None's cumulative average, train/eval, buffers in state_dict, float64
gradcheck, errors, and a compiled training step against eager mode."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn.functional as F
from graphjit import nn
from graphjit.testing import assert_close, gradcheck

from nn_testing import raises_naming, t64

THIS_FILE = os.path.basename(__file__)


class BatchNormRef:
    """PyTorch's batch norm in NumPy: batch statistics (biased variance) normalise in
    training, and the running ones move by momentum with the unbiased variance."""

    def __init__(self, c, momentum=0.1, eps=1e-5):
        self.mean, self.var, self.batches = np.zeros(c), np.ones(c), 0
        self.momentum, self.eps = momentum, eps

    def __call__(self, x, weight=None, bias=None, training=True):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if training:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            n = x.size // x.shape[1]
            self.batches += 1
            m = 1.0 / self.batches if self.momentum is None else self.momentum
            self.mean = (1 - m) * self.mean + m * mean
            self.var = (1 - m) * self.var + m * var * n / (n - 1)
        else:
            mean, var = self.mean, self.var
        out = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + self.eps)
        if weight is not None:
            out = out * weight.reshape(shape) + bias.reshape(shape)
        return out


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (3, 2, 4, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_functional_batch_norm_training_and_eval(shape, affine, rng):
    c = shape[1]
    ref = BatchNormRef(c, momentum=0.3, eps=1e-3)
    rm, rv = t64(np.zeros(c)), t64(np.ones(c))
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    for _ in range(3):
        x = rng.standard_normal(shape) * 2 + 1
        out = F.batch_norm(t64(x), rm, rv, None if w is None else t64(w),
                           None if b is None else t64(b), training=True, momentum=0.3, eps=1e-3)
        assert_close(out, ref(x, w, b), rtol=1e-10, atol=1e-12)
        assert_close(rm, ref.mean, rtol=1e-12, atol=1e-14)
        assert_close(rv, ref.var, rtol=1e-12, atol=1e-14)
    x = rng.standard_normal(shape)
    out = F.batch_norm(t64(x), rm, rv, None if w is None else t64(w),
                       None if b is None else t64(b), training=False, eps=1e-3)
    assert_close(out, ref(x, w, b, training=False), rtol=1e-10, atol=1e-12)
    assert_close(rm, ref.mean, rtol=0, atol=0)  # eval leaves the statistics alone
    assert not rm.requires_grad and rm.grad_fn is None


def test_batch_norm_without_running_stats_and_float32(rng):
    x = rng.standard_normal((6, 4, 3))
    out = F.batch_norm(t64(x), None, None, training=True)
    assert_close(out, BatchNormRef(4)(x), rtol=1e-10, atol=1e-12)
    out32 = F.batch_norm(gj.tensor(x.astype(np.float32)), gj.zeros(4), gj.ones(4),
                         training=True)
    assert out32.dtype is gj.float32
    assert_close(out32, BatchNormRef(4)(x).astype(np.float32), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(training, rng):
    x = t64(rng.standard_normal((3, 2, 2, 2)), True)
    w = t64(rng.standard_normal(2), True)
    b = t64(rng.standard_normal(2), True)
    rm, rv = t64(rng.standard_normal(2)), t64(rng.uniform(0.5, 2.0, size=2))

    def fn(x, w, b):
        # fresh copies: each evaluation starts from the same running statistics
        return F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=training)

    assert gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_module_over_steps(momentum, rng):
    m = nn.BatchNorm2d(3, momentum=momentum).double()
    with gj.no_grad():
        m.weight.copy_(t64(rng.standard_normal(3)))
        m.bias.copy_(t64(rng.standard_normal(3)))
    ref = BatchNormRef(3, momentum=momentum)
    w, b = m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()
    for step in range(4):
        x = rng.standard_normal((2, 3, 3, 2)) + step
        xt = t64(x, True)
        out = m(xt)
        assert_close(out, ref(x, w, b), rtol=1e-10, atol=1e-12)
        out.sum().backward()
        assert m.num_batches_tracked.item() == step + 1
        assert_close(m.running_mean, ref.mean, rtol=1e-12, atol=1e-14)
        assert_close(m.running_var, ref.var, rtol=1e-12, atol=1e-14)
    assert m.num_batches_tracked.dtype is gj.int64
    m.eval()
    x = rng.standard_normal((2, 3, 3, 2))
    assert_close(m(t64(x)), ref(x, w, b, training=False), rtol=1e-10, atol=1e-12)
    assert m.num_batches_tracked.item() == 4
    m.train()
    m(t64(x))
    assert m.num_batches_tracked.item() == 5


def test_batchnorm_options_and_state_dict(rng):
    m = nn.BatchNorm1d(4)
    assert list(m.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                    "num_batches_tracked"]
    assert repr(m) == "BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, " \
                      "track_running_stats=True)"
    assert_close(m.weight, np.ones(4, dtype=np.float32), rtol=0, atol=0)
    assert_close(m.bias, np.zeros(4, dtype=np.float32), rtol=0, atol=0)
    for _ in range(3):
        m(gj.tensor(rng.standard_normal((5, 4)).astype(np.float32)))
    copy = nn.BatchNorm1d(4)
    copy.load_state_dict(m.state_dict())
    assert copy.num_batches_tracked.item() == 3
    x = gj.tensor(rng.standard_normal((5, 4, 2)).astype(np.float32))
    assert_close(copy.eval()(x), m.eval()(x), rtol=0, atol=0)
    m.reset_running_stats()
    assert m.num_batches_tracked.item() == 0 and m.running_var.numpy().tolist() == [1.0] * 4
    plain = nn.BatchNorm1d(4, affine=False, track_running_stats=False)
    assert plain.state_dict() == {} and plain.running_mean is None and plain.weight is None
    y = rng.standard_normal((6, 4))
    plain.eval()  # no running statistics: eval normalises by the batch's
    assert_close(plain(t64(y)), BatchNormRef(4)(y), rtol=1e-10, atol=1e-12)
    assert m.double().num_batches_tracked.dtype is gj.int64  # only floating buffers convert


def test_batchnorm_errors(rng):
    def raises(exc, call, *fragments):
        return raises_naming(exc, call, *fragments, file=THIS_FILE)

    raises(gj.ShapeError, lambda: nn.BatchNorm2d(3)(gj.randn(2, 3, 4)), "BatchNorm2d",
           "4D", "(2, 3, 4)")
    raises(gj.ShapeError, lambda: nn.BatchNorm1d(3)(gj.randn(2, 3, 4, 4)), "BatchNorm1d",
           "2D or 3D")
    raises(gj.ShapeError, lambda: nn.BatchNorm1d(3)(gj.randn(2, 5)), "batch_norm", "(3,)",
           "(2, 5)")
    raises(ValueError, lambda: nn.BatchNorm1d(3)(gj.randn(1, 3)), "batch_norm",
           "more than 1 value per channel")
    raises(ValueError, lambda: F.batch_norm(gj.randn(4, 3), None, None, training=False),
           "batch_norm", "running_mean")
    nn.BatchNorm1d(3).eval()(gj.randn(1, 3))  # one sample is fine in eval mode


def test_compiled_training_step_matches_eager(rng):
    """BatchNorm1d in a compiled step: the running statistics and num_batches_tracked are
    buffers updated in place, as in eager mode; eval() traces again."""
    def make():
        gj.manual_seed(3)
        return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, momentum=None)).double()

    eager, compiled = make(), make()

    def step(model, x):
        model.zero_grad()
        loss = (model(x) ** 2 * gj.arange(3, dtype=gj.float64)).sum()
        loss.backward()
        return loss

    compiled_step = gj.compile(lambda x: step(compiled, x))
    for _ in range(3):
        x = t64(rng.standard_normal((6, 4)))
        assert_close(compiled_step(x), step(eager, x), rtol=1e-10, atol=1e-12)
        for (name, a), b in zip(compiled.state_dict().items(), eager.state_dict().values()):
            assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")
        for p, q in zip(compiled.parameters(), eager.parameters()):
            assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)
    assert compiled[1].num_batches_tracked.item() == 3
    compiled.eval(), eager.eval()
    forward = gj.compile(lambda x: compiled(x))
    x = t64(rng.standard_normal((2, 4)))
    with gj.no_grad():
        assert_close(forward(x), eager(x), rtol=1e-10, atol=1e-12)
    assert compiled[1].num_batches_tracked.item() == 3
