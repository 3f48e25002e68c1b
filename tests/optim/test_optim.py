"""Tests for graphjit.optim.

Every optimizer/option combination is checked step by step against an
independent NumPy implementation of the documented algorithm (the algorithm
boxes of the torch.optim documentation; ``maximize`` negates the gradient
before anything else, as the reference implementation does).
"""

import copy
import inspect
import pathlib

import numpy as np
import pytest

import graphjit as gj
import graphjit.optim as optim

F64 = gj.float64
SHAPES = [(3, 4), (4,)]
# Gradient magnitudes per step: they shrink at step 3 and 5 so that AMSGrad's
# running max differs from the second moment estimate.
SCALES = [1.0, 3.0, 0.1, 2.0, 0.05]
TOL = dict(rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def to_np(t):
    return np.array(t.detach().numpy(), copy=True)


def make_param(arr, dtype=F64, requires_grad=True):
    return gj.tensor(np.asarray(arr), dtype=dtype, requires_grad=requires_grad)


def set_grad(p, g, dtype=F64):
    p.grad = gj.tensor(np.asarray(g), dtype=dtype)


def make_problem(seed=0, nsteps=5):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) * SCALES[k % len(SCALES)] for s in SHAPES]
             for k in range(nsteps)]
    return init, grads


# --------------------------------------------------------------------------
# NumPy reference implementations (written from the documented algorithms)
# --------------------------------------------------------------------------
class RefSGD:
    def __init__(self, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, maximize=False):
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov, self.maximize = weight_decay, nesterov, maximize
        self.state = {}

    def step(self, params, grads):
        for i, (theta, grad) in enumerate(zip(params, grads)):
            g = -grad if self.maximize else grad.copy()
            if self.weight_decay != 0:
                g = g + self.weight_decay * theta
            if self.momentum != 0:
                st = self.state.setdefault(i, {})
                if "momentum_buffer" not in st:
                    b = g.copy()
                else:
                    b = self.momentum * st["momentum_buffer"] + (1 - self.dampening) * g
                st["momentum_buffer"] = b
                g = g + self.momentum * b if self.nesterov else b
            theta -= self.lr * g


class RefAdam:
    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, maximize=False):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.amsgrad, self.maximize = weight_decay, amsgrad, maximize
        self.state = {}

    def step(self, params, grads):
        b1, b2 = self.betas
        for i, (theta, grad) in enumerate(zip(params, grads)):
            st = self.state.setdefault(i, {})
            if not st:
                st.update(step=0, exp_avg=np.zeros_like(theta),
                          exp_avg_sq=np.zeros_like(theta))
                if self.amsgrad:
                    st["max_exp_avg_sq"] = np.zeros_like(theta)
            st["step"] += 1
            t = st["step"]
            g = -grad if self.maximize else grad.copy()
            if self.weight_decay != 0:
                if self.decoupled:
                    theta -= self.lr * self.weight_decay * theta
                else:
                    g = g + self.weight_decay * theta
            m = b1 * st["exp_avg"] + (1 - b1) * g
            v = b2 * st["exp_avg_sq"] + (1 - b2) * g * g
            st["exp_avg"], st["exp_avg_sq"] = m, v
            m_hat = m / (1 - b1 ** t)
            if self.amsgrad:
                st["max_exp_avg_sq"] = np.maximum(st["max_exp_avg_sq"], v)
                v_hat = st["max_exp_avg_sq"] / (1 - b2 ** t)
            else:
                v_hat = v / (1 - b2 ** t)
            theta -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class RefAdamW(RefAdam):
    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, maximize)


class RefAdagrad:
    def __init__(self, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, maximize=False):
        self.lr, self.lr_decay, self.weight_decay = lr, lr_decay, weight_decay
        self.init_acc, self.eps, self.maximize = initial_accumulator_value, eps, maximize
        self.state = {}

    def step(self, params, grads):
        for i, (theta, grad) in enumerate(zip(params, grads)):
            st = self.state.setdefault(i, {})
            if not st:
                st.update(step=0, sum=np.full_like(theta, self.init_acc))
            st["step"] += 1
            g = -grad if self.maximize else grad.copy()
            clr = self.lr / (1 + (st["step"] - 1) * self.lr_decay)
            if self.weight_decay != 0:
                g = g + self.weight_decay * theta
            st["sum"] = st["sum"] + g * g
            theta -= clr * g / (np.sqrt(st["sum"]) + self.eps)


