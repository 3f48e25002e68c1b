"""Pooling (F.max_pool1d/2d, avg_pool1d/2d, adaptive_avg/max_pool1d/2d and their modules)
against NumPy loops written from PyTorch's CPU kernels, float64 gradcheck on tiny shapes,
where the gradient of tied maxima goes, and the errors."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn.functional as F
from graphjit import nn
from graphjit.testing import assert_close, gradcheck, make_array

from nn_testing import raises_naming, t64

THIS_FILE = os.path.basename(__file__)


def pool_out(size, k, s, p, d, ceil_mode):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


# ---- references: PyTorch's loops, one output element at a time --------------------------------

def max_pool2d_ref(x, k, s, p, d, ceil_mode):
    """(values, flat indices): the window clipped to the input, each element beating the
    running maximum (or a NaN) takes over, starting from -inf at the first real element."""
    n, c, h, w = x.shape
    oh, ow = (pool_out(h, k[0], s[0], p[0], d[0], ceil_mode),
              pool_out(w, k[1], s[1], p[1], d[1], ceil_mode))
    vals = np.zeros((n, c, oh, ow))
    idx = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            r1, c1 = min(r0 + (k[0] - 1) * d[0] + 1, h), min(c0 + (k[1] - 1) * d[1] + 1, w)
            while r0 < 0:
                r0 += d[0]
            while c0 < 0:
                c0 += d[1]
            for a in range(n):
                for b in range(c):
                    best, where = -math.inf, r0 * w + c0
                    for r in range(r0, r1, d[0]):
                        for q in range(c0, c1, d[1]):
                            v = x[a, b, r, q]
                            if v > best or math.isnan(v):  # PyTorch's test
                                best, where = v, r * w + q
                    vals[a, b, i, j], idx[a, b, i, j] = best, where
    return vals, idx


def scatter_grad(shape, idx, g):
    """The gradient of a max pooling: each output's gradient to its chosen input element."""
    out = np.zeros(shape)
    n, c = shape[:2]
    flat = out.reshape(n, c, -1)
    for a in range(n):
        for b in range(c):
            np.add.at(flat[a, b], idx[a, b].reshape(-1), g[a, b].reshape(-1))
    return out


def avg_pool2d_ref(x, k, s, p, ceil_mode, count_include_pad, divisor_override=None):
    n, c, h, w = x.shape
    oh, ow = pool_out(h, k[0], s[0], p[0], 1, ceil_mode), pool_out(w, k[1], s[1], p[1], 1,
                                                                    ceil_mode)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            r1, c1 = min(r0 + k[0], h + p[0]), min(c0 + k[1], w + p[1])
            pool_size = (r1 - r0) * (c1 - c0)
            r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = pool_size
            else:
                div = (r1 - r0) * (c1 - c0)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3)) / div
    return out


def adaptive_windows(size, out):
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_ref(x, oh, ow):
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow))
    for i, (r0, r1) in enumerate(adaptive_windows(h, oh)):
        for j, (c0, c1) in enumerate(adaptive_windows(w, ow)):
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


def adaptive_max_ref(x, oh, ow):
    n, c, h, w = x.shape
    vals = np.zeros((n, c, oh, ow))
    idx = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i, (r0, r1) in enumerate(adaptive_windows(h, oh)):
        for j, (c0, c1) in enumerate(adaptive_windows(w, ow)):
            for a in range(n):
                for b in range(c):
                    best, where = -math.inf, r0 * w + c0
                    for r in range(r0, r1):
                        for q in range(c0, c1):
                            v = x[a, b, r, q]
                            if v > best or math.isnan(v):  # PyTorch's test
                                best, where = v, r * w + q
                    vals[a, b, i, j], idx[a, b, i, j] = best, where
    return vals, idx


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# ---- max pooling -----------------------------------------------------------------------------

MAX = [
    # id, input shape, kwargs (kernel_size, stride, padding, dilation, ceil_mode)
    ("k2", (2, 3, 6, 6), dict(kernel_size=2)),
    ("k3_s2_odd", (1, 2, 7, 5), dict(kernel_size=3, stride=2)),
    ("rect_stride_padding", (1, 2, 6, 7), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))),
    ("dilation", (1, 2, 7, 8), dict(kernel_size=2, stride=1, dilation=(2, 3), padding=1)),
    ("ceil_mode", (1, 2, 5, 7), dict(kernel_size=2, stride=2, ceil_mode=True)),
    # along H the last ceil window would start in the bottom padding: PyTorch drops it
    ("ceil_mode_padding_drop", (1, 1, 5, 6), dict(kernel_size=2, stride=2, padding=1,
                                                  ceil_mode=True)),
    ("ceil_mode_dilation", (1, 2, 6, 6), dict(kernel_size=2, stride=3, dilation=2,
                                              ceil_mode=True)),
]


