"""The layers of graphjit.nn compiled: values, gradients (and in-place updates) of a compiled
forward + backward equal eager mode's, and the unrolled recurrences get their matrix products
batched (passes/batch.py).

Numba's compile time is the cost here, so each test compiles ONE program covering several
modules at tiny shapes (the kernels of repeated steps are shared), and the modules' own
numbers are checked eagerly against NumPy in the other files of this folder."""
import re

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
from nn_reference import npy

T, B = 2, 2  # two steps are enough for the batch pass (it batches >= 2 products)


def _snapshot(model):
    return {k: npy(v).copy() for k, v in model.state_dict().items()}


def _restore(model, saved):
    with gj.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(gj.tensor(saved[k].astype(v.dtype.np)))


def eager_vs_compiled(model, fn, *args, rtol=2e-5, atol=2e-6, seed=None):
    """Run ``fn(*args)`` (which calls backward) eagerly, then compiled, from the same
    parameters (and with ``seed``, the same generator state, so dropout draws the same
    masks): the results, every parameter's gradient and every parameter's value after the
    call (in-place updates) must agree. Returns the compiled function."""
    saved = _snapshot(model)
    results = []
    for run in (fn, gj.compile(fn)):
        _restore(model, saved)
        if seed is not None:
            gj.manual_seed(seed)
        for p in model.parameters():
            p.grad = None
        out = run(*args)
        results.append(([npy(o) for o in (out if isinstance(out, tuple) else (out,))],
                        {n: npy(p.grad) for n, p in model.named_parameters()},
                        _snapshot(model)))
    (eo, eg, ew), (co, cg, cw) = results
    for e, c in zip(eo, co):
        np.testing.assert_allclose(c, e, rtol=rtol, atol=atol)
    for name in eg:
        assert (eg[name] is None) == (cg[name] is None), name
        if eg[name] is not None:
            np.testing.assert_allclose(cg[name], eg[name], rtol=rtol, atol=atol, err_msg=name)
        np.testing.assert_allclose(cw[name], ew[name], rtol=rtol, atol=atol, err_msg=name)
    return run


def single_gemm_defines(text, value):
    """True when ``value`` (``%7``) is a result of one gemm node in the IR ``text``."""
    line = next(ln for ln in text.splitlines() if re.match(rf"\s*(%\w+, )*{value}\b.* = ", ln))
    return " = gemm(" in line, line


# ---- recurrent layers ----------------------------------------------------------------------------

class SequenceModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 3, padding_idx=0, max_norm=1.5, scale_grad_by_freq=True)
        self.lstm = nn.LSTM(3, 4, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(8, 4, num_layers=2, dropout=0.3)     # training: dropout between
        self.rnn = nn.RNN(4, 4, nonlinearity="relu")
        self.cell = nn.GRUCell(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, idx, h0, c0):
        out, (h, c) = self.lstm(self.emb(idx), (h0, c0))       # batch-first [B, T, 8]
        out, h_gru = self.gru(out.transpose(0, 1))              # time-major [T, B, 4]
        out, _ = self.rnn(out)
        last = self.cell(out[-1], h_gru[1])
        return self.head(last).sum() + (h * c).sum()


def test_recurrent_layers_compiled_equal_eager_and_batch_their_products(rng):
    gj.manual_seed(0)
    model = SequenceModel()
    idx = gj.tensor(rng.integers(0, 7, (B, T)))
    h0, c0 = gj.randn(2, B, 4), gj.randn(2, B, 4)

    def step(idx, h0, c0):
        loss = model(idx, h0, c0)
        loss.backward()
        return loss
    compiled = eager_vs_compiled(model, step, idx, h0, c0, seed=1)
    text = compiled.lower(idx, h0, c0).as_text("dce")
    # Input projections: one product over all T * B rows per layer and direction.
    for w in ("lstm.weight_ih_l0", "lstm.weight_ih_l0_reverse", "gru.weight_ih_l0",
              "gru.weight_ih_l1", "rnn.weight_ih_l0"):
        uses = [ln for ln in text.splitlines() if re.search(rf"gemm\(.*%\S*{w}[,)]", ln)]
        assert len(uses) == 1 and re.search(rf"f32\[{T * B},\d+\]", uses[0]), (w, uses)
    # Weight gradients: one product each, summing over the steps inside the GEMM.
    for w in ("lstm.weight_ih_l0", "lstm.weight_hh_l0_reverse", "gru.weight_ih_l1",
              "gru.weight_hh_l0", "rnn.weight_hh_l0"):
        value = re.search(rf"update %\S*{w}\.grad <- (%\w+)", text).group(1)
        ok, line = single_gemm_defines(text, value)
        assert ok, line


# ---- attention and normalisation -----------------------------------------------------------------

class AttentionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.25,
                                              activation="gelu", batch_first=True)
        self.mha = nn.MultiheadAttention(4, 2, kdim=3, vdim=3, dropout=0.2)  # on the weights
        self.gn = nn.GroupNorm(2, 4)

    def forward(self, x, mem, kpm, causal):
        y = self.enc(x, src_mask=causal, src_key_padding_mask=kpm)     # [B, T, 4]
        y = self.gn(y.transpose(1, 2)).transpose(1, 2)
        out, w = self.mha(y.transpose(0, 1), mem, mem)                  # weights [B, T, S]
        z = F.scaled_dot_product_attention(y, y, y, is_causal=True)
        return out, w, z


