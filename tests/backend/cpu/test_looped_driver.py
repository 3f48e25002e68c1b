"""The looped driver of a CPU program with many kernel calls ([Looped drivers] in
graphjit/backend/cpu/looped.py): the same numbers as the straight-line driver on the graphs
that cover every op, and on a compiled training step with updates done in place."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphjit as gj
from graphjit import dtypes
from graphjit.ir import parse_graph
from graphjit.backend.cpu import compile_graph, generate, looped
from graphjit.ir import run_graph
from graphjit.testing import assert_close
from test_cpu import (check_program, elementwise_graph, fused_elementwise_graph, gemm_graph,
                      index_graph, reduce_linalg_shape_graph, run_generated_as_python,
                      scan_graph)

F32, F64 = dtypes.float32, dtypes.float64


@pytest.fixture
def always_looped(monkeypatch):
    monkeypatch.setattr(looped, "LOOPED_DRIVER_MIN_CALLS", 1)
    monkeypatch.setattr(looped, "CALLS_PER_FORM", 0)


def _looped(source) -> bool:
    """Whether a program module's driver is the looped one (its names may have suffixes)."""
    return bool(re.search(r"^STEPS\w* = np.array\(\[$", source, re.M)
                and re.search(r"for \w+ in range\(STEPS\w*\.shape\[0\]\):", source))


GRAPHS = {
    "elementwise f32": lambda: (elementwise_graph(F32), None),
    "elementwise f64": lambda: (elementwise_graph(F64), None),
    "reductions, products, movement": lambda: (reduce_linalg_shape_graph(), None),
    "scans": lambda: (scan_graph(), None),
    "indexing": lambda: (index_graph(), None),
    "fused": lambda: fused_elementwise_graph(F32),
    "gemm epilogues": gemm_graph,
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_looped_driver_matches_the_reference(name, always_looped, rng):
    built, before = GRAPHS[name]()
    assert _looped(generate(built.graph).module_source)
    program = compile_graph(built.graph)
    for _ in range(2):
        check_program(program, before if before is not None else built.graph, built.inputs(rng))


def test_looped_driver_runs_as_plain_python(always_looped, rng):
    # (Numba's JIT disabled: the views are made from the addresses by ctypes.)
    built = index_graph()
    inputs = built.inputs(rng)
    for actual, wanted in zip(run_generated_as_python(built.graph, inputs),
                              run_graph(built.graph, inputs)[0]):
        assert_close(actual, wanted, rtol=1e-5, atol=1e-6)


def test_small_programs_keep_the_straight_line_driver():
    graph = parse_graph("""graph f(%x: f32[4] {arg}) {
      %0 = exp(%x) : f32[4]
      %1 = sum(%0, dims=[0], keepdim=false) : f32[]
      return %1
    }""")
    source = generate(graph).module_source
    assert not _looped(source) and re.search(r"run_kernel\(kernels\w*\[0\], ", source)
    x = np.linspace(0, 1, 4, dtype=np.float32)
    np.testing.assert_allclose(compile_graph(graph)([x])[0][0], np.exp(x).sum(), rtol=1e-6)


def _train(steps=3):
    gj.manual_seed(0)
    model = gj.nn.Sequential(gj.nn.Linear(5, 7), gj.nn.Tanh(), gj.nn.Linear(7, 3))
    opt = gj.optim.Adam(model.parameters(), lr=0.01)

    @gj.compile
    def step(x, y):
        opt.zero_grad()
        loss = gj.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    rng = np.random.default_rng(1)
    x = gj.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    y = gj.tensor(rng.integers(0, 3, 4))
    losses = [step(x, y).item() for _ in range(steps)]
    return losses, [p.detach().numpy().copy() for p in model.parameters()], step


def test_a_training_step_with_in_place_updates_runs_the_same_looped(monkeypatch):
    want_losses, want_params, _ = _train()
    monkeypatch.setattr(looped, "LOOPED_DRIVER_MIN_CALLS", 1)
    monkeypatch.setattr(looped, "CALLS_PER_FORM", 0)
    losses, params, step = _train()
    (entry,) = [e for entries in step._cache.values() for e in entries]
    assert _looped(entry.program.source)
    np.testing.assert_array_equal(losses, want_losses)
    for a, b in zip(params, want_params):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dim, shape, calls", [
    (0, (2, 3), 2),      # blocks of rows: parts of 8 and 3 inputs
    (1, (1, 3, 2), 2),   # leading dims of size 1: still contiguous blocks
    (1, (2, 3), 1),      # interleaved: one kernel for all inputs
])
@pytest.mark.parametrize("forced", [False, True], ids=["straight", "looped"])
def test_a_long_concatenation_runs_in_parts(dim, shape, calls, forced, monkeypatch, rng):
    # [Long concatenations] in looped.py: at most CAT_PART inputs a kernel call.
    if forced:
        monkeypatch.setattr(looped, "LOOPED_DRIVER_MIN_CALLS", 1)
        monkeypatch.setattr(looped, "CALLS_PER_FORM", 0)
    n = 11
    size = ", ".join(map(str, shape))
    out = list(shape)
    out[dim] *= n
    out = ", ".join(map(str, out))
    graph = parse_graph(
        f"graph f({', '.join(f'%x{i}: f32[{size}] {{arg}}' for i in range(n))}) {{\n"
        f"  %0 = cat({', '.join(f'%x{i}' for i in range(n))}, dim={dim}) : f32[{out}]\n"
        f"  return %0\n}}")
    source = generate(graph).module_source
    assert _looped(source) == forced
    if not forced:
        assert len(re.findall(r"^    run_kernel\(", source, re.M)) == calls
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]
    np.testing.assert_array_equal(compile_graph(graph)(xs)[0][0], np.concatenate(xs, axis=dim))