def _max_args(kw):
    k = _pair(kw["kernel_size"])
    s = _pair(kw.get("stride") or kw["kernel_size"])
    return k, s, _pair(kw.get("padding", 0)), _pair(kw.get("dilation", 1)), kw.get("ceil_mode",
                                                                                  False)


@pytest.mark.parametrize("shape,kw", [pytest.param(*r[1:], id=r[0]) for r in MAX])
def test_max_pool2d_values_indices_and_gradient(shape, kw, rng):
    x = rng.integers(-3, 4, size=shape).astype(np.float64)  # small ints: many ties
    vals, idx = max_pool2d_ref(x, *_max_args(kw))
    xt = t64(x, True)
    out, indices = F.max_pool2d(xt, **kw, return_indices=True)
    assert_close(out, vals, rtol=0, atol=0)
    assert_close(indices, idx)
    g = rng.standard_normal(vals.shape)
    out.backward(t64(g))
    assert_close(xt.grad, scatter_grad(shape, idx, g), rtol=1e-12, atol=1e-12)
    out32 = F.max_pool2d(gj.tensor(x.astype(np.float32)), **kw)
    assert out32.dtype is gj.float32
    assert_close(out32, vals.astype(np.float32), rtol=0, atol=0)


@pytest.mark.parametrize("shape,kw", [pytest.param(*r[1:], id=r[0]) for r in MAX])
def test_max_pool2d_gradcheck(shape, kw, rng):
    x = t64(make_array(rng, (1, 1) + shape[2:], "distinct"), True)  # no ties: differentiable
    assert gradcheck(lambda t: F.max_pool2d(t, **kw), (x,))


def test_max_pool_gradient_of_ties_goes_to_the_first_element():
    x = gj.zeros(1, 1, 4, 4, dtype=gj.float64, requires_grad=True)
    F.max_pool2d(gj.relu(x - 1.0), 2).sum().backward()  # every window all zero after a ReLU
    assert x.grad.numpy().sum() == 0  # the ReLU's gradient is 0 there
    y = gj.zeros(1, 1, 4, 4, dtype=gj.float64, requires_grad=True)
    F.max_pool2d(y, 2).sum().backward()
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1.0  # the top-left element of each 2x2 window, nothing split
    assert_close(y.grad[0, 0], expected, rtol=0, atol=0)
    z = gj.tensor([[[[1.0, 3.0, 3.0], [3.0, 0.0, 3.0]]]], dtype=gj.float64, requires_grad=True)
    out, idx = F.max_pool2d(z, (2, 3), return_indices=True)
    out.backward()
    assert idx.item() == 1
    assert_close(z.grad[0, 0], np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), rtol=0, atol=0)


