"""Eager ``opt.step()`` as one compiled program (see [Compiled eager steps] in
graphjit/optim/optimizer.py): in place, runtime hyper-parameters, state_dict continuation.
Values against the NumPy references are in test_optim.py (compiled and reference paths)."""
from __future__ import annotations

import copy
import pickle
import re

import numpy as np
import pytest

import graphjit as gj

STATEFUL = {
    "SGD": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "Adam": dict(lr=0.01, amsgrad=True, weight_decay=0.01),
    "AdamW": dict(lr=0.01),
    "Adagrad": dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adadelta": dict(lr=1.0, weight_decay=0.01),
}
SHAPES = [(64, 32), (32,), (3, 4)]


def _params(seed, dtype=gj.float64):
    rng = np.random.default_rng(seed)
    return [gj.nn.Parameter(gj.tensor(rng.normal(size=s), dtype=dtype)) for s in SHAPES]


def _grads(seed, steps, dtype=gj.float64):
    rng = np.random.default_rng(seed)
    return [[gj.tensor(rng.normal(size=s), dtype=dtype) for s in SHAPES] for _ in range(steps)]


def _run(opt, params, grads):
    for g in grads:
        for p, gk in zip(params, g):
            p.grad = gk
        opt.step()


@pytest.mark.parametrize("name", list(STATEFUL))
def test_steady_state_update_is_in_place_and_allocates_nothing_parameter_sized(name):
    params = _params(0)
    opt = getattr(gj.optim, name)(params, **STATEFUL[name])
    _run(opt, params, _grads(1, 3))
    programs = [e.program for es in opt._compiled_update._cache.values() for e in es]
    assert len(programs) == 1  # the first step ran once, then the steady state was traced
    program = programs[0]
    n_updates = len(program.graph.updates)
    assert n_updates >= len(params) and len(program._in_place) == n_updates
    smallest = min(int(np.prod(s)) for s in SHAPES)
    sizes = [int(n) for n in re.findall(r"np\.(?:empty|zeros|full)\((\d+)", program.source)]
    big = sorted(n for n in sizes if n >= smallest)
    # Only scalars are allocated: every state update is a result of its parameter's loop
    # (Adadelta's delta feeds two updates and is computed once, in one multi-result loop).
    assert not big, sizes


def test_data_pointers_stay_put_across_steps():
    params = _params(2, gj.float32)
    opt = gj.optim.Adam(params, lr=0.01)
    _run(opt, params, _grads(3, 2, gj.float32))
    before = [(p._data.ctypes.data, opt.state[p]["exp_avg"]._data.ctypes.data) for p in params]
    _run(opt, params, _grads(4, 5, gj.float32))
    after = [(p._data.ctypes.data, opt.state[p]["exp_avg"]._data.ctypes.data) for p in params]
    assert before == after


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_changing_options_between_eager_steps_never_recompiles(name):
    runs = []
    for fused in (True, False):
        params = _params(5)
        opt = getattr(gj.optim, name)(params, fused=fused, **STATEFUL[name])
        grads = _grads(6, 8)
        for k, g in enumerate(grads):
            opt.param_groups[0]["lr"] = STATEFUL[name]["lr"] / (k + 1)
            _run(opt, params, [g])
        if fused:
            assert len(opt._compiled_update.explain().splitlines()) == 2
        runs.append([p.detach().numpy().copy() for p in params])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "reference"])
@pytest.mark.parametrize("name", list(STATEFUL))
def test_state_dict_round_trip_mid_training_continues_bit_identically(name, fused):
    grads = _grads(8, 6)
    params = _params(7)
    opt = getattr(gj.optim, name)(params, fused=fused, **STATEFUL[name])
    _run(opt, params, grads[:3])
    saved_params = [p.detach().numpy().copy() for p in params]
    state = opt.state_dict()
    _run(opt, params, grads[3:])
    expected = [p.detach().numpy().copy() for p in params]

    params2 = [gj.nn.Parameter(gj.tensor(a)) for a in saved_params]
    opt2 = getattr(gj.optim, name)(params2, fused=fused, **STATEFUL[name])
    opt2.load_state_dict(state)
    _run(opt2, params2, grads[3:])
    for a, b in zip(params2, expected):
        np.testing.assert_array_equal(a.detach().numpy(), b)


def test_deepcopy_and_pickle_of_a_compiled_optimizer():
    params = _params(9)
    opt = gj.optim.SGD(params, lr=0.1, momentum=0.9)
    _run(opt, params, _grads(10, 2))
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone.fused and clone._compiled_update is None
        assert len(clone.state) == len(params)


def test_inside_a_compiled_step_the_update_shares_the_loop_of_the_gradients_last_use():
    """A parameter whose gradient is elementwise work: the gradient, the moment updates and
    the loss are one loop; the numbers are eager's over several steps."""
    def make():
        gj.manual_seed(3)
        w = gj.nn.Parameter(gj.randn(16, 8, dtype=gj.float64))
        return w, gj.optim.Adam([w], lr=0.05)

    x = gj.randn(16, 8, dtype=gj.float64)

    def step(w, opt):
        opt.zero_grad()
        loss = ((x * w).tanh() ** 2).sum()
        loss.backward()
        opt.step()
        return loss

    w, opt = make()
    compiled = gj.compile(lambda: step(w, opt))
    losses = [compiled().item() for _ in range(4)]
    (graph,) = compiled.graphs()
    grad = next(v for t, v in graph.updates if t.role == "grad")
    exp_avg = next(v for t, v in graph.updates if t.name.endswith("exp_avg"))
    grad_node = grad.node
    assert grad_node.op.name == "fused" and exp_avg.node is grad_node
    assert any(v is graph.outputs[0] for v in grad_node.outs)  # the loss too
    w_e, opt_e = make()
    eager = [step(w_e, opt_e).item() for _ in range(4)]
    np.testing.assert_allclose(losses, eager, rtol=1e-10)
    np.testing.assert_allclose(w.detach().numpy(), w_e.detach().numpy(), rtol=1e-10)