class RefRMSprop:
    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, maximize=False):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.weight_decay, self.momentum = weight_decay, momentum
        self.centered, self.maximize = centered, maximize
        self.state = {}

    def step(self, params, grads):
        a = self.alpha
        for i, (theta, grad) in enumerate(zip(params, grads)):
            st = self.state.setdefault(i, {})
            if not st:
                st.update(step=0, square_avg=np.zeros_like(theta))
                if self.momentum > 0:
                    st["momentum_buffer"] = np.zeros_like(theta)
                if self.centered:
                    st["grad_avg"] = np.zeros_like(theta)
            st["step"] += 1
            g = -grad if self.maximize else grad.copy()
            if self.weight_decay != 0:
                g = g + self.weight_decay * theta
            st["square_avg"] = a * st["square_avg"] + (1 - a) * g * g
            v_tilde = st["square_avg"]
            if self.centered:
                st["grad_avg"] = a * st["grad_avg"] + (1 - a) * g
                v_tilde = v_tilde - st["grad_avg"] ** 2
            if self.momentum > 0:
                st["momentum_buffer"] = (self.momentum * st["momentum_buffer"]
                                         + g / (np.sqrt(v_tilde) + self.eps))
                theta -= self.lr * st["momentum_buffer"]
            else:
                theta -= self.lr * g / (np.sqrt(v_tilde) + self.eps)


class RefAdadelta:
    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False):
        self.lr, self.rho, self.eps = lr, rho, eps
        self.weight_decay, self.maximize = weight_decay, maximize
        self.state = {}

    def step(self, params, grads):
        rho, eps = self.rho, self.eps
        for i, (theta, grad) in enumerate(zip(params, grads)):
            st = self.state.setdefault(i, {})
            if not st:
                st.update(step=0, square_avg=np.zeros_like(theta),
                          acc_delta=np.zeros_like(theta))
            st["step"] += 1
            g = -grad if self.maximize else grad.copy()
            if self.weight_decay != 0:
                g = g + self.weight_decay * theta
            v = rho * st["square_avg"] + (1 - rho) * g * g
            dx = np.sqrt(st["acc_delta"] + eps) / np.sqrt(v + eps) * g
            u = rho * st["acc_delta"] + (1 - rho) * dx * dx
            st["square_avg"], st["acc_delta"] = v, u
            theta -= self.lr * dx


OPTIMIZERS = {
    "SGD": (lambda: optim.SGD, RefSGD),
    "Adam": (lambda: optim.Adam, RefAdam),
    "AdamW": (lambda: optim.AdamW, RefAdamW),
    "Adagrad": (lambda: optim.Adagrad, RefAdagrad),
    "RMSprop": (lambda: optim.RMSprop, RefRMSprop),
    "Adadelta": (lambda: optim.Adadelta, RefAdadelta),
}

CONFIGS = {
    "SGD": [
        {},
        dict(lr=0.1),
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.1, momentum=0.9, dampening=0.3),
        dict(lr=0.1, momentum=0.9, nesterov=True),
        dict(lr=0.1, weight_decay=0.1),
        dict(lr=0.1, maximize=True),
        dict(lr=0.1, momentum=0.8, weight_decay=0.2, nesterov=True, maximize=True),
        dict(lr=0.05, momentum=0.5, dampening=0.5, weight_decay=0.3, maximize=True),
    ],
    "Adam": [
        {},
        dict(lr=0.1),
        dict(lr=0.1, betas=(0.8, 0.95)),
        dict(lr=0.1, eps=1e-2),
        dict(lr=0.1, weight_decay=0.1),
        dict(lr=0.1, amsgrad=True),
        dict(lr=0.1, maximize=True),
        dict(lr=0.1, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.2, amsgrad=True,
             maximize=True),
    ],
    "AdamW": [
        {},
        dict(lr=0.1),
        dict(lr=0.1, weight_decay=0),
        dict(lr=0.1, weight_decay=0.3),
        dict(lr=0.1, betas=(0.7, 0.9), eps=1e-3),
        dict(lr=0.1, amsgrad=True),
        dict(lr=0.1, maximize=True),
        dict(lr=0.1, weight_decay=0.5, amsgrad=True, maximize=True),
    ],
    "Adagrad": [
        {},
        dict(lr=0.1),
        dict(lr=0.1, lr_decay=0.5),
        dict(lr=0.1, weight_decay=0.2),
        dict(lr=0.1, initial_accumulator_value=0.5),
        dict(lr=0.1, eps=1e-2),
        dict(lr=0.1, maximize=True),
        dict(lr=0.1, lr_decay=0.3, weight_decay=0.1, initial_accumulator_value=0.2,
             eps=1e-3, maximize=True),
    ],
    "RMSprop": [
        {},
        dict(lr=0.05),
        dict(lr=0.05, alpha=0.8),
        dict(lr=0.05, eps=1e-2),
        dict(lr=0.05, weight_decay=0.2),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, centered=True),
        dict(lr=0.05, centered=True, momentum=0.5),
        dict(lr=0.05, maximize=True),
        dict(lr=0.05, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.7,
             centered=True, maximize=True),
    ],
    "Adadelta": [
        {},
        dict(lr=0.5),
        dict(rho=0.5),
        dict(eps=1e-3),
        dict(weight_decay=0.2),
        dict(maximize=True),
        dict(lr=0.7, rho=0.6, eps=1e-4, weight_decay=0.1, maximize=True),
    ],
}

