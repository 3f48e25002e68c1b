"""Products over a convolution's windows read from the image a chunk of images at a time
([Window GEMM nodes] in graphjit/ir/gemm.py): the kernel against float64 products of windows
built by plain loops (every option that changes the windows, one chunk and many, the forward
product with and without a transposed left operand, the weight gradient serial and in
parallel, an epilogue, the ``np.dot`` fallback), the interpreter's ``impl`` against the same,
and the pass on a real convolution step (no unfold left, values as eager)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphjit as gj
from graphjit.backend.cpu import blas, compile_graph, linalg
from graphjit.ir import parse_graph
from graphjit.ir.interpret import Interpreter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def windows(x, kernel, dilation, stride, padding):
    """B = [C*KH*KW, N*OH*OW] by loops: B[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i*dh,
    ow*sw + j*dw] (zero outside x)."""
    n, c, h, w = x.shape
    (kh, kw), (dh, dw), (sh, sw), (top, bottom, left, right) = kernel, dilation, stride, padding
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    b = np.zeros((c, kh, kw, n, oh, ow), np.float64)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                for r in range(oh):
                    for q in range(ow):
                        y, z = r * sh + i * dh - top, q * sw + j * dw - left
                        if 0 <= y < h and 0 <= z < w:
                            b[ci, i, j, :, r, q] = x[:, ci, y, z]
    return b.reshape(c * kh * kw, n * oh * ow)


# (N, C, H, W, kernel, dilation, stride, padding)
CASES = [
    (4, 3, 9, 9, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0)),
    (3, 2, 9, 8, (3, 2), (2, 1), (2, 1), (1, 2, 0, 1)),
    (5, 1, 6, 7, (2, 2), (1, 1), (1, 2), (1, 1, 1, 1)),
]


def _graph(w_shape, x_shape, g_shape, attrs, trans_a, epilogue):
    at = ", ".join(f"{k}={list(v)}" for k, v in attrs.items()) + ", pad_value=0.0"
    m, k = g_shape[0], (w_shape[0] if trans_a else w_shape[1])
    np_ = g_shape[1]
    bias = ", %c" if epilogue else ""
    ep = "t0 = add(i0, i1); t1 = relu(t0)" if epilogue else ""
    return parse_graph(f'''
    graph f(%w: f32{list(w_shape)} {{arg}}, %x: f32{list(x_shape)} {{arg}}, %g: f32{list(g_shape)} {{arg}}, %c: f32[{m},1] {{arg}}) {{
      %0 = window_gemm(%w, %x{bias}, epilogue='{ep}', {at}, trans_a={str(trans_a).lower()}, trans_b=false) : f32[{m},{np_}]
      %1 = window_gemm(%g, %x, epilogue='', {at}, trans_a=false, trans_b=true) : f32[{m},{k}]
      return %0, %1
    }}''')


def _case(case, trans_a, seed):
    n, c, h, w, kernel, dilation, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    b = windows(x.astype(np.float64), kernel, dilation, stride, padding)
    m = 5
    wt = rng.standard_normal((b.shape[0], m) if trans_a else (m, b.shape[0])).astype(np.float32)
    g = rng.standard_normal((m, b.shape[1])).astype(np.float32)
    bias = rng.standard_normal((m, 1)).astype(np.float32)
    attrs = {"kernel": kernel, "dilation": dilation, "stride": stride, "padding": padding}
    return x, b, wt, g, bias, attrs


def _check(outs, wt, b, g, bias, trans_a, epilogue):
    a = (wt.T if trans_a else wt).astype(np.float64)
    forward = a @ b
    if epilogue:
        forward = np.maximum(forward + bias, 0)
    np.testing.assert_allclose(outs[0], forward, rtol=0, atol=2e-5)
    np.testing.assert_allclose(outs[1], g.astype(np.float64) @ b.T, rtol=0, atol=5e-5)


@pytest.mark.parametrize("chunk_bytes", [linalg.WINDOW_CHUNK_BYTES, 1])  # one chunk / one per image
@pytest.mark.parametrize("trans_a, epilogue", [(False, True), (True, False)])
@pytest.mark.parametrize("case", CASES)
def test_kernel_matches_products_of_windows_built_by_loops(case, trans_a, epilogue, chunk_bytes,
                                                           monkeypatch):
    monkeypatch.setattr(linalg, "WINDOW_CHUNK_BYTES", chunk_bytes)
    x, b, wt, g, bias, attrs = _case(case, trans_a, seed=len(case) + chunk_bytes % 7)
    graph = _graph(wt.shape, x.shape, g.shape, attrs, trans_a, epilogue)
    program = compile_graph(graph)
    chunks = case[0] if chunk_bytes == 1 else 1
    assert f"in range({chunks}):" in program.source
    outs, _ = program([wt, x, g, bias])
    _check(outs, wt, b, g, bias, trans_a, epilogue)
    # the interpreter (tiered execution's first calls) runs the op's impl
    _check(Interpreter(graph).run([wt, x, g, bias])[0], wt, b, g, bias, trans_a, epilogue)


@pytest.mark.parametrize("single_thread_max, gemms", [(None, 1), (5000, 3)])
def test_large_products_run_their_chunks_in_parallel(single_thread_max, gemms, monkeypatch):
    """The weight gradient's chunks in parallel, partials added in order; the forward's
    chunks in parallel too, each chunk's GEMM in parts of columns small enough for OpenBLAS
    to run on the calling thread (``gemms`` per chunk)."""
    monkeypatch.setattr(linalg, "WINDOW_CHUNK_BYTES", 1)
    if single_thread_max is not None:
        monkeypatch.setattr(linalg, "GEMM_SINGLE_THREAD_MAX", single_thread_max)
    monkeypatch.setenv("GRAPHJIT_PARALLEL_MIN", "1")
    case = (6, 2, 12, 12, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1))
    for trans_a, epilogue in ((False, True), (True, False)):
        x, b, wt, g, bias, attrs = _case(case, trans_a, seed=3)
        program = compile_graph(_graph(wt.shape, x.shape, g.shape, attrs, trans_a, epilogue))
        assert program.source.count("in prange(6):") == 2
        if blas.cblas() is not None:
            assert program.source.count("cblas_sgemm(") == gemms
        outs, _ = program([wt, x, g, bias])
        _check(outs, wt, b, g, bias, trans_a, epilogue)


def test_the_np_dot_fallback_gives_the_same_values():
    """``GRAPHJIT_BLAS=numba`` (kernels call ``np.dot``, as where NumPy has no OpenBLAS of
    its own): the forward product writes each chunk's columns from a whole-matrix part."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import numpy as np
        from graphjit.backend.cpu import blas, compile_graph, linalg
        import test_window_gemm as t
        linalg.WINDOW_CHUNK_BYTES = 1
        x, b, wt, g, bias, attrs = t._case(t.CASES[1], False, seed=5)
        program = compile_graph(t._graph(wt.shape, x.shape, g.shape, attrs, False, True))
        outs, _ = program([wt, x, g, bias])
        t._check(outs, wt, b, g, bias, False, True)
        print(json.dumps({{"np_dot": "np.dot(" in program.source,
                          "cblas": "cblas_sgemm(" in program.source}}))
    """)
    env = dict(os.environ, GRAPHJIT_BLAS="numba")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"np_dot": True, "cblas": False}


def _conv_step(conv):
    def step(x):
        loss = (conv(x).relu() ** 2).sum()
        loss.backward()
        return loss
    return step


def test_a_convolution_step_reads_its_windows_from_the_image_and_matches_eager(rng):
    gj.manual_seed(0)
    conv = gj.nn.Conv2d(3, 4, 3, padding=1, stride=(1, 2))
    # 4 * 18 * 17 windows: a weight gradient long enough for dot products (dots_shaped)
    x = gj.tensor(rng.standard_normal((4, 3, 18, 34)).astype(np.float32))

    def step(x):
        loss = (conv(x).relu() ** 2).sum()
        loss.backward()
        return loss

    results = []
    for fn in (step, gj.compile(step)):
        for p in conv.parameters():
            p.grad = None
        loss = fn(x)
        results.append((loss.item(), conv.weight.grad.numpy().copy(),
                        conv.bias.grad.numpy().copy()))
    for e, c in zip(results[0], results[1]):
        np.testing.assert_allclose(c, e, rtol=1e-4, atol=1e-4)
    text = gj.compile(step).lower(x).as_text()
    assert "unfold(" not in text, text  # forward product and weight gradient read x
    assert text.count("window_gemm(") == 2, text


def test_wide_convolutions_keep_their_unfold(rng):
    """Where a product of the windows would lose (more than WINDOW_FORWARD_MAX_ROWS output
    channels; a weight gradient BLAS runs faster), none reads them in chunks: the windows
    are unfolded once for both."""
    from graphjit.ir.gemm import WINDOW_FORWARD_MAX_ROWS
    conv = gj.nn.Conv2d(3, WINDOW_FORWARD_MAX_ROWS + 1, 3)
    x = gj.tensor(rng.standard_normal((4, 3, 18, 18)).astype(np.float32))
    text = gj.compile(_conv_step(conv)).lower(x).as_text()
    assert "window_gemm(" not in text and text.count("unfold(") == 1, text


def _random_conv(seed):
    """A random convolution (every option that changes the windows) and its input, with at
    least one window."""
    rng = np.random.default_rng(seed)
    while True:
        n, c, oc = (int(v) for v in rng.integers(1, 5, 3))
        h, w = (int(v) for v in rng.integers(4, 12, 2))
        kernel = tuple(int(v) for v in rng.integers(1, 4, 2))
        stride = tuple(int(v) for v in rng.integers(1, 3, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        oh = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        ow = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        if oh > 0 and ow > 0:
            break
    gj.manual_seed(seed)
    conv = gj.nn.Conv2d(c, oc, kernel, stride=stride, padding=padding, dilation=dilation,
                        bias=bool(rng.integers(0, 2)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    return conv, x


@pytest.mark.parametrize("seed", range(6))
def test_random_convolutions_read_in_chunks_match_eager(seed, monkeypatch):
    """Random convolutions with the pass's thresholds lowered (so these small shapes read
    their windows in chunks of one image, the weight gradients in parallel): loss, weight,
    bias and input gradients compiled against eager."""
    import passes.gemm as gemm_pass
    monkeypatch.setattr(gemm_pass, "dots_shaped", lambda m, n, k: True)
    monkeypatch.setattr(linalg, "WINDOW_CHUNK_BYTES", 1)
    monkeypatch.setenv("GRAPHJIT_PARALLEL_MIN", "1")
    conv, x0 = _random_conv(seed)

    def step(x):
        loss = (conv(x).tanh() ** 2).sum()
        loss.backward()
        return loss

    results = []
    compiled = gj.compile(step)
    for fn in (step, compiled):
        for p in conv.parameters():
            p.grad = None
        x = gj.tensor(x0, requires_grad=True)
        loss = fn(x)
        results.append([loss.item(), x.grad.numpy()] + [p.grad.numpy() for p in conv.parameters()])
    for e, c in zip(*results):
        np.testing.assert_allclose(c, e, rtol=1e-4, atol=1e-5)
    assert gj.compile(step).lower(gj.tensor(x0, requires_grad=True)).as_text().count(
        "window_gemm(") == 2