def test_attention_layers_compiled_equal_eager(rng):
    gj.manual_seed(0)
    model = AttentionModel()
    x, mem = gj.randn(B, T, 4), gj.randn(5, B, 3)
    kpm = gj.tensor(np.array([[False] * (T - 1) + [True], [False] * T]))
    causal = gj.tensor(~np.tril(np.ones((T, T), bool)))

    def step(x, mem, kpm, causal):
        out, w, z = model(x, mem, kpm, causal)
        loss = (out * out).sum() + (w * w).sum() + z.sum()
        loss.backward()
        return out, w, z
    eager_vs_compiled(model, step, x, mem, kpm, causal, seed=2)  # training: dropout on


# ---- losses --------------------------------------------------------------------------------------

def test_losses_compiled_equal_eager(rng):
    lin = nn.Linear(4, 4)
    x = gj.randn(3, 4)
    t = gj.rand(3, 4)
    y = gj.tensor(np.array([1, -1, 1]))
    labels = gj.tensor(np.array([0, 3, -100]))
    w = gj.rand(4) + 0.5

    def step(x, t, y, labels, w):
        h = lin(x)
        p = gj.sigmoid(h)
        losses = (F.binary_cross_entropy(p, t, weight=w),
                  F.smooth_l1_loss(h, t, beta=0.5),
                  F.huber_loss(h, t, reduction="sum", delta=0.8),
                  F.kl_div(F.log_softmax(h, 1), F.softmax(t, 1), reduction="batchmean"),
                  F.cosine_similarity(h, t).sum(),
                  F.cosine_embedding_loss(h, x, y, margin=0.2),
                  F.cross_entropy(h, labels, weight=w, label_smoothing=0.1))
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        total.backward()
        return losses
    eager_vs_compiled(lin, step, x, t, y, labels, w)


def _products(text):
    """The matrix products (gemm or matmul nodes) of an IR text."""
    return [ln for ln in text.splitlines() if re.search(r" = (gemm|matmul)\(", ln)]


def test_recurrent_layers_have_the_products_of_w5s_hand_written_loop():
    # Issue #21: nn.RNN/LSTM/GRU compiled over a sequence get their products batched as the
    # W5 benchmark's hand-written loop (benchmarks/workloads/w5_rnn.py) does: the same
    # number of products after the pipeline (lower() runs no Numba). Per step the cells
    # differ only in their elementwise gates (their gates share one product each).
    steps, hidden = 6, 5
    gj.manual_seed(0)
    ih, hh = nn.Linear(3, hidden), nn.Linear(hidden, hidden)

    def hand_loop(xs):
        h = gj.zeros(B, hidden)
        for t in range(steps):
            h = gj.tanh(ih(xs[t]) + hh(h))
        loss = h.sum()
        loss.backward()
        return loss
    xs = gj.randn(steps, B, 3)
    reference = _products(gj.compile(hand_loop).lower(xs).as_text("final"))
    # input projection, the steps' recurrent products forward and backward, dW_ih, dW_hh
    assert len(reference) == 1 + steps + (steps - 1) + 2, reference
    for cls in (nn.RNN, nn.LSTM, nn.GRU):
        m = cls(3, hidden)

        def step(xs, m=m):
            loss = m(xs)[0][-1].sum()  # the last state, as the loop's h
            loss.backward()
            return loss
        products = _products(gj.compile(step).lower(xs).as_text("final"))
        assert len(products) == len(reference), (cls.__name__, products)


def test_stacked_bidirectional_recurrent_layers_batch_layer_1s_input_gradients():
    # Issue #21 point 3: stacked (2-layer, bidirectional) layers have, per layer and
    # direction, the products of W5's loop (input projection, steps forward, steps - 1
    # backward, dW_ih, dW_hh), and per direction of layer 1 ONE product for the gradient
    # of its input (g_t W_ih_l1 over all steps: passes/batch.py, independent products),
    # where each step had its own before (6 * 2 more here).
    steps, hidden = 6, 5
    gj.manual_seed(0)
    xs = gj.randn(steps, B, 3)
    per_direction = 1 + steps + (steps - 1) + 2
    for cls in (nn.RNN, nn.LSTM, nn.GRU):
        m = cls(3, hidden, num_layers=2, bidirectional=True)

        def step(xs, m=m):
            loss = m(xs)[0].sum()  # every step's output, both directions
            loss.backward()
            return loss
        products = _products(gj.compile(step).lower(xs).as_text("final"))
        assert len(products) == 4 * per_direction + 2, (cls.__name__, products)