CASES = [(name, cfg) for name, cfgs in CONFIGS.items() for cfg in cfgs]
CASE_IDS = [name + "-" + ("default" if not cfg else
                          ",".join(f"{k}={v}" for k, v in cfg.items()))
            for name, cfg in CASES]

# Configurations that keep per-parameter state (used by state_dict tests).
STATEFUL = {
    "SGD": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    "Adam": dict(lr=0.1, amsgrad=True, weight_decay=0.1),
    "AdamW": dict(lr=0.1, amsgrad=True),
    "Adagrad": dict(lr=0.1, lr_decay=0.2, initial_accumulator_value=0.1),
    "RMSprop": dict(lr=0.05, momentum=0.5, centered=True),
    "Adadelta": dict(lr=0.5, weight_decay=0.1),
}


def build(name, params, **kwargs):
    return OPTIMIZERS[name][0]()(params, **kwargs)


def run_reference(name, cfg, init, grads, lr_schedule=None):
    ref = OPTIMIZERS[name][1](**cfg)
    params = [a.copy() for a in init]
    history = []
    for k, g in enumerate(grads):
        if lr_schedule is not None:
            ref.lr = lr_schedule[k]
        ref.step(params, g)
        history.append([p.copy() for p in params])
    return history, ref


def assert_state_matches(opt, params, ref):
    for i, p in enumerate(params):
        ref_st = ref.state.get(i, {})
        if not ref_st:
            assert not opt.state.get(p), "unexpected optimizer state"
            continue
        st = opt.state[p]
        assert set(st.keys()) == set(ref_st.keys())
        for key, val in ref_st.items():
            if key == "step":
                got = st["step"]
                got = got.item() if isinstance(got, gj.Tensor) else got
                assert got == val
            else:
                assert isinstance(st[key], gj.Tensor)
                assert st[key].dtype == p.dtype
                np.testing.assert_allclose(to_np(st[key]), val, **TOL)


# --------------------------------------------------------------------------
# algorithm tests against the NumPy references
# --------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "reference"])
@pytest.mark.parametrize("name,cfg", CASES, ids=CASE_IDS)
def test_matches_numpy_reference(name, cfg, fused):
    """Every option of every optimizer, 12 steps, against a NumPy transcription of PyTorch's
    documented algorithm: the compiled update (the default, see [Compiled eager steps]) and
    the op-by-op reference (fused=False)."""
    init, grads = make_problem(seed=1, nsteps=12)
    expected, ref = run_reference(name, cfg, init, grads)

    params = [make_param(a) for a in init]
    opt = build(name, params, fused=fused, **cfg)
    for k, g in enumerate(grads):
        for p, gk in zip(params, g):
            set_grad(p, gk)
        assert opt.step() is None
        for p, gk, e in zip(params, g, expected[k]):
            assert p.dtype == F64
            assert p.shape == e.shape
            np.testing.assert_allclose(to_np(p), e, **TOL)
            # the update must not modify the gradient in place
            assert np.array_equal(to_np(p.grad), gk)
    assert_state_matches(opt, params, ref)


@pytest.mark.parametrize("name,cfg", [c for c in CASES if c[1]],
                         ids=[i for i, c in zip(CASE_IDS, CASES) if c[1]])
