"""float32 sums in fused loops accumulate per block of SUM_BLOCK elements in float32, the
blocks in float64 (NOTE [Blocked sums] in backend/cpu/fused.py): rows shorter than a block,
exact multiples, ragged tails, one long row split into parallel chunks, all within a few
ulps of the exact sum."""

import numpy as np
import pytest

from graphjit.backend.cpu.codegen import compile_graph
from graphjit.backend.cpu.reduce import SUM_BLOCK
from graphjit.ir import parse_graph
from passes.dce import dce
from passes.fuse import fuse

# Row lengths around the block size; 5 rows each.
LENGTHS = [SUM_BLOCK - 1, SUM_BLOCK, SUM_BLOCK + 1, 1000]


def _row_graph(n):
    # A tanh before the sum: a long float32 body, what blocking is for.
    return f"""
    graph f(%x: f32[5,{n}] {{arg}}) {{
      %0 = tanh(%x) : f32[5,{n}]
      %1 = sum(%0, dims=[1], keepdim=false) : f32[5]
      %2 = sum(%x, dims=[0, 1], keepdim=false) : f32[]
      return %1, %2
    }}"""


@pytest.fixture(scope="module")
def row_programs():
    return {n: compile_graph(dce.run(fuse.run(parse_graph(_row_graph(n))))) for n in LENGTHS}


def _ulps(got, exact):
    """Distance of float32 ``got`` from the float64 ``exact`` in float32 ulps of ``exact``."""
    exact = np.asarray(exact, dtype=np.float64)
    return np.abs(np.asarray(got, np.float64) - exact) / np.spacing(np.abs(exact).astype(np.float32))


@pytest.mark.parametrize("n", LENGTHS)
def test_row_sums_in_blocks_are_within_four_ulps(row_programs, n):
    program = row_programs[n]
    source = program.source
    assert "blk" in source
    if n > SUM_BLOCK:
        assert f"range(0, {n}, {SUM_BLOCK})" in source
        assert ("min(" in source) == (n % SUM_BLOCK != 0)
    rng = np.random.default_rng(n)
    # Positive values: no cancellation, so a few ulps is a real bound on the order of the sum.
    x = rng.uniform(0.1, 2.0, size=(5, n)).astype(np.float32)
    (rows, total), _ = program([x])
    exact_rows = np.tanh(x.astype(np.float64)).sum(axis=1)
    # The tanh's own error (1 ulp of an element each, a random walk) is far below an ulp of
    # the sum; a block's float32 partial sums, combined in a tree, are within a few ulps.
    assert _ulps(rows, exact_rows).max() <= 4
    assert _ulps(total, x.astype(np.float64).sum()) <= 4


def test_one_long_row_is_blocked_inside_each_parallel_chunk(monkeypatch):
    """2**20 values 1 + k 2**-18 (k in 1..3): a float32 partial sum that grows past 64 drops
    the k 2**-18 of every value it adds (below half its ulp), so any partial of more than a
    block's few elements loses thousands of ulps of the total; blocks of 256 summed in
    float32 and added in float64 are exact."""
    n = 1 << 20
    text = f"""
    graph g(%x: f32[{n}] {{arg}}) {{
      %0 = abs(%x) : f32[{n}]
      %1 = sum(%0, dims=[0], keepdim=false) : f32[]
      return %1
    }}"""
    monkeypatch.setenv("GRAPHJIT_PARALLEL_MIN", "1")
    program = compile_graph(dce.run(fuse.run(parse_graph(text))))
    assert "prange(32)" in program.source and "min(" in program.source
    rng = np.random.default_rng(3)
    x = (1 + rng.integers(1, 4, size=n) * 2.0 ** -18).astype(np.float32)
    (total,), _ = program([x])
    exact = x.astype(np.float64).sum()
    assert _ulps(total, exact) <= 0.5
    # What the test tells apart: a float32 running sum (np.cumsum is sequential) is far off.
    naive = np.cumsum(x, dtype=np.float32)[-1]
    assert _ulps(naive, exact) > 20


def test_a_reduction_with_no_element_loop_still_initialises_its_block():
    """A sum over a dim of size 1 beside a kept dim: the block accumulator exists anyway."""
    text = """
    graph g(%x: f32[6,1] {arg}) {
      %0 = exp(%x) : f32[6,1]
      %1 = sum(%0, dims=[1], keepdim=false) : f32[6]
      return %1
    }"""
    graph = dce.run(fuse.run(parse_graph(text)))
    program = compile_graph(graph)
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(6, 1)
    (got,), _ = program([x])
    np.testing.assert_allclose(got, np.exp(x[:, 0]), rtol=2e-7)
