"""LR schedulers against learning-rate sequences computed by hand from their definitions,
and a scheduled compiled training step that never recompiles."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphjit as gj
from graphjit.optim import lr_scheduler as S


def _opt(lr=0.1, cls=gj.optim.SGD, **kw):
    return cls([gj.zeros(2, requires_grad=True)], lr=lr, **kw)


def _lrs(opt, sched, n, metric=None):
    """The lr in use at steps 0..n-1 (step() after each optimizer step, as in PyTorch)."""
    out = []
    for i in range(n):
        out.append(opt.param_groups[0]["lr"])
        sched.step() if metric is None else sched.step(metric(i))
    return out


def _check(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_step_lr():
    opt = _opt(0.1)
    _check(_lrs(opt, S.StepLR(opt, step_size=3, gamma=0.5), 8),
           [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])


def test_multistep_lr_with_repeated_milestone():
    opt = _opt(1.0)
    _check(_lrs(opt, S.MultiStepLR(opt, milestones=[2, 4, 4], gamma=0.1), 6),
           [1.0, 1.0, 0.1, 0.1, 0.001, 0.001])


def test_exponential_lr():
    opt = _opt(0.2)
    _check(_lrs(opt, S.ExponentialLR(opt, gamma=0.9), 5), [0.2 * 0.9 ** k for k in range(5)])


def test_cosine_annealing_follows_the_closed_form_and_rises_after_t_max():
    opt = _opt(0.1)
    T, eta = 4, 0.01
    closed = [eta + (0.1 - eta) * (1 + math.cos(math.pi * t / T)) / 2 for t in range(2 * T + 1)]
    _check(_lrs(opt, S.CosineAnnealingLR(opt, T_max=T, eta_min=eta), 2 * T + 1), closed)


def test_linear_lr():
    opt = _opt(0.1)
    factors = [0.25 + (1.0 - 0.25) * min(t, 3) / 3 for t in range(6)]
    _check(_lrs(opt, S.LinearLR(opt, start_factor=0.25, total_iters=3), 6), [0.1 * f for f in factors])


def test_lambda_lr_per_group():
    a, b = gj.zeros(1, requires_grad=True), gj.zeros(1, requires_grad=True)
    opt = gj.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.5)
    sched = S.LambdaLR(opt, [lambda e: 1 / (e + 1), lambda e: 0.5 ** e])
    seen = []
    for _ in range(4):
        seen.append([g["lr"] for g in opt.param_groups])
        sched.step()
    _check(np.array(seen), np.array([[0.5 / (e + 1), 0.5 ** e] for e in range(4)]))


@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_lr_and_momentum(three_phase):
    opt = _opt(0.1, momentum=0.9)
    n, max_lr = 10, 1.0
    sched = S.OneCycleLR(opt, max_lr=max_lr, total_steps=n, pct_start=0.3, three_phase=three_phase)
    lo, lo_final = max_lr / 25.0, max_lr / 25.0 / 1e4

    def cos(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)

    if three_phase:
        phases = [(2.0, lo, max_lr, 0.95, 0.85), (4.0, max_lr, lo, 0.85, 0.95),
                  (9.0, lo, lo_final, 0.95, 0.95)]
    else:
        phases = [(2.0, lo, max_lr, 0.95, 0.85), (9.0, max_lr, lo_final, 0.85, 0.95)]
    want_lr, want_m = [], []
    for t in range(n):
        start = 0.0
        for i, (end, a, b, ma, mb) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                pct = (t - start) / (end - start)
                want_lr.append(cos(a, b, pct))
                want_m.append(cos(ma, mb, pct))
                break
            start = end
    got_lr, got_m = [], []
    for _ in range(n):
        got_lr.append(opt.param_groups[0]["lr"])
        got_m.append(opt.param_groups[0]["momentum"])
        sched.step()
    _check(got_lr, want_lr)
    _check(got_m, want_m)
    with pytest.raises(ValueError, match="Tried to step"):
        sched.step()


def test_one_cycle_cycles_adam_beta1():
    opt = _opt(0.1, cls=gj.optim.Adam, betas=(0.9, 0.99))
    S.OneCycleLR(opt, max_lr=0.5, total_steps=5)
    assert opt.param_groups[0]["betas"] == (0.95, 0.99)
    with pytest.raises(ValueError, match="momentum or beta1"):
        S.OneCycleLR(_opt(0.1, cls=gj.optim.Adagrad), max_lr=0.5, total_steps=5)


def test_reduce_lr_on_plateau_patience_and_cooldown():
    opt = _opt(1.0)
    sched = S.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=0.2)
    metrics = [5, 4, 4, 4, 4, 4, 4, 4, 4]
    seen = []
    for m in metrics:
        sched.step(m)
        seen.append(opt.param_groups[0]["lr"])
    # better, better(=4), bad, bad -> cut (cooldown 1), cooldown, bad, bad -> cut, ... floor 0.2
    _check(seen, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])
    for _ in range(6):
        sched.step(4)
    assert opt.param_groups[0]["lr"] == 0.2


def test_reduce_lr_on_plateau_max_mode_abs_threshold():
    opt = _opt(1.0)
    sched = S.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=0, threshold=0.5,
                                threshold_mode="abs")
    sched.step(1.0)   # better than -inf
    sched.step(1.4)   # not better by 0.5 -> bad, patience 0 -> cut
    _check([opt.param_groups[0]["lr"]], [0.1])


def test_sequential_lr_warmup_then_cosine():
    opt = _opt(0.1)
    warm = S.LinearLR(opt, start_factor=0.1, total_iters=2)
    cos = S.CosineAnnealingLR(opt, T_max=4)
    sched = S.SequentialLR(opt, [warm, cos], milestones=[2])
    got = _lrs(opt, sched, 7)
    want = [0.01, 0.055] + [0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    _check(got, want)


def test_scheduler_state_dict_round_trip():
    opt = _opt(0.1)
    sched = S.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    opt2 = _opt(0.1)
    sched2 = S.StepLR(opt2, step_size=99)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    _check(_lrs(opt2, sched2, 4), _lrs(opt, sched, 4))


def test_scheduled_compiled_step_matches_eager_without_recompiling():
    runs = []
    rng = np.random.default_rng(3)
    x = gj.tensor(rng.normal(size=(8, 3)))
    y = gj.tensor(rng.normal(size=(8, 1)))
    for compiled in (False, True):
        w = gj.tensor(np.full((1, 3), 0.5), requires_grad=True)
        opt = gj.optim.SGD([w], lr=0.1, momentum=0.9)
        sched = S.OneCycleLR(opt, max_lr=0.2, total_steps=12)

        def step():
            opt.zero_grad()
            loss = ((x @ w.T - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        fn = gj.compile(step) if compiled else step
        losses = []
        for _ in range(12):
            losses.append(fn().item())
            sched.step()
        if compiled:
            assert len(fn.explain().splitlines()) == 2, fn.explain()  # first step, steady state
        runs.append((losses, w.detach().numpy().copy()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-10)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-10)
