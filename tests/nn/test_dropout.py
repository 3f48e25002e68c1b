"""Dropout and the random numbers behind it: PyTorch's semantics (keep probability, scale,
whole channels for dropout1d/2d, eval mode), eager and compiled drawing the same masks from
the same generator state, and the generator API (manual_seed, get/set_rng_state, fork_rng,
Generator objects)."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.ops.random import to_unit_float, words


def test_uniform_draws_are_numpys_philox():
    # Independent reference: NumPy's Philox4x64 words, one per element, blocks in order.
    g = gj.random.Generator().manual_seed(1234)
    first = gj.rand(10, generator=g)
    second = gj.rand(3, dtype=gj.float64, generator=g)
    raw = np.random.Philox(key=np.array([1234, 0], np.uint64),
                           counter=np.array([2**64 - 1] * 4, np.uint64)).random_raw(16)
    np.testing.assert_array_equal(first.numpy(), ((raw[:10] >> 40) * 2.0 ** -24).astype(np.float32))
    # 10 numbers took 3 blocks (12 words): the second draw starts at block 3.
    np.testing.assert_array_equal(second.numpy(), (raw[12:15] >> 11) * 2.0 ** -53)
    np.testing.assert_array_equal(to_unit_float(words(1234, 3, 3), np.float64), second.numpy())


def test_randn_and_randint_distributions():
    gj.manual_seed(0)
    z = gj.randn(200_000, dtype=gj.float64).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    k = gj.randint(3, 7, (100_000,)).numpy()
    assert k.dtype == np.int64 and set(np.unique(k)) == {3, 4, 5, 6}
    assert np.all(np.abs(np.bincount(k - 3) / k.size - 0.25) < 0.01)


def test_dropout_keeps_with_probability_one_minus_p_and_scales():
    gj.manual_seed(0)
    x = gj.ones(200_000)
    y = F.dropout(x, 0.3).numpy()
    values = np.unique(y)
    assert values[0] == 0.0 and len(values) == 2 and values[1] == np.float32(1.0) * np.float32(1 / 0.7)
    assert abs((y == 0).mean() - 0.3) < 0.01
    assert F.dropout(x, 0.3, training=False) is x and F.dropout(x, 0.0) is x
    assert F.dropout(x, 1.0).numpy().max() == 0.0
    z = F.dropout2d(gj.ones(4, 16, 3, 3), 0.5).numpy()
    per_channel = z.reshape(4, 16, 9)
    assert np.all(per_channel.min(2) == per_channel.max(2))  # whole channels
    assert 0 < (per_channel[:, :, 0] == 0).sum() < 64
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(gj.ShapeError, match="dropout2d"):
        F.dropout2d(gj.ones(2, 3), 0.5)


def test_compiled_training_step_draws_eager_masks():
    def run(compiled):
        gj.manual_seed(42)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.4), nn.Linear(8, 2))
        opt = gj.optim.SGD(model.parameters(), lr=0.1)
        x, y = gj.randn(5, 6), gj.randn(5, 2)

        def step(x, y):
            opt.zero_grad()
            h = F.dropout(x, 0.25)           # two draws per call
            loss = F.mse_loss(model(h), y)
            loss.backward()
            opt.step()
            return loss
        fn = gj.compile(step) if compiled else step
        losses = [fn(x, y).item() for _ in range(4)]
        model.eval()
        evaluated = model(x).detach().numpy()  # eval: no dropout
        return losses, evaluated, gj.random.get_rng_state().tolist()

    eager, compiled = run(False), run(True)
    np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-6)
    np.testing.assert_allclose(compiled[1], eager[1], rtol=1e-5, atol=1e-6)
    assert compiled[2] == eager[2]  # the generator moved past the same draws


def test_generator_state_api():
    gj.manual_seed(5)
    state = gj.random.get_rng_state()
    a = gj.rand(4)
    gj.random.set_rng_state(state)
    np.testing.assert_array_equal(gj.rand(4).numpy(), a.numpy())
    with gj.random.fork_rng():
        gj.rand(100)  # undone at the end of the block
    # The next draw is the second block of seed 5 (the state was set back before the redraw).
    after = gj.random.Generator().manual_seed(5)
    after.advance(1)
    np.testing.assert_array_equal(gj.rand(4).numpy(), gj.rand(4, generator=after).numpy())
    assert gj.random.initial_seed() == 5
    g = gj.random.Generator()
    assert g.initial_seed() != 5 and g.manual_seed(5).initial_seed() == 5
    with pytest.raises(ValueError, match="int64 tensor of 2"):
        g.set_state(gj.tensor([1.0]))
