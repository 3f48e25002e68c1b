"""Tiered execution ([Tiered execution] in graphjit/backend/cpu/tiered.py): a compiled
program's first tier (its optimised graph on NumPy) gives eager's numbers, updates the
same buffers in place, raises the native program's errors, says so in ``explain()`` and
the dump, and hands over to the native program at a call boundary.

The rest of the suite runs with ``GRAPHJIT_TIERED=0`` (tests/conftest.py); these tests
choose the tier per function (``compile(fn, tiered=...)``), and never depend on when a
background compile ends: ``wait_compiled()`` waits for it."""
from __future__ import annotations

import os

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.backend.cpu import compile_graph
from graphjit.backend.cpu import tiered as tiered_module
from graphjit.backend.cpu.tiered import TieredProgram
from graphjit.ir import parse_graph, run_graph
from graphjit.ir.interpret import Interpreter
from graphjit.jit.tiers import tier_mode
from graphjit.testing import assert_close


def _mlp_and_adam(seed):
    gj.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))
    opt = gj.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.1, amsgrad=True)
    return model, opt


def _step_fn(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _state(model, opt):
    """Every number a step changes: parameters, gradients and Adam's state."""
    out = {}
    for i, p in enumerate(model.parameters()):
        out[f"p{i}"] = p.detach().numpy().copy()
        out[f"g{i}"] = p.grad.numpy().copy()
        for k, v in opt.state[p].items():
            out[f"{k}{i}"] = np.array(v.numpy() if isinstance(v, gj.Tensor) else v)
    return out


def _buffers(model, opt):
    """The arrays holding parameters and optimizer state (updated in place, never replaced)."""
    return [p._data for p in model.parameters()] + [
        v._data for p in model.parameters() for v in opt.state[p].values()
        if isinstance(v, gj.Tensor)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(22)
    return [(gj.tensor(rng.standard_normal((5, 6)).astype(np.float32)),
             gj.tensor(rng.integers(0, 3, size=5))) for _ in range(4)]


def test_interpreter_tier_matches_native_and_eager_in_place(data):
    runs = {}
    for how in ("eager", "interpret", "native"):
        model, opt = _mlp_and_adam(3)
        step = _step_fn(model, opt)
        if how != "eager":
            step = gj.compile(step, tiered=(how == "interpret" and "interpret"))
        losses, kept = [], None
        for k, (x, y) in enumerate(data):
            losses.append(step(x, y).item())
            if k == 1:  # Adam's state exists from the first step on
                kept = _buffers(model, opt)
        # In place: the parameters and the state are the same arrays, with new values.
        assert all(a is b for a, b in zip(kept, _buffers(model, opt))), how
        runs[how] = (losses, _state(model, opt), step)
    for how in ("interpret", "native"):
        assert_close(np.array(runs[how][0]), np.array(runs["eager"][0]), rtol=1e-5, atol=1e-6)
        for key, value in runs["eager"][1].items():
            assert_close(runs[how][1][key], value, rtol=1e-5, atol=1e-6)
    assert runs["eager"][1]["p0"].tolist() != _mlp_and_adam(3)[0][0].weight.detach().numpy().tolist()
    explained = runs["interpret"][2].explain().splitlines()
    assert len(explained) == 2  # one line per trace, as natively
    assert "ran on: program step: NumPy interpreter for 1 call only" in explained[0]
    assert "NumPy interpreter for 3 calls only, no native code" in explained[1]
    assert "ran on:" not in runs["native"][2].explain()


def test_interpreter_runs_fused_and_gemm_nodes_as_run_graph_does(rng):
    g = parse_graph("""graph f(%x: f32[4,3] {arg}, %w: f32[5,3] {param}, %b: f32[5] {param}) {
  %0 = gemm(%x, %w, %b, epilogue='t0 = add(i0, i1); t1 = tanh(t0)', trans_a=false, trans_b=true) : f32[4,5]
  %1, %2 = fused(%0, body='t0 = mul(i0, i0); t1 = sum(t0, dims=[1], keepdim=false); return t0, t1') : f32[4,5], f32[4]
  %3 = sum(%2, dims=[0], keepdim=false) : f32[]
  %4 = sum(%1, dims=[0], keepdim=false) : f32[5]
  return %3, %1
  update %b <- %4
}""")
    inputs = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
    want_out, want_up = run_graph(g, inputs)
    got_out, got_up = Interpreter(g).run(inputs)
    for a, b in zip(got_out + got_up, want_out + want_up):
        np.testing.assert_array_equal(a, b)


def test_index_errors_are_the_native_programs_and_change_nothing():
    def make(tiered):
        gj.manual_seed(0)
        table = nn.Parameter(gj.randn(7, 3))
        opt = gj.optim.SGD([table], lr=0.5, momentum=0.9)

        def step(i, j):
            opt.zero_grad()
            loss = (table[i, j] ** 2).sum()
            loss.backward()
            opt.step()
            return loss
        return table, gj.compile(step, tiered=tiered)

    errors = {}
    for tiered in ("interpret", False):
        table, step = make(tiered)
        for _ in range(2):  # momentum's state exists after the first step
            step(gj.tensor([1, 2, 6]), gj.tensor([0, 2, 1]))
        before = table.detach().numpy().copy()
        for bad in (([0, 7, -9], [0, 0, 0]), ([0, 1, 2], [0, -4, 3]), ([-8, 1, 2], [3, 0, 0])):
            with pytest.raises(IndexError) as e:
                step(gj.tensor(bad[0]), gj.tensor(bad[1]))
            errors.setdefault(str(bad), []).append(str(e.value))
        np.testing.assert_array_equal(table.detach().numpy(), before)
        step(gj.tensor([-1, 0, 0]), gj.tensor([-3, 1, 1]))  # negative indices wrap, as eagerly
        assert not np.array_equal(table.detach().numpy(), before)
    for bad, (interpreted, native) in errors.items():
        assert interpreted == native, bad
        assert "out of range [-7, 7) for dim 0" in native or "[-3, 3) for dim 1" in native


def test_a_compiled_forward_and_its_backward_on_the_interpreter(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    grads = {}
    for tiered in ("interpret", False, None):
        gj.manual_seed(1)
        model = nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 2))
        run = model if tiered is None else gj.compile(model, tiered=tiered)
        out = run(gj.tensor(x))
        (out * out).sum().backward()
        grads[tiered] = (out.detach().numpy(), [p.grad.numpy() for p in model.parameters()])
    for tiered in ("interpret", False):
        assert_close(grads[tiered][0], grads[None][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(grads[tiered][1], grads[None][1]):
            assert_close(a, b, rtol=1e-5, atol=1e-6)


def _linear_and_sgd(seed):
    gj.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 3))
    return model, gj.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def test_tiered_start_hands_over_to_native_code_at_a_call_boundary(data, tmp_path,
                                                                     monkeypatch):
    # A cache folder of its own: nothing of this program is compiled yet, in this process
    # or on disk, so its first calls must run on the interpreter. (A small step: its
    # kernels are compiled here, by the workers.)
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cache"))
    eager_model, eager_opt = _linear_and_sgd(5)
    model, opt = _linear_and_sgd(5)
    eager, step = _step_fn(eager_model, eager_opt), gj.compile(_step_fn(model, opt),
                                                                tiered=True)
    for k in range(2):
        assert_close(step(*data[k]).item(), eager(*data[k]).item(), rtol=1e-5, atol=1e-6)
    (entry,) = [e for es in step._cache.values() for e in es]
    program = entry.program
    assert isinstance(program, TieredProgram) and program.tier.interpreted_calls >= 1
    explained = step.explain().splitlines()
    # The first step creates the momentum buffers: a program that runs once, never compiled.
    assert "program step: NumPy interpreter for 1 call only" in explained[0]
    assert step.wait_compiled() is True
    assert program.tier.tier == "native" and program.path and os.path.exists(program.path)
    switched_at = program.tier.native_since
    assert switched_at == program.tier.interpreted_calls + 1
    kept = _buffers(model, opt)
    for k in range(2, 4):
        assert_close(step(*data[k]).item(), eager(*data[k]).item(), rtol=1e-5, atol=1e-6)
    assert all(a is b for a, b in zip(kept, _buffers(model, opt)))
    for key, value in _state(eager_model, eager_opt).items():
        assert_close(_state(model, opt)[key], value, rtol=1e-5, atol=1e-6)
    assert program.tier.interpreted_calls == switched_at - 1  # no interpreted call since
    assert ("while Numba compiled it in the background" in step.explain()
            and f"native since call {switched_at}" in step.explain())
    # The same program in a new compiled function: every kernel is compiled now.
    model2, opt2 = _linear_and_sgd(5)
    again = gj.compile(_step_fn(model2, opt2), tiered=True)
    again(*data[0])
    again(*data[1])
    assert "native from its first call" in again.explain().splitlines()[1]


def _loads_its_first_step_and_matches_eager(seed, data, eager_model, eager_opt, eager):
    """A new tiered step on a fresh model and SGD (``_linear_and_sgd(seed)``) runs native code
    from its first call (its first step loaded from the cache) and matches the eager run."""
    model, opt = _linear_and_sgd(seed)
    step = gj.compile(_step_fn(model, opt), tiered=True)
    for k in range(2):
        assert_close(step(*data[k]).item(), eager(*data[k]).item(), rtol=1e-5, atol=1e-6)
    assert "native from its first call" in step.explain().splitlines()[0]
    for key, value in _state(eager_model, eager_opt).items():
        assert_close(_state(model, opt)[key], value, rtol=1e-5, atol=1e-6)


def test_a_program_that_runs_once_loads_the_code_an_earlier_compile_left(data, tmp_path,
                                                                         monkeypatch):
    # The first optimizer step (it creates the momentum buffers) runs once: tiered, it is
    # interpreted, unless its code is in the cache already (compiled by a run with
    # tiered=False), which is then loaded: tier "once".
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cache"))
    eager_model, eager_opt = _linear_and_sgd(7)
    eager = _step_fn(eager_model, eager_opt)
    fresh = gj.compile(_step_fn(*_linear_and_sgd(7)), tiered=True)
    fresh(*data[0])
    assert "NumPy interpreter for 1 call only" in fresh.explain().splitlines()[0]
    native = gj.compile(_step_fn(*_linear_and_sgd(7)), tiered=False)
    native(*data[0])
    _loads_its_first_step_and_matches_eager(7, data, eager_model, eager_opt, eager)


def test_a_program_run_once_is_compiled_for_the_next_process(data, tmp_path, monkeypatch):
    # Tiered, the first optimizer step is interpreted; once nothing else compiles (here: after
    # the steady step's background compile), it is compiled into the cache, nothing loading
    # it, its bundles are written (by one more worker), and the next run of it (here a new
    # compiled function, as in a restart) loads it.
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHJIT_COMPILE_WORKERS", "1")
    eager_model, eager_opt = _linear_and_sgd(8)
    eager = _step_fn(eager_model, eager_opt)
    first = gj.compile(_step_fn(*_linear_and_sgd(8)), tiered=True)
    first(*data[0])
    assert "NumPy interpreter for 1 call only" in first.explain().splitlines()[0]
    (fill,) = tiered_module._FILLS  # (what the fill will compile: the modules of that step)
    prepared = fill()
    assert prepared.missing() and prepared.needs_bundles()
    first(*data[1])
    assert tiered_module.wait_background(timeout=600, fills=True)
    assert not tiered_module._FILLS and not any(job.fill for job in tiered_module._RUNNING)
    assert not prepared.missing() and not prepared.needs_bundles()
    _loads_its_first_step_and_matches_eager(8, data, eager_model, eager_opt, eager)


def test_interpret_only_programs_never_compile(rng):
    g = parse_graph("""graph f(%x: f32[3] {arg}) {
  %0 = exp(%x) : f32[3]
  return %0
}""")
    program = compile_graph(g, tier="interpret")
    x = rng.standard_normal(3).astype(np.float32)
    (out,), _ = program([x])
    assert_close(out, np.exp(x), rtol=1e-6, atol=0)
    assert program.path is None and program.wait() is None
    assert program.tier.describe() == "NumPy interpreter for 1 call only, no native code"
    with pytest.raises(ValueError, match="tier must be one of"):
        compile_graph(g, tier="fast")


@pytest.mark.parametrize("option, env, mode", [
    (None, None, "tiered"), (None, "0", "native"), (None, "1", "tiered"),
    (None, "interpret", "interpret"), (True, "0", "tiered"), (False, "1", "native"),
    ("interpret", None, "interpret")])
def test_the_switch(option, env, mode, monkeypatch):
    if env is None:
        monkeypatch.delenv("GRAPHJIT_TIERED", raising=False)
    else:
        monkeypatch.setenv("GRAPHJIT_TIERED", env)
    assert tier_mode(option) == mode


def test_a_bad_switch_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("GRAPHJIT_TIERED", "sometimes")
    with pytest.raises(ValueError, match="GRAPHJIT_TIERED must be 1, 0 or interpret"):
        tier_mode(None)
    with pytest.raises(ValueError, match="tiered must be True, False, 'interpret' or None"):
        tier_mode("yes")
