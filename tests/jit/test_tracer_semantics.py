"""The tracer's semantics where eager mode has side effects: views and in-place updates,
no_grad blocks, several updates in one function, tensors made inside, .grad assignment,
user-written optimizers, and the Python values a compiled function reads (guards) or
stores (escapes). Each case compares compiled with eager on the same data, over several
calls, so a value frozen at trace time shows up as a mismatch on the second call.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
from graphjit.jit import TraceError
from graphjit.optim import Optimizer


def _np(t):
    return t.detach().numpy()


def _same_calls(fn, make_state, make_args, calls=3, rtol=1e-6):
    """Run ``fn`` eagerly and compiled on equal fresh state; compare every call's result and
    the state after it."""
    eager_state, compiled_state = make_state(), make_state()
    compiled = gj.compile(lambda *a: fn(compiled_state, *a))
    for call in range(calls):
        args = make_args(call)
        want = fn(eager_state, *args)
        got = compiled(*args)
        for w, g in zip(_flat(want), _flat(got)):
            np.testing.assert_allclose(_np(g), _np(w), rtol=rtol, atol=1e-7,
                                       err_msg=f"call {call}")
        for w, g in zip(_flat(eager_state), _flat(compiled_state)):
            np.testing.assert_allclose(_np(g), _np(w), rtol=rtol, atol=1e-7,
                                       err_msg=f"state after call {call}")
    return compiled


def _flat(tree):
    if isinstance(tree, gj.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _flat(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _flat(v)]
    return []


# ---- the first case: clone() of a tensor the trace modified -------------------------

def test_clone_sees_the_update_made_by_the_call():
    buf = gj.zeros(2)

    @gj.compile
    def f(x):
        buf.add_(x)
        return buf.clone()

    x = gj.tensor([1.0, 2.0])
    assert f(x).tolist() == [1.0, 2.0]
    assert f(x).tolist() == [2.0, 4.0]
    assert f(x).tolist() == [3.0, 6.0] and buf.tolist() == [3.0, 6.0]


# ---- views and in-place updates ----------------------------------------------------------------

def _views(s, x):
    a, b = s["a"], s["b"]
    a[1:3].add_(x[:2])               # a slice of a real tensor
    a.view(2, 3).T[1].mul_(2.0)      # a strided view of a view
    row = b[0]
    b.add_(1.0)                      # the root changes after the view was taken
    seen = row * 1                   # ... the view shows it
    t = x * 1
    t[::2].sub_(5.0)                 # a view of a traced tensor
    b.t().reshape(-1).add_(100.0)    # a reshape of a transposed layout copies: no effect on b
    b.detach().mul_(0.5)             # detach shares memory
    a.data.add_(b[0, 0])             # .data shares memory
    a[0] = 9.0                       # index assignment
    a[4:] = x[:2]
    b[b > 1.0] = 0.0                 # a mask of b's shape
    return seen, t, a[2:] * 1


def test_views_share_memory_as_in_eager_mode(rng):
    a = rng.normal(size=6).astype(np.float32)
    _same_calls(_views,
                lambda: {"a": gj.tensor(a),
                         "b": gj.tensor(np.linspace(0, 2, 6, dtype=np.float32).reshape(2, 3))},
                lambda call: (gj.tensor(rng.normal(size=6).astype(np.float32)),))


def test_in_place_on_a_broadcast_view_is_an_error_as_eagerly():
    a = gj.zeros(3)

    @gj.compile
    def f(x):
        a.expand(2, 3).add_(x)
        return a * 1

    with pytest.raises(gj.ShapeError, match="read-only"):
        f(gj.ones(2, 3))
    assert a.tolist() == [0.0, 0.0, 0.0]


def test_in_place_on_a_view_with_autograd_is_an_error_as_eagerly():
    w = gj.ones(4, requires_grad=True)

    def f(x):
        y = w * 2
        y[1:3].mul_(x)
        return y.sum()

    with pytest.raises(gj.AutogradError, match="in-place operation on a view"):
        f(gj.ones(2))
    with pytest.raises(gj.AutogradError, match="in-place operation on a view"):
        gj.compile(f)(gj.ones(2))


def test_index_assignment_with_an_index_tensor_refuses_to_trace():
    a = gj.zeros(4)

    @gj.compile
    def f(i):
        a[i] = 1.0
        return a * 1

    with pytest.raises(TraceError, match="index tensor"):
        f(gj.tensor([0, 2]))
    assert a.tolist() == [0.0] * 4


# ---- gradients: no_grad blocks and leaves updated inside the function ----------------------

def test_no_grad_block_stops_the_gradient():
    def make():
        return {"x": gj.tensor([1.0, 2.0], requires_grad=True),
                "w": gj.tensor([3.0, 4.0], requires_grad=True)}

    def f(s):
        with gj.no_grad():
            y = s["x"] * 2
        z = s["x"].detach() * 3          # detach stops it too
        loss = (y * s["w"] + z * s["w"]).sum()
        loss.backward()
        return loss

    eager, compiled = make(), make()
    f(eager)
    gj.compile(lambda: f(compiled))()
    assert eager["x"].grad is None and compiled["x"].grad is None
    np.testing.assert_array_equal(_np(compiled["w"].grad), _np(eager["w"].grad))


def test_two_training_steps_in_one_function():
    def f(s, data):
        p = s["p"]
        for _ in range(2):
            loss = ((p * data) ** 2).sum()
            loss.backward()
            with gj.no_grad():
                p.mul_(0.5)                 # the next backward is at the updated value
                p.sub_(0.1 * p.grad)
                p.grad.zero_()
        return loss

    _same_calls(f, lambda: {"p": gj.tensor([1.0, 2.0], requires_grad=True)},
                lambda call: (gj.tensor([1.0, 1.0 + call]),))


def test_grad_assigned_a_traced_value():
    def f(s, x):
        p = s["p"]
        p.grad = x * 2                     # a new .grad, made by the program
        with gj.no_grad():
            p.sub_(p.grad)
        return p.grad * 1

    p_eager, p_compiled = gj.tensor([1.0, 2.0], requires_grad=True), None

    def make():
        return {"p": gj.tensor([1.0, 2.0], requires_grad=True)}

    _same_calls(f, make, lambda call: (gj.tensor([0.5, float(call)]),))


# ---- tensors made inside the function ---------------------------------------------------------

def test_tensors_made_inside_start_afresh_at_every_call():
    @gj.compile
    def f(x):
        z = gj.zeros(3)
        z.add_(x)
        r = gj.arange(3).float()
        r.mul_(x)
        return z, r, gj.tensor([x[0], x[1]])

    x = gj.tensor([1.0, 2.0, 3.0])
    for _ in range(3):
        z, r, pair = f(x)
        assert z.tolist() == [1.0, 2.0, 3.0] and r.tolist() == [0.0, 2.0, 6.0]
        assert pair.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("make", [lambda: gj.randperm(3).float(),
                                  lambda: gj.zeros(3, requires_grad=True),
                                  lambda: nn.Parameter(gj.ones(3))])
def test_what_cannot_be_made_inside_refuses(make):
    with pytest.raises(TraceError):
        gj.compile(lambda x: make() + x)(gj.ones(3))


# ---- a user-written optimizer (the tutorials' pattern) -----------------------------------------

class MomentumSGD(Optimizer):
    """SGD with momentum written the way PyTorch's tutorials write optimizers."""

    def __init__(self, params, lr=0.1, momentum=0.9):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def step(self, closure=None):
        with gj.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    d_p = p.grad
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = d_p.clone()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(group["momentum"]).add_(d_p)
                    p.add_(buf, alpha=-group["lr"])


