"""passes/batch: an unrolled loop's small products become a few large ones (IR text in and
out), with the values unchanged on random inputs (the interpreter before and after)."""

import re

import numpy as np

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.ir import parse_graph, run_graph
from passes.batch import batch, row_block
from passes.dce import dce
from ir_text import round_trip, text

# Three steps of an input projection x_t W^T, x_t = xs[t]: one product of xs's 12 rows.
STACKED = """
graph f(%xs: f64[3,4,2] {arg}, %w: f64[5,2] {param}) {
  %0 = permute(%w, dims=[1, 0]) : f64[2,5]
  %1 = slice(%xs, starts=[0, 0, 0], steps=[1, 1, 1], stops=[1, 4, 2]) : f64[1,4,2]
  %2 = reshape(%1, shape=[4, 2]) : f64[4,2]
  %3 = matmul(%2, %0) : f64[4,5]
  %4 = slice(%xs, starts=[2, 0, 0], steps=[1, 1, 1], stops=[3, 4, 2]) : f64[1,4,2]
  %5 = reshape(%4, shape=[4, 2]) : f64[4,2]
  %6 = matmul(%5, %0) : f64[4,5]
  %7 = slice(%xs, starts=[1, 0, 0], steps=[1, 1, 1], stops=[2, 4, 2]) : f64[1,4,2]
  %8 = reshape(%7, shape=[4, 2]) : f64[4,2]
  %9 = matmul(%8, %0) : f64[4,5]
  %10 = tanh(%9) : f64[4,5]
  return %3, %6, %10
}"""

# A weight gradient over three steps, as autodiff writes it: sum_t (h_t^T g_t)^T, plus a
# term that is no product (a weight decay).
SUMMED = """
graph f(%h0: f64[4,3] {arg}, %h1: f64[4,3] {arg}, %h2: f64[4,3] {arg}, %g0: f64[4,5] {arg}, %g1: f64[4,5] {arg}, %g2: f64[4,5] {arg}, %w: f64[5,3] {param}) {
  %0 = permute(%h0, dims=[1, 0]) : f64[3,4]
  %1 = matmul(%0, %g0) : f64[3,5]
  %2 = permute(%1, dims=[1, 0]) : f64[5,3]
  %3 = permute(%h1, dims=[1, 0]) : f64[3,4]
  %4 = matmul(%3, %g1) : f64[3,5]
  %5 = permute(%4, dims=[1, 0]) : f64[5,3]
  %6 = add(%2, %5) : f64[5,3]
  %7 = add(%6, %w) : f64[5,3]
  %8 = permute(%h2, dims=[1, 0]) : f64[3,4]
  %9 = matmul(%8, %g2) : f64[3,5]
  %10 = permute(%9, dims=[1, 0]) : f64[5,3]
  %11 = add(%7, %10) : f64[5,3]
  return %11
}"""


def _passes(src):
    g = parse_graph(text(src))
    return dce.run(batch.run(g))


def _same_values(src, seed=0):
    rng = np.random.default_rng(seed)
    before = parse_graph(text(src))
    inputs = [rng.normal(size=v.shape) for v in before.inputs]
    expected, _ = run_graph(before, inputs)
    got, _ = run_graph(_passes(src), inputs)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def _ops(g):
    return [n.op.name for n in g.nodes]


def test_row_blocks_are_found_through_reshapes_and_first_dim_slices():
    g = parse_graph(text(STACKED))
    xs = g.inputs[0]
    blocks = [row_block(n.out) for n in g.nodes if n.op.name == "reshape"]
    assert [(b[0] is xs, b[1], b[2]) for b in blocks] == [(True, 0, 4), (True, 8, 4), (True, 4, 4)]
    w = g.inputs[1]
    assert row_block(w) == (w, 0, 5)
    # A transpose is not a row block of what it transposes.
    permuted = g.nodes[0].out
    assert row_block(permuted)[0] is permuted


def test_products_of_consecutive_row_blocks_with_one_weight_are_one_product():
    g = _passes(STACKED)
    out = round_trip(g)
    assert _ops(g).count("matmul") == 1, out
    # The one product reads xs itself as a [12, 2] matrix (a free reshape, no copy).
    assert re.search(r"reshape\(%xs, shape=\[12, 2\]\)", out), out
    assert _ops(g).count("slice") == 3  # each step's product is a row slice of it
    assert batch.last_stats == {"products_stacked": 3, "products_summed": 0,
                                "products_independent": 0}
    _same_values(STACKED)


def test_blocks_that_are_not_consecutive_are_stacked_by_a_copy_and_other_weights_stay_apart():
    # Steps 0 and 2 only: a gap between them, so no slice of xs holds both. They are still
    # independent products of one weight: one product of their cat (the third rule).
    gap = STACKED.replace("%10 = tanh(%9)", "%10 = tanh(%3)")
    gap = gap.replace("return %3, %6, %10", "return %6, %10")
    g = _passes(gap)
    assert _ops(g).count("matmul") == 1 and _ops(g).count("cat") == 1, round_trip(g)
    assert batch.last_stats == {"products_stacked": 0, "products_summed": 0,
                                "products_independent": 2}
    _same_values(gap)
    # Two different weights.
    two = text(STACKED).replace("%w: f64[5,2] {param})", "%w: f64[5,2] {param}, %v: f64[2,5] {param})")
    two = two.replace("%6 = matmul(%5, %0)", "%6 = matmul(%5, %v)")
    g = _passes(two)
    assert _ops(g).count("matmul") == 2  # steps 0 and 1 share w and are consecutive
    _same_values(two)


