"""``a @ b.T`` as blocked dot products ([Dot-product GEMM] in graphjit/backend/cpu/gemm_nt.py):
the kernel against float64 NumPy on ragged shapes and offsets, NaN and inf propagating, the
rule that picks it, and a compiled program whose GEMM node (with an epilogue) calls it."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from graphjit.backend.cpu import compile_graph
from graphjit.backend.cpu.gemm_nt import BLOCK, gemm_nt, use_dots
from graphjit.ir import parse_graph

# (m, n, k): single outputs, rows and columns that do not fill a 2 x 3 block, an inner size
# that is not a multiple of BLOCK, several blocks
SHAPES = [(1, 1, 1), (1, 4, 7), (2, 3, 5), (5, 7, 2 * BLOCK + 3), (6, 75, 1030), (3, 2, 64)]


@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("extra", [0, 3])  # rows longer than the part summed (a chunk's)
def test_matches_float64_numpy_and_writes_only_its_outputs(m, n, k, dtype, tol, extra):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a_at, b_at, out_at = 3, 5, 2  # products inside larger flat buffers
    lda, ldb = k + extra, k + 2 * extra
    a = rng.standard_normal(a_at + m * lda + 4).astype(dtype)
    b = rng.standard_normal(b_at + n * ldb + 1).astype(dtype)
    out = np.full(out_at + m * n + 3, 7.0, dtype)
    gemm_nt(a, b, out, a_at, b_at, out_at, m, n, k, lda, ldb)
    want = (a[a_at:a_at + m * lda].reshape(m, lda)[:, :k].astype(np.float64)
            @ b[b_at:b_at + n * ldb].reshape(n, ldb)[:, :k].astype(np.float64).T)
    scale = np.sqrt(k) * 4  # sums of k products of normal numbers
    np.testing.assert_allclose(out[out_at:out_at + m * n].reshape(m, n), want, rtol=0,
                               atol=tol * scale)
    assert (out[:out_at] == 7).all() and (out[out_at + m * n:] == 7).all()


def test_nan_and_inf_propagate():
    m, n, k = 3, 4, 2 * BLOCK
    a = np.ones((m, k), np.float32)
    b = np.ones((n, k), np.float32)
    a[1, 17] = np.nan
    b[2, BLOCK + 1] = np.inf
    out = np.empty(m * n, np.float32)
    gemm_nt(a.ravel(), b.ravel(), out, 0, 0, 0, m, n, k, k, k)
    want = a.astype(np.float64) @ b.astype(np.float64).T
    np.testing.assert_array_equal(out.reshape(m, n), want.astype(np.float32))
    assert np.isnan(out.reshape(m, n)[1]).all() and np.isinf(out.reshape(m, n)[0, 2])


def test_rule_picks_weight_gradients_not_square_products():
    assert use_dots(6, 75, 50176)      # W7's first convolution
    assert use_dots(16, 150, 6400)     # its second
    assert not use_dots(6, 75, 64)     # a short inner dimension: OpenBLAS
    assert not use_dots(512, 784, 256)
    assert not use_dots(64, 576, 65536)  # a large product: OpenBLAS's tiles win


@pytest.mark.parametrize("m, n, k, parallel", [(5, 7, BLOCK + 9, False),
                                               (6, 75, 3 * BLOCK + 5, True)])
def test_a_compiled_gemm_node_calls_it_and_runs_its_epilogue(m, n, k, parallel):
    program = compile_graph(parse_graph(f'''
    graph f(%a: f32[{m},{k}] {{arg}}, %b: f32[{n},{k}] {{arg}}, %c: f32[{n}] {{arg}}) {{
      %0 = gemm(%a, %b, %c, epilogue='t0 = add(i0, i1); t1 = relu(t0)', trans_a=false, trans_b=true) : f32[{m},{n}]
      return %0
    }}'''))
    assert "gemm_nt(" in program.source
    # a large product: parts of the inner dimension in a parallel loop, added in order
    assert ("prange(3)" in program.source) == parallel
    rng = np.random.default_rng(4)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)
    c = rng.standard_normal(n).astype(np.float32)
    (out,), _ = program([a, b, c])
    want = np.maximum(a.astype(np.float64) @ b.astype(np.float64).T + c, 0)
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-6 * np.sqrt(k) * 4)


def test_a_wide_linear_layer_uses_it_and_matches_eager(monkeypatch):
    """Through the whole compiler: a linear layer with many inputs and few outputs, whose
    forward ``x @ w.T`` is a dots-shaped GEMM (a convolution's weight gradient reads its
    windows from the image instead: test_window_gemm.py), compiled against eager."""
    from graphjit.backend.cpu import linalg
    picked = []

    def recording(m, n, k):
        picked.append((m, n, k, use_dots(m, n, k)))
        return picked[-1][-1]
    monkeypatch.setattr(linalg, "use_dots", recording)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 2 * BLOCK + 5)).astype(np.float32)
    w0 = rng.standard_normal((4, 2 * BLOCK + 5)).astype(np.float32) * 0.03

    def loss_grad(w, x):
        loss = ((x @ w.t()).tanh() ** 2).sum()
        loss.backward()
        return loss

    results = []
    for fn in (loss_grad, gj.compile(loss_grad)):
        w = gj.tensor(w0, requires_grad=True)
        loss = fn(w, gj.tensor(x))
        results.append((loss.item(), w.grad.numpy()))
    assert (6, 4, 2 * BLOCK + 5, True) in picked, picked
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4, atol=1e-5)
