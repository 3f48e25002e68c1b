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


# ---- independent products of one right operand -----------------------------------------------

# A stacked RNN's backward through one layer, last step first: each step's gate gradient g_t
# feeds the recurrence (g_t U: the next g) and the gradient of the layer's input (g_t W),
# which is read at once (%2, %6) before the next g exists.
INDEPENDENT = """
graph f(%d: f64[4,5] {arg}, %w: f64[5,3] {param}, %u: f64[5,5] {param}) {
  %0 = tanh(%d) : f64[4,5]
  %1 = matmul(%0, %w) : f64[4,3]
  %2 = exp(%1) : f64[4,3]
  %3 = matmul(%0, %u) : f64[4,5]
  %4 = tanh(%3) : f64[4,5]
  %5 = matmul(%4, %w) : f64[4,3]
  %6 = add(%2, %5) : f64[4,3]
  %7 = matmul(%4, %u) : f64[4,5]
  %8 = tanh(%7) : f64[4,5]
  %9 = matmul(%8, %w) : f64[4,3]
  %10 = add(%6, %9) : f64[4,3]
  return %10, %8
}"""


def _ordered_and_acyclic(g):
    """The rewritten graph verifies (every read after its definition), round-trips, and its
    networkx view has no cycle."""
    import networkx
    out = round_trip(g)
    assert networkx.is_directed_acyclic_graph(g.to_networkx())
    return out


def test_independent_products_of_one_weight_are_one_product_after_their_last_operand():
    g = _passes(INDEPENDENT)
    out = _ordered_and_acyclic(g)
    products = [n for n in g.nodes if n.op.name == "matmul"]
    # The three g_t W are one [12,5] x [5,3]; the recurrence g_t U stays two products.
    assert len(products) == 3, out
    assert re.search(r"cat\(%0, %2, %4, dim=0\) : f64\[12,5\]", out), out
    assert batch.last_stats == {"products_stacked": 0, "products_summed": 0,
                                "products_independent": 3}
    # The product stands after the last g (%8, the tanh of the second recurrent product),
    # and the readers of the old products (the exp and the adds) after it.
    ops = _ops(g)
    stacked = next(i for i, n in enumerate(g.nodes) if n.op.name == "matmul"
                   and n.inputs[0].shape[0] == 12)
    assert ops.index("exp") > stacked and ops.count("tanh") == 3
    assert max(i for i, o in enumerate(ops) if o == "tanh") < stacked
    _same_values(INDEPENDENT)


def test_a_recurrence_through_the_weight_stays_sequential():
    # h_(t+1) = tanh(h_t W): each product's left operand depends on the one before.
    src = """
    graph f(%h: f64[4,4] {arg}, %w: f64[4,4] {param}) {
      %0 = matmul(%h, %w) : f64[4,4]
      %1 = tanh(%0) : f64[4,4]
      %2 = matmul(%1, %w) : f64[4,4]
      %3 = tanh(%2) : f64[4,4]
      %4 = matmul(%3, %w) : f64[4,4]
      return %4
    }"""
    g = _passes(src)
    assert _ops(g).count("matmul") == 3 and "cat" not in _ops(g)
    assert batch.last_stats["products_independent"] == 0
    # One more product x W, independent of the recurrence: it joins the first step's (both
    # have no product of W before them), the later steps stay apart.
    mixed = text(src).replace("%w: f64[4,4] {param})", "%w: f64[4,4] {param}, %x: f64[2,4] {arg})")
    mixed = mixed.replace("  return %4", "  %5 = matmul(%x, %w) : f64[2,4]\n  return %4, %5")
    g = _passes(mixed)
    out = _ordered_and_acyclic(g)
    assert _ops(g).count("matmul") == 3, out
    assert re.search(r"cat\(%h, %x, dim=0\) : f64\[6,4\]", out), out
    assert batch.last_stats["products_independent"] == 2
    _same_values(mixed)


def test_independent_products_read_the_stack_the_sum_rule_built():
    """dW = sum_t g_t^T x_t stacks the g_t already: the input gradients g_t W read that
    stack (no second cat), which moves up to just after the last g_t."""
    src = """
    graph f(%x0: f64[4,3] {arg}, %x1: f64[4,3] {arg}, %d: f64[4,5] {arg}, %w: f64[5,3] {param}) {
      %0 = tanh(%d) : f64[4,5]
      %1 = matmul(%0, %w) : f64[4,3]
      %2 = exp(%d) : f64[4,5]
      %3 = matmul(%2, %w) : f64[4,3]
      %4 = permute(%0, dims=[1, 0]) : f64[5,4]
      %5 = matmul(%4, %x0) : f64[5,3]
      %6 = permute(%2, dims=[1, 0]) : f64[5,4]
      %7 = matmul(%6, %x1) : f64[5,3]
      %8 = add(%5, %7) : f64[5,3]
      %9 = add(%1, %3) : f64[4,3]
      return %8, %9
    }"""
    g = _passes(src)
    out = _ordered_and_acyclic(g)
    assert _ops(g).count("matmul") == 2 and _ops(g).count("cat") == 2, out  # cat(g), cat(x)
    assert batch.last_stats == {"products_stacked": 0, "products_summed": 2,
                                "products_independent": 2}
    _same_values(src)


