"""passes/gemm: transposes folded into products, epilogues absorbed (IR text in and out),
and the values unchanged on random inputs."""

import numpy as np
import pytest

from graphjit.ir import parse_graph, print_graph, run_graph, verify
from passes.dce import dce
from passes.fuse import fuse
from passes.gemm import gemm
from ir_text import round_trip, text

MLP_LAYER = """
graph f(%x: f32[6,8] {arg}, %w: f32[5,8] {param}, %b: f32[5] {param}, %g: f32[6,5] {arg}) {
  %0 = permute(%w, dims=[1, 0]) : f32[8,5]
  %1 = matmul(%x, %0) : f32[6,5]
  %2 = add(%1, %b) : f32[6,5]
  %3 = relu(%2) : f32[6,5]
  %4 = full(dtype=f32, shape=[], value=0.0) : f32[]
  %5 = gt(%3, %4) : b8[6,5]
  %6 = where(%5, %g, %4) : f32[6,5]
  %7 = permute(%x, dims=[1, 0]) : f32[8,6]
  %8 = matmul(%7, %6) : f32[8,5]
  %9 = permute(%8, dims=[1, 0]) : f32[5,8]
  %10 = sum(%6, dims=[0], keepdim=false) : f32[5]
  return %3, %9, %10
}"""

# (a @ b).T read as the right operand of another product: the sweep that rewrites the
# permute into gemm(b, a, trans) must not also fold that permute into the reader's
# transpose flag (it would read a product the same sweep removed: fuzz seed 16, graph 1621, the
# shape of F.linear(w, a @ b)).
TRANSPOSED_PRODUCT_READ_AGAIN = """
graph f(%a: f32[3,4] {arg}, %b: f32[4,5] {arg}, %c: f32[2,5] {arg}) {
  %0 = matmul(%a, %b) : f32[3,5]
  %1 = permute(%0, dims=[1, 0]) : f32[5,3]
  %2 = matmul(%c, %1) : f32[2,3]
  return %2
}"""


def run_passes(before: str):
    g = parse_graph(text(before))
    return dce.run(gemm.run(fuse.run(g)))


def test_a_linear_layer_forward_and_backward():
    out = round_trip(run_passes(MLP_LAYER))
    lines = [line.strip() for line in out.splitlines()]
    # Forward: x @ w.T with the bias add and ReLU as its epilogue, no permute of w.
    assert any(line.startswith("%0") and "= gemm(%x, %w, %b" in line and "relu" in line
               and "trans_b=true" in line for line in lines), out
    # The weight gradient (x.T @ gz).T is gz.T @ x: one product, no permute left at all.
    assert "permute" not in out and "matmul" not in out
    assert any("gemm(%" in line and "trans_a=true, trans_b=false" in line for line in lines), out


def test_a_product_read_twice_keeps_its_buffer_and_gets_no_epilogue():
    out = round_trip(run_passes("""
    graph f(%a: f32[4,3] {arg}, %b: f32[3,2] {arg}) {
      %0 = matmul(%a, %b) : f32[4,2]
      %1 = exp(%0) : f32[4,2]
      return %0, %1
    }"""))
    assert "%0 = matmul(%a, %b)" in out and "gemm" not in out


def test_an_epilogue_with_an_inner_reduction_is_not_absorbed():
    # Softmax over the rows of a product rereads each row: it stays a fused node.
    out = round_trip(run_passes("""
    graph f(%a: f32[4,3] {arg}, %b: f32[3,5] {arg}) {
      %0 = matmul(%a, %b) : f32[4,5]
      %1 = exp(%0) : f32[4,5]
      %2 = sum(%1, dims=[1], keepdim=true) : f32[4,1]
      %3 = div(%1, %2) : f32[4,5]
      return %3
    }"""))
    assert "matmul" in out and "fused(" in out and "gemm" not in out


def test_integer_and_batched_products_are_left_alone():
    out = round_trip(run_passes("""
    graph f(%a: i64[4,3] {arg}, %b: i64[3,2] {arg}, %c: f32[2,4,3] {arg}, %d: f32[3,5] {arg}) {
      %0 = matmul(%a, %b) : i64[4,2]
      %1 = neg(%0) : i64[4,2]
      %2 = matmul(%c, %d) : f32[2,4,5]
      %3 = exp(%2) : f32[2,4,5]
      return %1, %3
    }"""))
    assert "gemm" not in out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("graph", [MLP_LAYER, TRANSPOSED_PRODUCT_READ_AGAIN])
def test_values_are_unchanged(seed, graph):
    rng = np.random.default_rng(seed)
    before = parse_graph(text(graph))
    after = run_passes(graph)
    verify(after)
    inputs = [rng.normal(size=v.shape).astype(np.float32) for v in before.inputs]
    for a, e in zip(run_graph(after, inputs)[0], run_graph(before, inputs)[0]):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    assert print_graph(after) != print_graph(before)