def test_max_pool_propagates_nan_and_handles_infinities():
    x = np.array([[[[1.0, np.nan, 2.0, 0.0], [5.0, 3.0, -np.inf, -np.inf],
                    [np.inf, 1.0, -np.inf, -np.inf], [0.0, 0.0, -np.inf, -np.inf]]]])
    out, idx = F.max_pool2d(t64(x), 2, return_indices=True)
    vals, ref_idx = max_pool2d_ref(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
    assert_close(out, vals, rtol=0, atol=0, equal_nan=True)
    assert np.isnan(out.numpy()[0, 0, 0, 0]) and out.numpy()[0, 0, 1, 0] == np.inf
    assert_close(idx, ref_idx)  # the all -inf window: its first element, as PyTorch
    # With two NaNs in a window PyTorch reports the last one's index, graphjit the first
    # (see [First maximum] in graphjit/nn/functional_conv.py); the value is NaN either way.
    xt = t64(x, True)
    F.max_pool2d(xt, 2).sum().backward()
    assert xt.grad.numpy()[0, 0, 0, 1] == 1.0  # the NaN got the gradient


def test_max_pool1d_and_unbatched(rng):
    x = rng.standard_normal((2, 3, 9))
    out, idx = F.max_pool1d(t64(x), 3, stride=2, padding=1, return_indices=True)
    vals, ref_idx = max_pool2d_ref(x[:, :, None], (1, 3), (1, 2), (0, 1), (1, 1), False)
    assert_close(out, vals[:, :, 0], rtol=0, atol=0)
    assert_close(idx, ref_idx[:, :, 0])  # within the row: the position along L
    assert_close(F.max_pool2d(t64(x), 2), max_pool2d_ref(x[None], (2, 2), (2, 2), (0, 0),
                                                         (1, 1), False)[0][0], rtol=0, atol=0)
    xs = t64(x[:1, :1], True)
    assert gradcheck(lambda t: F.max_pool1d(t, 2, ceil_mode=True), (xs,))


def test_max_pool_modules(rng):
    m = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    assert repr(m) == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)"
    x = rng.standard_normal((2, 2, 7, 7))
    assert_close(m(t64(x)), max_pool2d_ref(x, (3, 3), (2, 2), (1, 1), (1, 1), True)[0], rtol=0,
                 atol=0)
    out, idx = nn.MaxPool2d(2, return_indices=True)(t64(x))
    assert idx.dtype is gj.int64 and idx.shape == out.shape == (2, 2, 3, 3)
    assert nn.MaxPool1d(2)(t64(x[:, :, 0])).shape == (2, 2, 3)
    assert nn.MaxPool2d(2).state_dict() == {}


# ---- average pooling -------------------------------------------------------------------------

AVG = [
    ("k2", (2, 2, 6, 5), dict(kernel_size=2)),
    ("k3_s1_pad", (1, 2, 5, 6), dict(kernel_size=3, stride=1, padding=1)),
    ("exclude_pad", (1, 2, 5, 6), dict(kernel_size=3, stride=2, padding=1,
                                       count_include_pad=False)),
    ("ceil_mode", (1, 2, 5, 7), dict(kernel_size=(2, 3), stride=2, ceil_mode=True)),
    ("ceil_mode_pad_exclude", (1, 1, 6, 6), dict(kernel_size=3, stride=2, padding=1,
                                                 ceil_mode=True, count_include_pad=False)),
    ("ceil_mode_pad_include", (1, 1, 6, 5), dict(kernel_size=3, stride=2, padding=1,
                                                 ceil_mode=True)),
    ("divisor_override", (1, 2, 4, 4), dict(kernel_size=2, padding=1, divisor_override=3)),
]


@pytest.mark.parametrize("shape,kw", [pytest.param(*r[1:], id=r[0]) for r in AVG])
def test_avg_pool2d_matches_loops_and_gradcheck(shape, kw, rng):
    x = rng.standard_normal(shape)
    k = _pair(kw["kernel_size"])
    expected = avg_pool2d_ref(x, k, _pair(kw.get("stride", k)), _pair(kw.get("padding", 0)),
                              kw.get("ceil_mode", False), kw.get("count_include_pad", True),
                              kw.get("divisor_override"))
    assert_close(F.avg_pool2d(t64(x), **kw), expected, rtol=1e-12, atol=1e-12)
    assert_close(F.avg_pool2d(gj.tensor(x.astype(np.float32)), **kw),
                 expected.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert_close(nn.AvgPool2d(**kw)(t64(x)), expected, rtol=1e-12, atol=1e-12)
    xs = t64(x[:1, :1], True)
    assert gradcheck(lambda t: F.avg_pool2d(t, **kw), (xs,))


def test_avg_pool1d(rng):
    x = rng.standard_normal((2, 3, 7))
    out = F.avg_pool1d(t64(x), 3, stride=2, padding=1, count_include_pad=False)
    expected = avg_pool2d_ref(x[:, :, None], (1, 3), (1, 2), (0, 1), False, False)[:, :, 0]
    assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert_close(nn.AvgPool1d(2)(t64(x)), x[:, :, :6].reshape(2, 3, 3, 2).mean(-1), rtol=1e-12,
                 atol=1e-12)


# ---- adaptive pooling ------------------------------------------------------------------------

ADAPTIVE = [
    ("global", (2, 3, 5, 4), 1),
    ("divisible", (1, 2, 6, 4), (3, 2)),
    ("overlapping", (1, 2, 5, 7), (3, 4)),
    ("mixed_none", (1, 2, 6, 5), (None, 3)),
    ("upsampling", (1, 1, 2, 3), (3, 5)),
]


@pytest.mark.parametrize("shape,size", [pytest.param(*r[1:], id=r[0]) for r in ADAPTIVE])
def test_adaptive_avg_pool2d(shape, size, rng):
    x = rng.standard_normal(shape)
    oh, ow = (size, size) if isinstance(size, int) else size
    oh, ow = oh or shape[2], ow or shape[3]
    expected = adaptive_avg_ref(x, oh, ow)
    assert_close(F.adaptive_avg_pool2d(t64(x), size), expected, rtol=1e-12, atol=1e-12)
    assert_close(nn.AdaptiveAvgPool2d(size)(gj.tensor(x.astype(np.float32))),
                 expected.astype(np.float32), rtol=1e-5, atol=1e-6)
    xs = t64(x[:1, :1], True)
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, size), (xs,))


