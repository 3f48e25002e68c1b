"""The ways users call a compiled function besides a whole training step, against eager mode:
``.grad`` cleared outside the call or inside it, accumulated into, returned; a compiled
forward whose backward runs from an eager ``loss.backward()``. The gradients a call or a
backward creates are the program's buffers, not copies ([Gradients a call creates] in
graphjit/jit/runtime.py, [Gradients the engine may keep] in graphjit/autograd_engine.py):
these tests check that no tensor the caller holds ever changes because of that."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F


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


# ---- a compiled forward, backward outside -------------------------------------------------

def _mlp(rng):
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    x = gj.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    y = gj.tensor(rng.integers(0, 3, 4))
    return model, x, y


def _copy_model(model):
    other = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("how", ["loss function", "compile(model)"])
def test_compiled_forward_eager_backward_and_step_match_eager_bit_for_bit(rng, how):
    model, x, y = _mlp(rng)
    twin = _copy_model(model)
    runs = {}
    for compiled, m in ((False, model), (True, twin)):
        opt = gj.optim.Adam(m.parameters(), lr=1e-2)
        if not compiled:
            loss_of = lambda x, y: F.cross_entropy(m(x), y)  # noqa: E731
        elif how == "loss function":
            loss_of = gj.compile(lambda x, y: F.cross_entropy(m(x), y))
        else:
            cm = gj.compile(m)
            loss_of = lambda x, y: F.cross_entropy(cm(x), y)  # noqa: E731
        trace = []
        for _ in range(4):
            opt.zero_grad()
            loss = loss_of(x, y)
            loss.backward()
            opt.step()
            trace.append([loss.item()] + [p.grad.numpy().copy() for p in m.parameters()]
                         + [p.detach().numpy().copy() for p in m.parameters()])
        runs[compiled] = trace
    for eager_step, compiled_step in zip(runs[False], runs[True]):
        for e, c in zip(eager_step, compiled_step):
            np.testing.assert_allclose(c, e, rtol=2e-6, atol=1e-7)


def test_compiled_backward_gradients_match_eager_exactly(rng):
    # Elementwise work only (no GEMM, whose threads may round differently): bit for bit.
    a, b = _leaves(rng, (7,), (7,))
    fn = lambda a, b: (3 * a ** 3 - b ** 2).sum()  # noqa: E731
    f = gj.compile(fn)
    for step in range(3):
        got = []
        for g in (fn, f):
            a.grad = b.grad = None
            g(a, b).backward()
            got.append((a.grad.numpy().copy(), b.grad.numpy().copy()))
        np.testing.assert_array_equal(got[1][0], got[0][0])
        np.testing.assert_array_equal(got[1][1], got[0][1])


def test_a_kept_grad_never_changes_when_the_next_backward_reuses_buffers(rng):
    a, b = _leaves(rng, (3, 4), (3, 4))
    f = gj.compile(lambda a, b: (a * b).sum())
    f(a, b).backward()
    kept = a.grad
    before = kept.numpy().copy()
    for k in range(3):
        a.grad = b.grad = None
        with gj.no_grad():
            b.add_(1.0)
        f(a, b).backward()
        np.testing.assert_array_equal(a.grad.numpy(), b.detach().numpy())
        assert not np.shares_memory(a.grad._data, kept._data)
    np.testing.assert_array_equal(kept.numpy(), before)
    first = _memory(a.grad)
    a.grad = b.grad = None
    f(a, b).backward()
    assert _memory(a.grad) == first  # let go of: reused (the program's result pool)


def test_kept_grad_is_no_view_for_autograd(rng):
    a, b = _leaves(rng, (3, 4), (3, 4))
    f = gj.compile(lambda a, b: (a * b).sum())
    f(a, b).backward()
    assert not a.grad._is_view()
    w = gj.tensor(np.ones((3, 4), np.float32), requires_grad=True)
    a.grad.add_(w)  # as on an eager .grad: allowed, and recorded
    a.grad.sum().backward()
    assert w.grad.tolist() == np.ones((3, 4)).tolist()


@pytest.mark.parametrize("retain", [False, True])
def test_compiled_backward_accumulates_into_existing_grads_as_eagerly(rng, retain):
    a, b = _leaves(rng, (5,), (5,))
    fn = lambda a, b: (a * a * b).sum()  # noqa: E731
    got = {}
    for name, g in (("eager", fn), ("compiled", gj.compile(fn))):
        a.grad = b.grad = None
        a.grad = gj.tensor(np.arange(5, dtype=np.float32))  # an existing .grad: added to
        existing = a.grad
        loss = g(a, b)
        loss.backward(retain_graph=retain)
        if retain:
            loss.backward()
        else:
            with pytest.raises(gj.GraphjitError if name == "compiled" else Exception,
                               match="second time"):
                loss.backward()
        assert a.grad is existing
        got[name] = (a.grad.numpy().copy(), b.grad.numpy().copy())
    np.testing.assert_array_equal(got["compiled"][0], got["eager"][0])
    np.testing.assert_array_equal(got["compiled"][1], got["eager"][1])


def test_one_gradient_reaching_two_leaves_is_not_shared(rng):
    # The compiled backward's gradient flows into an eager add, whose VJP passes the same
    # tensor to both of its inputs: each leaf gets a .grad of its own.
    a, b = _leaves(rng, (4,), (4,))
    f = gj.compile(lambda x: (x * 2.0).sum())
    f(a + b).backward()
    assert a.grad.tolist() == b.grad.tolist() == [2.0] * 4
    assert not np.shares_memory(a.grad._data, b.grad._data)
    with gj.no_grad():
        a.grad.add_(1.0)
    assert b.grad.tolist() == [2.0] * 4


def test_outputs_sharing_a_buffer_give_gradients_of_their_own(rng):
    # Two gradients of the backward program that are one value (one buffer): copied apart.
    a, b = _leaves(rng, (4,), (4,))
    f = gj.compile(lambda a, b: (a + b).sum())
    f(a, b).backward()
    assert a.grad.tolist() == b.grad.tolist() == [1.0] * 4
    assert not np.shares_memory(a.grad._data, b.grad._data)


def test_zero_grad_outside_a_compiled_step_matches_the_step_with_it_inside(rng):
    model, x, y = _mlp(rng)
    twin = _copy_model(model)
    opt_in = gj.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_out = gj.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)

    @gj.compile
    def inside(x, y):
        opt_in.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt_in.step()
        return loss

    @gj.compile
    def outside(x, y):
        loss = F.cross_entropy(twin(x), y)
        loss.backward()
        opt_out.step()
        return loss

    for _ in range(4):
        l_in = inside(x, y)
        opt_out.zero_grad()
        l_out = outside(x, y)
        assert l_in.item() == l_out.item()
        for p, q in zip(model.parameters(), twin.parameters()):
            np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


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
def test_cuda_grads_created_by_a_call_and_by_a_compiled_backward(rng):
    data = [rng.standard_normal(6).astype(np.float32) for _ in range(2)]
    a, b = (gj.tensor(d, device="cuda", requires_grad=True) for d in data)
    f = gj.compile(_poly)
    fwd = gj.compile(lambda a, b: (3 * a ** 3 - b ** 2).sum())
    want = (9 * data[0] ** 2, -2 * data[1])
    for _ in range(3):
        a.grad = b.grad = None
        ga, gb = f(a, b)
        assert ga is a.grad and ga.device == "cuda"
        np.testing.assert_allclose(ga.numpy(), want[0], rtol=1e-6)
        np.testing.assert_allclose(gb.numpy(), want[1], rtol=1e-6)
        a.grad = b.grad = None
        fwd(a, b).backward()
        np.testing.assert_allclose(a.grad.numpy(), want[0], rtol=1e-6)
        np.testing.assert_allclose(b.grad.numpy(), want[1], rtol=1e-6)


def test_returned_grad_of_an_argument_is_this_calls_arguments():
    # [Owners passed as arguments] in jit/slot.py, for a .grad the function returns.
    @gj.compile
    def step(w, x):
        w.grad = None
        (w * x).sum().backward()
        return w.grad

    x = gj.tensor([1.0, 2.0, 3.0])
    for k in range(3):
        w = gj.nn.Parameter(gj.full((3,), float(k)))
        g = step(w, x * (k + 1))
        assert g is w.grad
        np.testing.assert_array_equal(g.numpy(), (x * (k + 1)).numpy())
