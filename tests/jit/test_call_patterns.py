"""The ways users call a compiled function besides a whole training step, against eager mode:
``.grad`` cleared outside the call or inside it, accumulated into, returned; a compiled
forward whose backward runs from an eager ``loss.backward()``. The gradients a call or a
backward creates are the program's buffers, not copies ([Gradients a call creates] in
graphjit/jit/runtime.py, [Gradients the engine may keep] in graphjit/autograd.py): these
tests check that no tensor the caller holds ever changes because of that."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj


def _leaves(rng, *shapes):
    return [gj.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
            for s in shapes]


def _memory(t):
    """Where a tensor's data lives (an address: holding the array would keep it in use)."""
    return t._data.__array_interface__["data"][0]


# ---- backward inside the compiled function ------------------------------------------------

def _poly(a, b):
    (3 * a ** 3 - b ** 2).sum().backward()
    return a.grad, b.grad


def _poly_cleared_inside(a, b):
    a.grad = None
    b.grad = None
    return _poly(a, b)


# Per pattern: (function, clear .grad before the call).
PATTERNS = {"cleared outside": (_poly, True), "cleared inside": (_poly_cleared_inside, False),
            "accumulated": (_poly, False)}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_returned_grads_are_this_calls_and_kept_ones_never_change(rng, pattern):
    fn, clear = PATTERNS[pattern]
    data = [rng.standard_normal(5).astype(np.float32) for _ in range(2)]
    results = {}
    for compiled in (False, True):
        a, b = (gj.tensor(d.copy(), requires_grad=True) for d in data)
        f = gj.compile(fn) if compiled else fn
        kept = []
        for step in range(4):
            if clear:
                a.grad = b.grad = None
            with gj.no_grad():
                a.mul_(1.5)  # other gradients at every step
            ga, gb = f(a, b)
            assert ga is a.grad and gb is b.grad
            kept.append((ga, ga.numpy().copy(), gb, gb.numpy().copy()))
        # A .grad kept from an earlier call still holds what it held, unless it is the .grad
        # the later calls accumulated into (as eagerly).
        for ga, va, gb, vb in kept:
            if ga is not a.grad:
                np.testing.assert_array_equal(ga.numpy(), va)
                np.testing.assert_array_equal(gb.numpy(), vb)
        results[compiled] = ([v for _, v, _, _ in kept], [v for _, _, _, v in kept],
                             [now[0] is before[0] for before, now in zip(kept, kept[1:])])
    eager, compiled = results[False], results[True]
    np.testing.assert_array_equal(np.array(compiled[0]), np.array(eager[0]))
    np.testing.assert_array_equal(np.array(compiled[1]), np.array(eager[1]))
    assert compiled[2] == eager[2]  # the same .grad tensor across calls exactly where eagerly


def test_a_cleared_grad_reuses_the_buffer_the_caller_let_go_of(rng):
    a, b = _leaves(rng, (6,), (6,))
    f = gj.compile(_poly)
    f(a, b)
    f(a, b)  # (the first call traced with .grad None; .grad exists now: another program)
    a.grad = b.grad = None
    f(a, b)
    first = _memory(a.grad)
    a.grad = b.grad = None  # let go: the next call computes into the same memory
    f(a, b)
    assert _memory(a.grad) == first
    held = a.grad
    before = held.numpy().copy()
    a.grad = b.grad = None
    with gj.no_grad():
        a.mul_(2.0)
    f(a, b)  # `held` is still referenced: another buffer, `held` unchanged
    assert _memory(a.grad) != first
    np.testing.assert_array_equal(held.numpy(), before)
    np.testing.assert_allclose(a.grad.numpy(), 9 * a.detach().numpy() ** 2, rtol=1e-6)


def test_a_grad_the_program_reads_after_clearing_starts_at_zero(rng):
    # p.grad = None, then p.grad read by the traced code (through an accumulation):
    # a reused buffer must be zeroed again where the program reads it.
    (p,) = _leaves(rng, (4,))

    def step(x):
        p.grad = None
        (p * x).sum().backward()
        (p * x).sum().backward()  # accumulates: reads the .grad the first one made
        return p.grad

    f = gj.compile(step)
    for k in range(4):
        x = gj.tensor(np.full(4, k + 1.0, np.float32))
        np.testing.assert_array_equal(f(x).numpy(), step(x).numpy())


def test_grad_set_inside_when_none_is_a_new_tensor_each_call(rng):
    (p,) = _leaves(rng, (3,))

    def step(x):
        p.grad = None
        p.grad = x * 2.0
        return p.grad

    f = gj.compile(step)
    outs = [f(gj.tensor([1.0, 2.0, float(k)])) for k in range(3)]
    assert [o.tolist() for o in outs] == [[2.0, 4.0, 2.0 * k] for k in range(3)]
    assert outs[-1] is p.grad and len({id(o) for o in outs}) == 3


def test_returned_view_of_a_created_grad_views_this_calls_grad(rng):
    (p,) = _leaves(rng, (2, 3))

    def step(x):
        (p * x).sum().backward()
        return p.grad.view(-1)

    f = gj.compile(step)
    for k in range(3):
        p.grad = None
        v = f(gj.tensor(np.full((2, 3), k + 1.0, np.float32)))
        assert v.tolist() == [k + 1.0] * 6 and np.shares_memory(v._data, p.grad._data)


@pytest.mark.parametrize("clear", ["inside", "outside"])
def test_a_call_anomaly_mode_stops_creates_no_grad(rng, clear):
    # The program ran (into a new buffer) but its gradient is not finite: nothing is written
    # back, the .grad the owner had stays, unchanged.
    (p,) = _leaves(rng, (4,))

    def step(s):
        if clear == "inside":
            p.grad = None
        (p * s).sum().backward()
        return p.grad

    f = gj.compile(step)
    with pytest.warns(UserWarning, match="Anomaly Detection"), gj.autograd.detect_anomaly():
        for k in range(2):
            if clear == "outside":
                p.grad = None
            f(gj.tensor(np.float32(k + 1.0)))
        before = p.grad
        if clear == "outside":
            p.grad = before = None
        with pytest.raises(gj.autograd.AnomalyError):
            f(gj.tensor(np.float32(np.inf)))
    assert p.grad is before
    if before is not None:
        assert before.tolist() == [2.0] * 4


# ---- CUDA (Numba's simulator in the test suite) --------------------------------------------

@pytest.mark.skipif(not gj.cuda.is_available(), reason="no CUDA")
def test_cuda_grads_created_by_a_call(rng):
    data = [rng.standard_normal(6).astype(np.float32) for _ in range(2)]
    a, b = (gj.tensor(d, device="cuda", requires_grad=True) for d in data)
    f = gj.compile(_poly)
    want = (9 * data[0] ** 2, -2 * data[1])
    for _ in range(3):
        a.grad = b.grad = None
        ga, gb = f(a, b)
        assert ga is a.grad and ga.device == "cuda"
        np.testing.assert_allclose(ga.numpy(), want[0], rtol=1e-6)
        np.testing.assert_allclose(gb.numpy(), want[1], rtol=1e-6)