@pytest.mark.parametrize("shape,size", [pytest.param(*r[1:], id=r[0]) for r in ADAPTIVE])
def test_adaptive_max_pool2d(shape, size, rng):
    x = rng.integers(-2, 3, size=shape).astype(np.float64)  # ties
    oh, ow = (size, size) if isinstance(size, int) else size
    oh, ow = oh or shape[2], ow or shape[3]
    vals, idx = adaptive_max_ref(x, oh, ow)
    xt = t64(x, True)
    out, indices = F.adaptive_max_pool2d(xt, size, return_indices=True)
    assert_close(out, vals, rtol=0, atol=0)
    assert_close(indices, idx)
    g = rng.standard_normal(vals.shape)
    out.backward(t64(g))
    assert_close(xt.grad, scatter_grad(shape, idx, g), rtol=1e-12, atol=1e-12)
    xs = t64(make_array(rng, (1, 1) + shape[2:], "distinct"), True)
    assert gradcheck(lambda t: F.adaptive_max_pool2d(t, size), (xs,))
    assert_close(nn.AdaptiveMaxPool2d(size)(t64(x)), vals, rtol=0, atol=0)


def test_adaptive_1d(rng):
    x = rng.standard_normal((2, 3, 7))
    avg = adaptive_avg_ref(x[:, :, None], 1, 3)[:, :, 0]
    assert_close(F.adaptive_avg_pool1d(t64(x), 3), avg, rtol=1e-12, atol=1e-12)
    assert_close(nn.AdaptiveAvgPool1d(3)(t64(x)), avg, rtol=1e-12, atol=1e-12)
    vals, idx = adaptive_max_ref(x[:, :, None], 1, 3)
    out, got = F.adaptive_max_pool1d(t64(x), 3, return_indices=True)
    assert_close(out, vals[:, :, 0], rtol=0, atol=0)
    assert_close(got, idx[:, :, 0])
    assert nn.AdaptiveMaxPool1d(2)(t64(x)).shape == (2, 3, 2)


# ---- errors ----------------------------------------------------------------------------------

def _raises(exc, call, *fragments):
    return raises_naming(exc, call, *fragments, file=THIS_FILE)


def test_pooling_errors():
    x = gj.randn(1, 2, 4, 4)
    _raises(ValueError, lambda: F.max_pool2d(x, 2, padding=2), "max_pool2d", "half")
    _raises(gj.ShapeError, lambda: F.max_pool2d(x, 5), "max_pool2d", "(1, 2, 4, 4)",
            "too small")
    _raises(gj.ShapeError, lambda: F.max_pool2d(gj.randn(4, 4), 2), "max_pool2d", "(4, 4)")
    _raises(gj.DTypeError, lambda: F.max_pool2d(gj.tensor([[[[1, 2], [3, 4]]]]), 2),
            "max_pool2d", "int64")
    _raises(ValueError, lambda: F.avg_pool2d(x, 3, padding=2), "avg_pool2d", "half")
    _raises(ValueError, lambda: F.avg_pool2d(x, 2, divisor_override=0), "avg_pool2d",
            "divisor")
    _raises(ValueError, lambda: F.max_pool2d(x, (2, 2, 2)), "max_pool2d", "kernel_size")
    _raises(ValueError, lambda: F.adaptive_avg_pool2d(x, (2, 0)), "adaptive_avg_pool2d",
            "output_size")
    _raises(ValueError, lambda: F.adaptive_max_pool2d(x, (1, 2, 3)), "adaptive_max_pool2d",
            "output_size")