def test_each_option_changes_reference(name, cfg):
    """Sanity check of the test itself: each tested option has an effect, so
    an implementation ignoring it would fail test_matches_numpy_reference."""
    init, grads = make_problem(seed=1)
    base = dict(cfg)
    for key in list(cfg):
        reduced = {k: v for k, v in cfg.items() if k != key}
        if key == "nesterov" or (key == "momentum" and cfg.get("nesterov")):
            continue
        a, _ = run_reference(name, cfg, init, grads)
        b, _ = run_reference(name, reduced, init, grads)
        diff = max(np.abs(x - y).max() for x, y in zip(a[-1], b[-1]))
        assert diff > 1e-8, f"option {key} has no effect in {name}{base}"


def test_amsgrad_max_is_exercised():
    init, grads = make_problem(seed=1)
    _, ref = run_reference("Adam", dict(lr=0.1, amsgrad=True), init, grads)
    st = ref.state[0]
    assert not np.allclose(st["max_exp_avg_sq"], st["exp_avg_sq"])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_params(name):
    init, grads = make_problem(seed=2, nsteps=3)
    cfg = STATEFUL[name]
    expected, _ = run_reference(name, cfg, init, grads)
    params = [make_param(a, dtype=gj.float32) for a in init]
    opt = build(name, params, **cfg)
    for g in grads:
        for p, gk in zip(params, g):
            set_grad(p, gk, dtype=gj.float32)
        opt.step()
    for p, e in zip(params, expected[-1]):
        assert p.dtype == gj.float32
        np.testing.assert_allclose(to_np(p), e, rtol=1e-4, atol=1e-5)
        for v in opt.state[p].values():
            if isinstance(v, gj.Tensor):
                assert v.dtype == gj.float32


# --------------------------------------------------------------------------
# end-to-end with autograd
# --------------------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_linear_regression_matches_numpy_gd(momentum):
    rng = np.random.default_rng(42)
    n, d = 32, 3
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.7 + 0.1 * rng.standard_normal(n)
    lr = 0.05

    # NumPy gradient descent with the manual MSE gradient.
    w_np, b_np = np.zeros(d), 0.0
    buf_w = buf_b = None
    np_hist = []
    for _ in range(20):
        r = X @ w_np + b_np - y
        loss = np.mean(r ** 2)
        gw = 2.0 / n * (X.T @ r)
        gb = 2.0 / n * r.sum()
        if momentum:
            buf_w = gw.copy() if buf_w is None else momentum * buf_w + gw
            buf_b = gb if buf_b is None else momentum * buf_b + gb
            gw, gb = buf_w, buf_b
        w_np = w_np - lr * gw
        b_np = b_np - lr * gb
        np_hist.append((loss, w_np.copy(), b_np))

    Xt = gj.tensor(X, dtype=F64)
    yt = gj.tensor(y, dtype=F64)
    w = gj.zeros(d, dtype=F64, requires_grad=True)
    b = gj.tensor(0.0, dtype=F64, requires_grad=True)
    opt = optim.SGD([w, b], lr=lr, momentum=momentum)
    for loss_np, w_exp, b_exp in np_hist:
        opt.zero_grad()
        loss = ((Xt @ w + b - yt) ** 2).mean()
        loss.backward()
        opt.step()
        assert abs(loss.item() - loss_np) <= 1e-12 * max(1.0, abs(loss_np))
        np.testing.assert_allclose(to_np(w), w_exp, **TOL)
        np.testing.assert_allclose(to_np(b), b_exp, **TOL)
    # training actually converged towards the true weights
    assert np_hist[-1][0] < np_hist[0][0] * 0.2


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_param_without_grad_is_skipped(name):
    init, grads = make_problem(seed=3, nsteps=3)
    a, b = make_param(init[0]), make_param(init[1])
    opt = build(name, [a, b], **STATEFUL[name])
    for g in grads:
        set_grad(a, g[0])
        assert b.grad is None
        opt.step()
    assert np.array_equal(to_np(b), init[1])
    assert b not in opt.state
    assert b.grad is None
    assert not np.allclose(to_np(a), init[0])
    assert a in opt.state


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_frozen_parameter_untouched(name):
    rng = np.random.default_rng(4)
    frozen = make_param(rng.standard_normal(4), requires_grad=False)
    live = make_param(rng.standard_normal(4))
    before = to_np(frozen)
    opt = build(name, [frozen, live], **STATEFUL[name])
    for _ in range(3):
        opt.zero_grad()
        loss = (frozen * live).sum() + (live ** 2).sum()
        loss.backward()
        opt.step()
    assert frozen.grad is None
    assert np.array_equal(to_np(frozen), before)
    assert frozen not in opt.state
    assert live in opt.state