def test_row_blocks_left_by_the_first_rule_are_stacked_without_a_copy():
    # Two projections in a row per step: x_t W, then (x_t W) V. The first rule makes the
    # x_t W row slices of one product; the (x_t W) V are then row blocks of it, so the
    # third rule's stack is that product itself (no cat).
    src = """
    graph f(%xs: f64[3,4,2] {arg}, %w: f64[2,5] {param}, %v: f64[5,3] {param}) {
      %0 = slice(%xs, starts=[0, 0, 0], steps=[1, 1, 1], stops=[1, 4, 2]) : f64[1,4,2]
      %1 = reshape(%0, shape=[4, 2]) : f64[4,2]
      %2 = matmul(%1, %w) : f64[4,5]
      %3 = matmul(%2, %v) : f64[4,3]
      %4 = slice(%xs, starts=[2, 0, 0], steps=[1, 1, 1], stops=[3, 4, 2]) : f64[1,4,2]
      %5 = reshape(%4, shape=[4, 2]) : f64[4,2]
      %6 = matmul(%5, %w) : f64[4,5]
      %7 = matmul(%6, %v) : f64[4,3]
      %8 = slice(%xs, starts=[1, 0, 0], steps=[1, 1, 1], stops=[2, 4, 2]) : f64[1,4,2]
      %9 = reshape(%8, shape=[4, 2]) : f64[4,2]
      %10 = matmul(%9, %w) : f64[4,5]
      %11 = matmul(%10, %v) : f64[4,3]
      return %3, %7, %11
    }"""
    g = _passes(src)
    out = _ordered_and_acyclic(g)
    assert _ops(g).count("matmul") == 2 and "cat" not in _ops(g), out
    assert batch.last_stats == {"products_stacked": 3, "products_summed": 0,
                                "products_independent": 3}
    _same_values(src)


def test_a_stack_beyond_the_byte_limit_is_split(monkeypatch):
    import passes.batch as batch_module
    g = _passes(INDEPENDENT)
    assert _ops(g).count("matmul") == 3
    # Each g_t is 4 x 5 f64 = 160 bytes: at most two per stack.
    monkeypatch.setattr(batch_module, "MAX_STACK_BYTES", 320)
    g = _passes(INDEPENDENT)
    out = _ordered_and_acyclic(g)
    assert _ops(g).count("matmul") == 4 and re.search(r"cat\(%0, %2, dim=0\) : f64\[8,5\]", out), out
    assert batch.last_stats["products_independent"] == 2
    _same_values(INDEPENDENT)


class _StackedLayers(nn.Module):
    def __init__(self, I, H):
        super().__init__()
        self.rnn = nn.RNN(I, H, num_layers=2, bidirectional=True)
        self.lstm = nn.LSTM(I, H, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(I, H, num_layers=2, bidirectional=True)

    def forward(self, xs, target, h0, c0):
        outs = [self.rnn(xs, h0)[0], self.lstm(xs, (h0, c0))[0], self.gru(xs)[0]]
        total = (outs[0] * target).sum()
        for out in outs[1:]:
            total = total + (out * target).sum()
        return total


def test_stacked_bidirectional_recurrent_layers_compiled_equal_eager(rng):
    """End to end, float32: 2-layer bidirectional RNN, LSTM and GRU in one training step
    (one program, so Numba compiles once). Loss and every parameter's gradient equal eager
    mode's, and layer 1's input gradients g_t W_ih_l1 are one product per direction."""
    T, B, I, H = 3, 2, 3, 4
    gj.manual_seed(int(rng.integers(1 << 30)))
    model = _StackedLayers(I, H)
    names, params = zip(*model.named_parameters())
    xs, target, h0, c0 = (gj.tensor(rng.normal(size=shape).astype(np.float32))
                          for shape in ((T, B, I), (T, B, 2 * H), (4, B, H), (4, B, H)))
    eager = model(xs, target, h0, c0)
    expected = gj.grad(eager, list(params))

    def step(xs, target, h0, c0):
        loss = model(xs, target, h0, c0)
        loss.backward()
        return loss
    compiled = gj.compile(step)
    final = compiled.lower(xs, target, h0, c0).as_text("final")  # no Numba: checked first
    for layer in ("rnn", "lstm", "gru"):
        for w in ("weight_ih_l1", "weight_ih_l1_reverse"):
            uses = [ln for ln in final.splitlines()
                    if re.search(rf" = (gemm|matmul)\(.*%\S*{layer}\.{w}\b", ln)]
            # The forward input projection (over W_ih^T) and the input gradient (over W_ih).
            assert len(uses) == 2, (layer, w, uses)
    loss = compiled(xs, target, h0, c0)
    np.testing.assert_allclose(loss.item(), eager.item(), rtol=2e-5)
    for name, p, e in zip(names, params, expected):
        np.testing.assert_allclose(p.grad.numpy(), e.numpy(), rtol=2e-5, atol=2e-6, err_msg=name)


def test_products_on_both_sides_of_a_forward_backward_split_stay_apart():
    # A compiled forward with its backward run apart (``fusion_split``: the backward's
    # seed): the forward's x W and the backward's seed W share W and a level, but stacking
    # them would compute the forward product in the backward program (found by
    # tests/programs: dcgan and word_lm compiled steps failed the verifier).
    src = """graph f(%x: f64[4,5] {arg}, %w: f64[5,3] {param}, %seed: f64[2,5] {arg}) {
  %0 = matmul(%x, %w) : f64[4,3]
  %1 = matmul(%seed, %w) : f64[2,3]
  return %0, %1
}"""
    g = parse_graph(src)
    g.fusion_split = [g.inputs[2]]
    g = dce.run(batch.run(g))
    assert [n.op.name for n in g.nodes] == ["matmul", "matmul"], _ordered_and_acyclic(g)
    g2 = dce.run(batch.run(parse_graph(src)))  # without the split they are one product
    assert [n.op.name for n in g2.nodes].count("matmul") == 1