def test_a_sum_of_transposed_products_is_one_product_of_stacked_operands():
    g = _passes(SUMMED)
    out = round_trip(g)
    assert _ops(g).count("matmul") == 1, out
    assert _ops(g).count("cat") == 2, out   # the h's and the g's
    # g_t^T h_t summed: cat(g)^T cat(h), the pairs in the order their operands exist.
    assert re.search(r"cat\(%g0, %g1, %g2, dim=0\)", out) and re.search(
        r"cat\(%h0, %h1, %h2, dim=0\)", out), out
    assert _ops(g).count("add") == 1  # the weight decay term is added to the product
    assert batch.last_stats == {"products_stacked": 0, "products_summed": 3,
                                "products_independent": 0}
    _same_values(SUMMED)


def test_a_product_read_elsewhere_stays_out_of_the_sum():
    src = text(SUMMED).replace("return %11", "return %11, %4")
    g = _passes(src)
    # %4 (h1^T g1) has a second reader: it is computed anyway, so only two terms stack.
    assert batch.last_stats["products_summed"] == 2
    assert _ops(g).count("matmul") == 2
    _same_values(src)


def test_two_sums_over_the_same_gradients_share_one_stack():
    """dW_ih and dW_hh of an RNN both stack the steps' gradients g_t: one cat, and the x_t
    side is a slice of xs (consecutive row blocks), not a copy."""
    src = """
    graph f(%xs: f64[2,4,3] {arg}, %h1: f64[4,3] {arg}, %h2: f64[4,3] {arg}, %g1: f64[4,5] {arg}, %g2: f64[4,5] {arg}) {
      %0 = slice(%xs, starts=[0, 0, 0], steps=[1, 1, 1], stops=[1, 4, 3]) : f64[1,4,3]
      %1 = reshape(%0, shape=[4, 3]) : f64[4,3]
      %2 = slice(%xs, starts=[1, 0, 0], steps=[1, 1, 1], stops=[2, 4, 3]) : f64[1,4,3]
      %3 = reshape(%2, shape=[4, 3]) : f64[4,3]
      %4 = permute(%g2, dims=[1, 0]) : f64[5,4]
      %5 = matmul(%4, %3) : f64[5,3]
      %6 = permute(%g1, dims=[1, 0]) : f64[5,4]
      %7 = matmul(%6, %1) : f64[5,3]
      %8 = add(%5, %7) : f64[5,3]
      %9 = matmul(%6, %h1) : f64[5,3]
      %10 = matmul(%4, %h2) : f64[5,3]
      %11 = add(%10, %9) : f64[5,3]
      return %8, %11
    }"""
    g = _passes(src)
    out = round_trip(g)
    assert _ops(g).count("matmul") == 2 and _ops(g).count("cat") == 2, out  # cat(g), cat(h)
    assert re.search(r"cat\(%g1, %g2, dim=0\)", out), out
    assert re.search(r"reshape\(%xs, shape=\[8, 3\]\)", out), out
    _same_values(src)


def test_an_unrolled_rnn_training_step_keeps_only_the_recurrent_products():
    """End to end: T steps of an Elman RNN, SGD. Left: the T recurrent products forward and
    the T - 1 backward through W_hh, plus one product per batched family and the head's."""
    T, B, I, H = 6, 3, 4, 5
    rng = np.random.default_rng(7)
    f64 = gj.float64
    ih, hh, head = nn.Linear(I, H, dtype=f64), nn.Linear(H, H, dtype=f64), nn.Linear(H, 1, dtype=f64)
    params = [p for m in (ih, hh, head) for p in m.parameters()]
    for p in params:
        p.data = gj.tensor(rng.normal(size=p.shape) * 0.4, dtype=gj.float64).data
    xs = gj.tensor(rng.normal(size=(T, B, I)), dtype=gj.float64)
    y = gj.tensor(rng.normal(size=(B, 1)), dtype=gj.float64)

    def loss_fn(xs, y):
        h = gj.zeros(B, H, dtype=gj.float64)
        for t in range(T):
            h = gj.tanh(ih(xs[t]) + hh(h))
        return F.mse_loss(head(h), y)

    eager = loss_fn(xs, y)
    expected = gj.grad(eager, params)
    compiled = gj.compile(loss_fn)
    loss = compiled(xs, y)
    loss.backward()
    np.testing.assert_allclose(loss.item(), eager.item(), rtol=1e-12)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.grad.numpy(), e.numpy(), rtol=1e-10, atol=1e-12)
    final = parse_graph(compiled.lower(xs, y).as_text("dce"))
    products = [n for n in final.nodes if n.op.name in ("gemm", "matmul")]
    # forward: 1 input projection + T recurrent + 1 head; backward: head weight and input,
    # T - 1 through W_hh (h_0 is a constant), dW_ih and dW_hh.
    assert len(products) == 1 + T + 1 + 2 + (T - 1) + 2, [n.op.name for n in final.nodes]
