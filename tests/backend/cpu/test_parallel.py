"""Parallel kernels (NOTE [Parallel loops] in backend/cpu/loops.py): chunked prange loops
with unsigned indices, per-chunk column sums and scratch rows, per-row totals; the same
numbers as the serial kernels and as the interpreter, whatever the thread count."""

import numba
import numpy as np
import pytest

from graphjit.backend.cpu.codegen import compile_graph
from graphjit.ir import parse_graph, run_graph
from passes.dce import dce
from passes.fuse import fuse

# A layer norm over rows of a tanh, with the loss's total and a column sum beside it: row
# reductions, a scratch row (the tanh, read by three passes), a total and a column sum in
# one kernel. 40 rows: chunk bounds that do not divide evenly.
ROW_KERNEL = """
graph f(%x: f32[40,24] {arg}, %t: f32[40,24] {arg}) {
  %0 = tanh(%x) : f32[40,24]
  %1 = sum(%0, dims=[1], keepdim=true) : f32[40,1]
  %2 = full(dtype=f32, shape=[], value=0.041666666666666664) : f32[]
  %3 = mul(%1, %2) : f32[40,1]
  %4 = sub(%0, %3) : f32[40,24]
  %5 = mul(%4, %4) : f32[40,24]
  %6 = sum(%5, dims=[1], keepdim=true) : f32[40,1]
  %7 = rsqrt(%6) : f32[40,1]
  %8 = mul(%4, %7) : f32[40,24]
  %9 = mul(%8, %t) : f32[40,24]
  %10 = sum(%9, dims=[0, 1], keepdim=false) : f32[]
  %11 = sum(%9, dims=[0], keepdim=false) : f32[24]
  %12 = exp(%x) : f32[40,24]
  return %10, %11, %8, %12
}"""


def _program(parallel_min, text=ROW_KERNEL):
    import os
    old = os.environ.get("GRAPHJIT_PARALLEL_MIN")
    os.environ["GRAPHJIT_PARALLEL_MIN"] = str(parallel_min)
    try:
        graph = dce.run(fuse.run(parse_graph(text)))
        return graph, compile_graph(graph)
    finally:
        if old is None:
            del os.environ["GRAPHJIT_PARALLEL_MIN"]
        else:
            os.environ["GRAPHJIT_PARALLEL_MIN"] = old


@pytest.fixture(scope="module")
def programs():
    return _program(1), _program(0)


def test_the_row_kernel_is_chunked_with_unsigned_indices(programs):
    (graph, parallel), (_, serial) = programs
    assert [n.op.name for n in graph.nodes] == ["fused"]
    assert "prange(32)" in parallel.source and "np.uint64(" in parallel.source
    assert "range(c * 40 // 32, (c + 1) * 40 // 32)" in parallel.source
    assert "prange" not in serial.source and "np.uint64(" not in serial.source


def test_parallel_and_serial_kernels_agree_with_the_interpreter(programs):
    (graph, parallel), (_, serial) = programs
    rng = np.random.default_rng(11)
    for _ in range(3):
        inputs = [rng.normal(size=(40, 24)).astype(np.float32) * 2,
                  rng.normal(size=(40, 24)).astype(np.float32)]
        expected, _ = run_graph(parse_graph(ROW_KERNEL), inputs)
        got_parallel, _ = parallel(inputs)
        got_serial, _ = serial(inputs)
        for a, b, e in zip(got_parallel, got_serial, expected):
            np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-6)
            np.testing.assert_allclose(b, e, rtol=2e-5, atol=2e-6)


def test_parallel_results_do_not_depend_on_the_thread_count(programs):
    (_, parallel), _ = programs
    rng = np.random.default_rng(12)
    inputs = [rng.normal(size=(40, 24)).astype(np.float32),
              rng.normal(size=(40, 24)).astype(np.float32)]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = [a.copy() for a in parallel(inputs)[0]]
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = parallel(inputs)[0]
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(one, many):
        assert np.array_equal(a, b)


def test_an_elementwise_parallel_loop_with_broadcasting():
    text = """
    graph g(%x: f32[33,7] {arg}, %b: f32[7] {arg}) {
      %0 = add(%x, %b) : f32[33,7]
      %1 = tanh(%0) : f32[33,7]
      return %1
    }"""
    graph, program = _program(1, text)
    assert "prange(32)" in program.source
    rng = np.random.default_rng(13)
    inputs = [rng.normal(size=(33, 7)).astype(np.float32), rng.normal(size=7).astype(np.float32)]
    np.testing.assert_allclose(program(inputs)[0][0], np.tanh(inputs[0] + inputs[1]),
                               rtol=2e-7, atol=1e-7)


def test_passes_over_one_long_row_run_in_chunks():
    """A softmax over one row of 300 (a reduction over every element): each pass is its own
    chunked prange, the chunks' maxima and sums combined between the passes."""
    text = """
    graph g(%x: f64[300] {arg}) {
      %0 = amax(%x, dims=[0], keepdim=true) : f64[1]
      %1 = sub(%x, %0) : f64[300]
      %2 = exp(%1) : f64[300]
      %3 = sum(%2, dims=[0], keepdim=true) : f64[1]
      %4 = div(%2, %3) : f64[300]
      return %4, %3
    }"""
    graph, program = _program(1, text)
    assert [n.op.name for n in graph.nodes] == ["fused"]
    assert program.source.count("prange(32)") >= 2
    rng = np.random.default_rng(14)
    x = rng.normal(size=300) * 10
    (p, s), _ = program([x])
    e = np.exp(x - x.max())
    np.testing.assert_allclose(s, [e.sum()], rtol=1e-13)
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-13, atol=1e-300)