def _custom_run(compiled, rng_seed=0):
    gj.manual_seed(rng_seed)
    lin = nn.Linear(3, 1)
    opt = MomentumSGD(lin.parameters())
    x, y = gj.randn(8, 3), gj.randn(8, 1)

    def step(x, y):
        opt.zero_grad()
        loss = ((lin(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    run = gj.compile(step) if compiled else step
    losses = []
    for i in range(6):
        if i == 3:
            opt.param_groups[0]["lr"] = 0.0     # must take effect: not baked into the program
        if i == 4:
            opt.param_groups[0]["lr"] = 0.05
        losses.append(run(x, y).item())
    return losses, _np(lin.weight), opt, run


def test_custom_optimizer_matches_eager_and_reads_lr_at_every_call():
    eager_losses, eager_w, _, _ = _custom_run(False)
    losses, w, opt, run = _custom_run(True)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-6)
    np.testing.assert_allclose(w, eager_w, rtol=1e-6)
    # Its state became real tensors after the first step, and lr changes did not retrace.
    buf = opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"]
    assert type(buf) is gj.Tensor and buf._data is not None
    assert len(run.explain().splitlines()) == 2, run.explain()


# ---- Python values the function reads: guarded --------------------------------------------------

class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.scale = 2.0

    def forward(self, x):
        return self.lin(x) * self.scale


SHIFT = 1.0


class Config:
    def __init__(self):
        self.power = 2


def test_module_attributes_globals_and_objects_are_guarded():
    global SHIFT
    m = Scaled()
    cfg = Config()
    bias = [0.0]
    offset = 0.5

    def f(x):
        return m(x) ** cfg.power + SHIFT + offset

    compiled = gj.compile(f)
    x = gj.randn(3, 2)
    checks = [lambda: None,
              lambda: setattr(m, "scale", 3.0),
              lambda: globals().__setitem__("SHIFT", -1.0),
              lambda: setattr(cfg, "power", 3)]
    try:
        for change in checks:
            change()
            np.testing.assert_allclose(_np(compiled(x)), _np(f(x)), rtol=1e-6)
        explain = compiled.explain()
        assert "module attribute m.scale: 2.0 -> 3.0" in explain
        assert "global SHIFT: 1.0 -> -1.0" in explain
        assert "attribute cfg.power: 2 -> 3" in explain
        before = compiled.cache_size
        compiled(x)  # nothing changed: no trace
        assert compiled.cache_size == before and len(bias) == 1
    finally:
        SHIFT = 1.0


def test_a_traced_tensor_stored_on_a_module_is_refused():
    m = Scaled()

    def f(x):
        m.cache = m(x) * 2
        return m.cache.sum()

    with pytest.raises(TraceError, match="m.cache"):
        gj.compile(f)(gj.randn(3, 2))
    assert not hasattr(m, "cache")
