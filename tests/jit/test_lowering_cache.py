"""The lowering cache ([The lowering cache] in graphjit/jit/lowering_cache.py): a program
found there runs exactly as the one lowered afresh, and anything the lowered program
depends on (constant data, attribute values, graphjit's code) makes a new entry instead of
a stale hit. The rest of the suite runs with the cache off (tests/conftest.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.ir.printer import print_graph
from graphjit.jit import lowering_cache


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """The lowering cache on, its entries in a folder of this test's own."""
    monkeypatch.setenv("GRAPHJIT_LOWERING_CACHE", "1")
    monkeypatch.setattr(lowering_cache, "_path", lambda k: str(tmp_path / f"{k[:40]}.pickle"))
    monkeypatch.setattr(lowering_cache, "counts", {"hits": 0, "misses": 0, "stores": 0})
    monkeypatch.setattr(lowering_cache, "generated_counts", {"hits": 0, "misses": 0, "stores": 0})
    return tmp_path


def _training_run(seed, xs, ys, compiled=True):
    """Three steps of a small classifier with SGD momentum and weight decay: the loss of
    each step, and the parameters, gradients and momentum buffers after them."""
    gj.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = gj.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    fn = gj.compile(step) if compiled else step
    losses = [float(fn(gj.tensor(x), gj.tensor(y))) for x, y in zip(xs, ys)]
    state = [p.detach().numpy().copy() for p in model.parameters()]
    state += [p.grad.numpy().copy() for p in model.parameters()]
    state += [opt.state[p]["momentum_buffer"].numpy().copy() for p in model.parameters()]
    return losses, state, fn


def _data(rng, steps=3):
    xs = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(steps)]
    ys = [rng.integers(0, 3, 4) for _ in range(steps)]
    return xs, ys


def _entries(fn):
    fn = getattr(fn, "_compiled", fn)  # (a compiled module's function)
    return [e for entries in fn._cache.values() for e in entries]


def _run_twice(run, seed, xs, ys):
    """``run`` lowered afresh, then again from the cache: the same losses and tensors bit
    for bit (the same program, updating the second model's own tensors in place); returns
    the two compiled functions and the second run's losses and tensors."""
    losses0, state0, fn0 = run(seed, xs, ys)
    assert lowering_cache.counts["stores"] >= 1 and lowering_cache.counts["hits"] == 0
    losses1, state1, fn1 = run(seed, xs, ys)
    assert lowering_cache.counts["hits"] >= 1
    assert any(e.from_lowering_cache for e in _entries(fn1))
    assert not any(e.from_lowering_cache for e in _entries(fn0))
    assert losses1 == losses0
    for a, b in zip(state1, state0):
        np.testing.assert_array_equal(a, b)
    return fn0, fn1, losses1, state1


def test_a_program_found_in_the_cache_runs_as_the_one_lowered_afresh(cache, rng):
    xs, ys = _data(rng)
    fn0, fn1, losses1, state1 = _run_twice(_training_run, 3, xs, ys)
    # What explain() and the dump show: the same stages and statistics.
    for e0, e1 in zip(_entries(fn0), _entries(fn1)):
        assert e1.snapshots == e0.snapshots
        assert e1.pass_stats == e0.pass_stats
        assert print_graph(e1.graph, sources=True) == print_graph(e0.graph, sources=True)
    # And the eager reference.
    losses_e, state_e, _ = _training_run(3, xs, ys, compiled=False)
    np.testing.assert_allclose(losses1, losses_e, rtol=1e-5)
    for a, b in zip(state1, state_e):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _scaled(table, scale):
    """A function whose traced graph reads ``table`` (an input holding the array: arrays are
    data, not baked into the program) and has ``scale`` as an attribute; every call site is
    the same source line."""
    def f(x):
        return (x * gj.tensor(table)).sum(dim=1) * scale
    return gj.compile(f)