# --------------------------------------------------------------------------
# zero_grad / closure / groups / hyper-parameter changes
# --------------------------------------------------------------------------
def test_zero_grad_set_to_none():
    w = make_param([1.0, 2.0, 3.0])
    opt = optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    assert w.grad is not None
    opt.zero_grad()
    assert w.grad is None
    (w * w).sum().backward()
    opt.zero_grad(set_to_none=True)
    assert w.grad is None


def test_zero_grad_set_to_zero():
    w = make_param([1.0, 2.0, 3.0])
    opt = optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert w.grad is not None
    assert not w.grad.requires_grad
    assert w.grad.grad_fn is None
    assert w.grad.dtype == F64
    assert np.array_equal(to_np(w.grad), np.zeros(3))
    # gradients accumulate into the zeroed buffer
    (3 * w).sum().backward()
    assert np.array_equal(to_np(w.grad), np.full(3, 3.0))
    # params without grad stay None
    v = make_param([1.0])
    opt2 = optim.SGD([v], lr=0.1)
    opt2.zero_grad(set_to_none=False)
    assert v.grad is None


def test_step_with_closure():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal(6)
    w0 = rng.standard_normal(3)
    Xt, yt = gj.tensor(X, dtype=F64), gj.tensor(y, dtype=F64)
    w = make_param(w0)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    calls = []

    def closure():
        calls.append(gj.is_grad_enabled())
        opt.zero_grad()
        loss = ((Xt @ w - yt) ** 2).mean()
        loss.backward()
        return loss

    w_np = w0.copy()
    buf = None
    for _ in range(3):
        r = X @ w_np - y
        g = 2.0 / len(y) * X.T @ r
        buf = g.copy() if buf is None else 0.9 * buf + g
        # step called under no_grad: the closure must still run with grad on
        with gj.no_grad():
            loss = opt.step(closure)
        assert isinstance(loss, gj.Tensor)
        assert abs(loss.item() - np.mean(r ** 2)) < 1e-12
        w_np = w_np - 0.1 * buf
        np.testing.assert_allclose(to_np(w), w_np, **TOL)
    assert calls == [True, True, True]


def test_param_groups_with_different_options():
    init, grads = make_problem(seed=6, nsteps=4)
    a, b = make_param(init[0]), make_param(init[1])
    opt = optim.SGD([{"params": [a], "lr": 0.5},
                     {"params": b, "momentum": 0.9, "nesterov": True}], lr=0.1)
    g0, g1 = opt.param_groups
    assert g0["lr"] == 0.5 and g0["momentum"] == 0 and g0["nesterov"] is False
    assert g1["lr"] == 0.1 and g1["momentum"] == 0.9 and g1["nesterov"] is True
    assert g1["params"][0] is b
    for key in ("dampening", "weight_decay", "maximize"):
        assert key in g0 and key in g1

    ref_a, ref_b = RefSGD(lr=0.5), RefSGD(lr=0.1, momentum=0.9, nesterov=True)
    pa, pb = [init[0].copy()], [init[1].copy()]
    for g in grads:
        set_grad(a, g[0])
        set_grad(b, g[1])
        opt.step()
        ref_a.step(pa, [g[0]])
        ref_b.step(pb, [g[1]])
        np.testing.assert_allclose(to_np(a), pa[0], **TOL)
        np.testing.assert_allclose(to_np(b), pb[0], **TOL)