def test_other_attribute_values_are_other_entries_and_other_array_data_is_not(cache, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t1 = rng.standard_normal((3, 4)).astype(np.float32)
    t2 = t1.copy()
    t2[1, 2] += 1.0  # one element differs
    for table, scale in ((t1, 0.5), (t2, 0.5), (t1, 0.25), (t1, 0.5)):
        out = _scaled(table, scale)(gj.tensor(x)).numpy()
        np.testing.assert_allclose(out, (x * table).sum(axis=1) * scale, rtol=1e-6)
    # Two programs: scale 0.5 (found again for t2, whose data the program reads at each
    # call, and for the last) and scale 0.25.
    assert lowering_cache.counts == {"hits": 2, "misses": 2, "stores": 2}


def test_the_key_holds_constant_data_input_roles_and_options():
    from graphjit.ir import parse_graph
    text = """
    graph f(%x: f32[4] {arg}, %w: f32[4] {param}) {
      %0 = mul(%x, %w) : f32[4]
      return %0
      update %w <- %0
    }"""
    passes = ["autodiff", "fuse"]

    def key_of(constant=None, text=text, passes=passes, options=None):
        g = parse_graph(text)
        if constant is not None:
            c = g.add_constant(constant)
            g.outputs.append(c)
        return lowering_cache.key(g, passes, options or {"inplace": True})
    base = key_of()
    assert key_of() == base
    c1 = np.arange(4, dtype=np.float32)
    c2 = c1.copy()
    c2[3] = -1.0
    assert key_of(c1) == key_of(c1.copy())
    assert len({base, key_of(c1), key_of(c2), key_of(c1.astype(np.float64)),
                key_of(text=text.replace("{param}", "{buffer}")),
                key_of(passes=["autodiff"]), key_of(options={"inplace": False})}) == 7


def test_a_change_of_graphjits_code_is_a_miss(cache, rng, monkeypatch):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    table = rng.standard_normal((3, 4)).astype(np.float32)
    _scaled(table, 2.0)(gj.tensor(x))
    monkeypatch.setattr(lowering_cache, "_code_version", "an edited pass")
    out = _scaled(table, 2.0)(gj.tensor(x)).numpy()
    np.testing.assert_allclose(out, (x * table).sum(axis=1) * 2.0, rtol=1e-6)
    assert lowering_cache.counts == {"hits": 0, "misses": 2, "stores": 2}


def test_a_garbled_entry_is_a_miss_and_is_written_again(cache, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    table = rng.standard_normal((3, 4)).astype(np.float32)
    _scaled(table, 3.0)(gj.tensor(x))
    (entry,) = list(cache.iterdir())
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # a truncated file
    out = _scaled(table, 3.0)(gj.tensor(x)).numpy()
    np.testing.assert_allclose(out, (x * table).sum(axis=1) * 3.0, rtol=1e-6)
    assert lowering_cache.counts["hits"] == 0 and lowering_cache.counts["stores"] == 2
    assert entry.read_bytes() == data
    _scaled(table, 3.0)(gj.tensor(x))
    assert lowering_cache.counts["hits"] == 1
    # One byte changed (a pickle that may still load, as another program): sealed, a miss.
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    entry.write_bytes(bytes(flipped))
    out = _scaled(table, 3.0)(gj.tensor(x)).numpy()
    np.testing.assert_allclose(out, (x * table).sum(axis=1) * 3.0, rtol=1e-6)
    assert lowering_cache.counts["hits"] == 1 and entry.read_bytes() == data


def test_a_program_of_other_inputs_is_not_taken_for_the_entry(cache, rng):
    # Same text but for the inputs' dtypes: a different key; the decode check would also
    # refuse an entry whose inputs are not the traced graph's.
    table = np.ones((3, 4), np.float32)
    f = _scaled(table, 1.0)
    f(gj.tensor(rng.standard_normal((3, 4)).astype(np.float32)))
    x64 = rng.standard_normal((3, 4))
    out = f(gj.tensor(x64)).numpy()
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, x64.sum(axis=1), rtol=1e-12)
    assert lowering_cache.counts["hits"] == 0


_RESTART = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphjit as gj
    import graphjit.nn as nn
    import graphjit.nn.functional as F
    from graphjit.jit import lowering_cache
    gj.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = gj.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(1)

    @gj.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    losses = [float(step(gj.tensor(rng.standard_normal((4, 5)).astype(np.float32)),
                         gj.tensor(rng.integers(0, 3, 4)))) for _ in range(3)]
    print(json.dumps({"losses": losses, "counts": lowering_cache.counts,
                      "params": [p.detach().numpy().tolist() for p in model.parameters()]}))
""")


def test_a_new_process_finds_the_programs_of_the_last(tmp_path):
    import json
    script = tmp_path / "restart.py"
    script.write_text(_RESTART)
    env = dict(os.environ, GRAPHJIT_LOWERING_CACHE="1", GRAPHJIT_TIERED="0")
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    # Adam's first step creates its state (a program of its own), the next ones reuse one.
    assert second["counts"]["hits"] == 2 and second["counts"]["misses"] == 0
    assert second["losses"] == first["losses"]
    assert second["params"] == first["params"]


def _forward_run(seed, xs, ys):
    """A compiled model (a compiled forward: forward and backward programs) trained with
    eager loss.backward() and opt.step() for three steps."""
    gj.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = gj.optim.SGD(model.parameters(), lr=0.1)
    fn = gj.compile(model)
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss = F.cross_entropy(fn(gj.tensor(x)), gj.tensor(y))
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses, [p.detach().numpy().copy() for p in model.parameters()], fn


def test_a_compiled_forward_finds_its_joint_graph_in_the_cache(cache, rng):
    xs, ys = _data(rng)
    fn0, fn1, losses1, _ = _run_twice(_forward_run, 4, xs, ys)
    for e0, e1 in zip(_entries(fn0), _entries(fn1)):
        assert e1.snapshots == e0.snapshots
    # Its forward and backward programs' generated modules too ([Generated programs of a
    # compiled forward]): written by the first run, found by the second.
    counts = lowering_cache.generated_counts
    assert counts["stores"] == 2 and counts["hits"] == 2 and counts["misses"] == 2
    gj.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = gj.optim.SGD(model.parameters(), lr=0.1)
    for x, y, want in zip(xs, ys, losses1):
        opt.zero_grad()
        loss = F.cross_entropy(model(gj.tensor(x)), gj.tensor(y))
        loss.backward()
        opt.step()
        np.testing.assert_allclose(float(loss), want, rtol=1e-5)