def test_adam_param_groups_and_add_param_group():
    init, grads = make_problem(seed=7, nsteps=4)
    a, b = make_param(init[0]), make_param(init[1])
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": [b], "betas": (0.5, 0.9), "amsgrad": True})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["lr"] == 0.1
    assert opt.param_groups[1]["eps"] == 1e-8
    ref_a = RefAdam(lr=0.1)
    ref_b = RefAdam(lr=0.1, betas=(0.5, 0.9), amsgrad=True)
    pa, pb = [init[0].copy()], [init[1].copy()]
    for g in grads:
        set_grad(a, g[0])
        set_grad(b, g[1])
        opt.step()
        ref_a.step(pa, [g[0]])
        ref_b.step(pb, [g[1]])
    np.testing.assert_allclose(to_np(a), pa[0], **TOL)
    np.testing.assert_allclose(to_np(b), pb[0], **TOL)
    assert "max_exp_avg_sq" in opt.state[b] and "max_exp_avg_sq" not in opt.state[a]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_changing_lr_between_steps(name):
    init, grads = make_problem(seed=8, nsteps=5)
    cfg = STATEFUL[name]
    lr0 = cfg["lr"]
    schedule = [lr0, lr0, lr0 * 0.1, lr0 * 0.1, lr0 * 3.0]
    expected, _ = run_reference(name, cfg, init, grads, lr_schedule=schedule)
    params = [make_param(a) for a in init]
    opt = build(name, params, **cfg)
    for k, g in enumerate(grads):
        for group in opt.param_groups:
            group["lr"] = schedule[k]
        for p, gk in zip(params, g):
            set_grad(p, gk)
        opt.step()
        for p, e in zip(params, expected[k]):
            np.testing.assert_allclose(to_np(p), e, **TOL)


# --------------------------------------------------------------------------
# state_dict / load_state_dict
# --------------------------------------------------------------------------
def snapshot(obj):
    if isinstance(obj, gj.Tensor):
        return ("T", obj.dtype, to_np(obj))
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return copy.deepcopy(obj)


def assert_same_snapshot(a, b):
    if isinstance(a, tuple) and len(a) == 3 and a and a[0] == "T":
        assert isinstance(b, tuple) and b[0] == "T"
        assert a[1] == b[1]
        assert np.array_equal(a[2], b[2])
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for k in a:
            assert_same_snapshot(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_snapshot(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip(name):
    init, grads = make_problem(seed=9, nsteps=6)
    cfg = STATEFUL[name]
    params_a = [make_param(x) for x in init]
    opt_a = build(name, params_a, **cfg)
    for g in grads[:3]:
        for p, gk in zip(params_a, g):
            set_grad(p, gk)
        opt_a.step()

    sd = opt_a.state_dict()
    saved = snapshot(sd)
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 1]
    assert sd["param_groups"][0]["params"] == [0, 1]
    assert sd["param_groups"][0]["lr"] == cfg["lr"]
    for v in sd["state"][0].values():
        if isinstance(v, gj.Tensor):
            assert all(v is not s for s in opt_a.state[params_a[0]].values())

    # fresh optimizer (different hyper-parameters) over copies of the params
    params_b = [make_param(to_np(p)) for p in params_a]
    opt_b = build(name, params_b, **dict(cfg, lr=0.123))
    opt_b.load_state_dict(sd)
    assert opt_b.param_groups[0]["lr"] == cfg["lr"]
    assert opt_b.param_groups[0]["params"][0] is params_b[0]
    for pa, pb in zip(params_a, params_b):
        assert set(opt_b.state[pb]) == set(opt_a.state[pa])

    for g in grads[3:]:
        for pa, pb, gk in zip(params_a, params_b, g):
            set_grad(pa, gk)
            set_grad(pb, gk)
        opt_a.step()
        opt_b.step()
        for pa, pb in zip(params_a, params_b):
            assert np.array_equal(to_np(pa), to_np(pb))

    for pa, pb in zip(params_a, params_b):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert set(sa) == set(sb)
        for k in sa:
            if isinstance(sa[k], gj.Tensor):
                assert np.array_equal(to_np(sa[k]), to_np(sb[k]))
            else:
                assert sa[k] == sb[k]

    # the saved dict was neither changed by opt_a's later steps nor aliased
    # by opt_b's loaded state
    assert_same_snapshot(saved, snapshot(sd))


def test_state_dict_multiple_groups_indices():
    init, grads = make_problem(seed=10, nsteps=2)
    a, b = make_param(init[0]), make_param(init[1])
    c = make_param(np.ones(2))
    opt = optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 0.5}],
                    lr=0.1, momentum=0.9)
    for g in grads:
        set_grad(a, g[0])
        set_grad(b, g[1])
        opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 1]  # c never had a gradient
    np.testing.assert_array_equal(to_np(sd["state"][1]["momentum_buffer"]),
                                  to_np(opt.state[b]["momentum_buffer"]))
    assert sd["param_groups"][1]["lr"] == 0.5

    a2, b2, c2 = (make_param(to_np(t)) for t in (a, b, c))
    opt2 = optim.SGD([{"params": [a2, b2]}, {"params": [c2]}], lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.5
    assert opt2.param_groups[1]["params"][0] is c2
    assert c2 not in opt2.state
    np.testing.assert_array_equal(to_np(opt2.state[b2]["momentum_buffer"]),
                                  to_np(opt.state[b]["momentum_buffer"]))


def test_load_state_dict_errors():
    init, grads = make_problem(seed=11, nsteps=1)
    a, b = make_param(init[0]), make_param(init[1])
    opt = optim.Adam([a, b], lr=0.1)
    set_grad(a, grads[0][0])
    set_grad(b, grads[0][1])
    opt.step()
    sd = opt.state_dict()

    a2, b2 = make_param(init[0]), make_param(init[1])
    two_groups = optim.Adam([{"params": [a2]}, {"params": [b2]}], lr=0.1)
    with pytest.raises(ValueError, match="number of parameter groups"):
        two_groups.load_state_dict(sd)
    assert len(two_groups.state) == 0

    smaller = optim.Adam([make_param(init[0])], lr=0.1)
    with pytest.raises(ValueError, match="size"):
        smaller.load_state_dict(sd)
    assert len(smaller.state) == 0
    assert smaller.param_groups[0]["lr"] == 0.1


def test_load_state_dict_casts_to_param_dtype():
    init, grads = make_problem(seed=12, nsteps=2)
    params = [make_param(x) for x in init]
    opt = optim.Adam(params, lr=0.1, amsgrad=True)
    for g in grads:
        for p, gk in zip(params, g):
            set_grad(p, gk)
        opt.step()
    sd = opt.state_dict()
    p32 = [make_param(x, dtype=gj.float32) for x in init]
    opt32 = optim.Adam(p32, lr=0.1, amsgrad=True)
    opt32.load_state_dict(sd)
    for p, p64 in zip(p32, params):
        st = opt32.state[p]
        for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert st[k].dtype == gj.float32
            np.testing.assert_allclose(to_np(st[k]), to_np(opt.state[p64][k]),
                                       rtol=1e-6)
    for p, gk in zip(p32, grads[0]):
        set_grad(p, gk, dtype=gj.float32)
    opt32.step()
    assert all(p.dtype == gj.float32 for p in p32)
    # the float64 tensors of the saved dict were not converted in place
    assert sd["state"][0]["exp_avg"].dtype == F64


def test_state_dict_is_deep_copy_of_hyperparameters():
    p = make_param(np.ones(3))
    opt = optim.Adam([p], lr=0.1, betas=(0.8, 0.9))
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 99.0
    assert opt.param_groups[0]["lr"] == 0.1
    opt.param_groups[0]["lr"] = 0.2
    assert sd["param_groups"][0]["betas"] == (0.8, 0.9)
    assert sd["state"] == {}


# --------------------------------------------------------------------------
# construction / validation
# --------------------------------------------------------------------------
def _p():
    return make_param(np.ones(2))


INVALID = [
    (lambda: optim.SGD([_p()], lr=-1), "Invalid learning rate: -1"),
    (lambda: optim.SGD([_p()], lr=0.1, momentum=-0.5), "Invalid momentum value"),
    (lambda: optim.SGD([_p()], weight_decay=-1), "Invalid weight_decay value"),
    (lambda: optim.SGD([_p()], nesterov=True), "Nesterov momentum requires"),
    (lambda: optim.SGD([_p()], momentum=0.9, dampening=0.1, nesterov=True),
     "Nesterov momentum requires"),
    (lambda: optim.Adam([_p()], lr=-1), "Invalid learning rate: -1"),
    (lambda: optim.Adam([_p()], eps=-1e-8), "Invalid epsilon value"),
    (lambda: optim.Adam([_p()], betas=(1.0, 0.999)), "Invalid beta parameter at index 0"),
    (lambda: optim.Adam([_p()], betas=(0.9, -0.1)), "Invalid beta parameter at index 1"),
    (lambda: optim.Adam([_p()], weight_decay=-0.1), "Invalid weight_decay value"),
    (lambda: optim.AdamW([_p()], lr=-0.5), "Invalid learning rate: -0.5"),
    (lambda: optim.AdamW([_p()], betas=(0.9, 1.5)), "Invalid beta parameter at index 1"),
    (lambda: optim.Adagrad([_p()], lr=-1), "Invalid learning rate: -1"),
    (lambda: optim.Adagrad([_p()], lr_decay=-1), "Invalid lr_decay value"),
    (lambda: optim.Adagrad([_p()], initial_accumulator_value=-1),
     "Invalid initial_accumulator_value value"),
    (lambda: optim.Adagrad([_p()], eps=-1), "Invalid epsilon value"),
    (lambda: optim.RMSprop([_p()], lr=-1), "Invalid learning rate: -1"),
    (lambda: optim.RMSprop([_p()], alpha=-0.1), "Invalid alpha value"),
    (lambda: optim.RMSprop([_p()], momentum=-0.1), "Invalid momentum value"),
    (lambda: optim.RMSprop([_p()], eps=-1), "Invalid epsilon value"),
    (lambda: optim.Adadelta([_p()], lr=-1), "Invalid learning rate: -1"),
    (lambda: optim.Adadelta([_p()], rho=1.5), "Invalid rho value"),
    (lambda: optim.Adadelta([_p()], eps=-1), "Invalid epsilon value"),
    (lambda: optim.Adadelta([_p()], weight_decay=-1), "Invalid weight_decay value"),
]


@pytest.mark.parametrize("ctor,msg", INVALID, ids=[m for _, m in INVALID])
def test_invalid_arguments(ctor, msg):
    with pytest.raises(ValueError, match=msg):
        ctor()


def test_invalid_params_argument():
    p = _p()
    with pytest.raises(TypeError):
        optim.SGD(p, lr=0.1)  # a bare tensor, not an iterable of tensors
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD([p, 3.0], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([p, p], lr=0.1)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1
    x = make_param(np.ones(2))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([x * 2], lr=0.1)


def test_missing_required_option():
    p, q = _p(), _p()
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        optim.Optimizer([p], {"lr": optim.required, "momentum": 0.5})
    opt = optim.Optimizer([{"params": [p], "lr": 0.1}],
                          {"lr": optim.required, "momentum": 0.5})
    assert opt.param_groups[0]["momentum"] == 0.5
    assert opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        opt.add_param_group({"params": [q], "momentum": 0.1})
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        optim.SGD([p], lr=optim.required)
    opt2 = optim.SGD([{"params": [p], "lr": 0.3}], lr=optim.required)
    assert opt2.param_groups[0]["lr"] == 0.3
    assert opt2.param_groups[0]["momentum"] == 0


def test_base_optimizer_groups_and_step():
    p, q = _p(), _p()
    opt = optim.Optimizer([{"params": [p], "lr": 0.1}, {"params": [q]}],
                          {"lr": 0.5, "foo": (1, 2)})
    assert opt.param_groups[0]["lr"] == 0.1
    assert opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[1]["foo"] == (1, 2)
    assert opt.defaults == {"lr": 0.5, "foo": (1, 2)}
    with pytest.raises(NotImplementedError):
        opt.step()


def test_repr():
    p = _p()
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    assert repr(opt) == ("SGD (\n"
                         "Parameter Group 0\n"
                         "    dampening: 0\n"
                         "    lr: 0.1\n"
                         "    maximize: False\n"
                         "    momentum: 0.9\n"
                         "    nesterov: False\n"
                         "    weight_decay: 0\n"
                         ")")
    opt2 = optim.Adam([{"params": [p]}, {"params": [_p()], "lr": 0.5}])
    r = repr(opt2)
    assert r.startswith("Adam (\nParameter Group 0\n    amsgrad: False\n")
    assert "Parameter Group 1\n" in r and "    lr: 0.5\n" in r
    assert r.endswith(")")


def test_exports():
    for n in ("Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"):
        assert hasattr(optim, n)
    assert issubclass(optim.AdamW, optim.Optimizer)
    assert gj.optim is optim


def test_optimizers_do_not_use_numpy():
    """Updates must be graphjit tensor expressions (traceable), not NumPy. L-BFGS is the
    exception: like PyTorch's, it decides each step on the host (its line search is scalar
    arithmetic on values it reads), and compiles only the closure."""
    pkg = pathlib.Path(inspect.getfile(optim)).parent
    for f in pkg.glob("*.py"):
        if f.name == "lbfgs.py":
            continue
        src = f.read_text()
        assert "import numpy" not in src and "np." not in src, f.name
