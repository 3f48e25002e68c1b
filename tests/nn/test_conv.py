"""Convolutions (F.conv1d/conv2d/conv_transpose2d, F.unfold/fold, Conv1d/Conv2d/
ConvTranspose2d) against naive NumPy loops over output positions, float64 gradcheck on tiny
shapes, the modules' parameters and errors, and the graphs the compiler passes make of them.

Convolutions do not compile yet (unfold/fold have no CPU/CUDA emitters): the pass pipeline is
checked on graphs built directly and run by the reference interpreter.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import graphjit as gj
import graphjit.nn.functional as F
from graphjit import dtypes, nn
from graphjit.ir import Graph, GraphBuilder, parse_graph, print_graph, run_graph
from graphjit.ops import api, registry
from graphjit.shapes import TensorType
from graphjit.testing import assert_close, gradcheck

from nn_testing import raises_naming, t64

THIS_FILE = os.path.basename(__file__)


# ---- references: the definitions, one output element at a time -------------------------------

def conv2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """padding = (top, bottom, left, right)."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    top, bottom, left, right = padding
    xp = np.zeros((n, c, h + top + bottom, wd + left + right))
    xp[:, :, top:top + h, left:left + wd] = x
    oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, oc, oh, ow))
    per_group = oc // groups
    for i in range(n):
        for o in range(oc):
            g = o // per_group
            for p in range(oh):
                for q in range(ow):
                    acc = 0.0
                    for ci in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                acc += (xp[i, g * cg + ci, p * stride[0] + u * dilation[0],
                                           q * stride[1] + v * dilation[1]] * w[o, ci, u, v])
                    out[i, o, p, q] = acc + (0.0 if b is None else b[o])
    return out


def conv_transpose2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                         groups=1, dilation=(1, 1)):
    """Each input element scatters its kernel-weighted copy into the output (PyTorch's
    definition), then the padding is cut off."""
    n, cin, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    full = [(s - 1) * st + d * (k - 1) + 1 + op for s, st, d, k, op in
            zip((h, wd), stride, dilation, (kh, kw), output_padding)]
    out = np.zeros((n, ocg * groups) + tuple(full))
    cg = cin // groups
    for i in range(n):
        for ci in range(cin):
            g = ci // cg
            for p in range(h):
                for q in range(wd):
                    for o in range(ocg):
                        for u in range(kh):
                            for v in range(kw):
                                r = p * stride[0] + u * dilation[0]
                                c = q * stride[1] + v * dilation[1]
                                out[i, g * ocg + o, r, c] += x[i, ci, p, q] * w[ci, o, u, v]
    size = [(s - 1) * st - 2 * pd + d * (k - 1) + op + 1 for s, st, pd, d, k, op in
            zip((h, wd), stride, padding, dilation, (kh, kw), output_padding)]
    out = out[:, :, padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]
    if out.shape[2:] != tuple(size):  # rows no input reaches (output_padding beyond the last)
        grown = np.zeros(out.shape[:2] + tuple(size))
        grown[:, :, :out.shape[2], :out.shape[3]] = out
        out = grown
    return out + (0.0 if b is None else b.reshape(-1, 1, 1))


# ---- conv2d / conv1d ----------------------------------------------------------------------

CONV2D = [
    # id, input shape, weight shape, kwargs, reference padding (t, b, l, r), stride, dilation
    ("plain", (2, 3, 5, 6), (4, 3, 3, 2), {}, (0, 0, 0, 0), (1, 1), (1, 1)),
    ("bias_padding", (2, 2, 4, 5), (3, 2, 3, 3), {"padding": 1}, (1, 1, 1, 1), (1, 1), (1, 1)),
    ("stride_padding_tuple", (1, 2, 7, 6), (3, 2, 3, 2), {"stride": (2, 3), "padding": (1, 2)},
     (1, 1, 2, 2), (2, 3), (1, 1)),
    ("dilation", (1, 2, 7, 7), (2, 2, 2, 3), {"dilation": (2, 1), "padding": 1}, (1, 1, 1, 1),
     (1, 1), (2, 1)),
    ("groups", (2, 4, 5, 5), (6, 2, 3, 3), {"groups": 2, "stride": 2}, (0, 0, 0, 0), (2, 2),
     (1, 1)),
    ("depthwise", (1, 3, 5, 4), (6, 1, 3, 3), {"groups": 3, "padding": 1}, (1, 1, 1, 1), (1, 1),
     (1, 1)),
    ("same_odd", (1, 2, 5, 5), (3, 2, 3, 3), {"padding": "same"}, (1, 1, 1, 1), (1, 1), (1, 1)),
    # an even kernel: the extra element of "same" goes after (bottom/right), as in PyTorch
    ("same_even_dilated", (1, 2, 5, 6), (2, 2, 2, 4), {"padding": "same", "dilation": (1, 2)},
     (0, 1, 3, 3), (1, 1), (1, 2)),
    ("valid", (1, 2, 4, 4), (2, 2, 3, 3), {"padding": "valid"}, (0, 0, 0, 0), (1, 1), (1, 1)),
    ("one_by_one", (2, 3, 3, 4), (5, 3, 1, 1), {}, (0, 0, 0, 0), (1, 1), (1, 1)),
    ("one_by_one_stride", (2, 3, 5, 4), (2, 3, 1, 1), {"stride": 2}, (0, 0, 0, 0), (2, 2),
     (1, 1)),
]


@pytest.mark.parametrize("shape_x,shape_w,kw,pads,stride,dilation",
                         [pytest.param(*row[1:], id=row[0]) for row in CONV2D])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_loops(shape_x, shape_w, kw, pads, stride, dilation, bias, rng):
    x, w = rng.standard_normal(shape_x), rng.standard_normal(shape_w)
    b = rng.standard_normal(shape_w[0]) if bias else None
    groups = kw.get("groups", 1)
    expected = conv2d_ref(x, w, b, stride, pads, dilation, groups)
    for dtype, tol in ((gj.float64, 1e-12), (gj.float32, 1e-5)):
        out = F.conv2d(gj.tensor(x, dtype=dtype), gj.tensor(w, dtype=dtype),
                       None if b is None else gj.tensor(b, dtype=dtype), **kw)
        assert out.dtype is dtype
        assert_close(out, expected.astype(dtype.np), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape_x,shape_w,kw,pads,stride,dilation",
                         [pytest.param(*row[1:], id=row[0]) for row in CONV2D])
def test_conv2d_gradcheck(shape_x, shape_w, kw, pads, stride, dilation, rng):
    n, c = shape_x[:2]
    x = t64(rng.standard_normal((1, c) + shape_x[2:]), True)  # one sample: fewer evaluations
    w = t64(rng.standard_normal(shape_w), True)
    b = t64(rng.standard_normal(shape_w[0]), True)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kw), (x, w, b))


def test_conv2d_unbatched_input(rng):
    x, w = rng.standard_normal((2, 4, 5)), rng.standard_normal((3, 2, 2, 2))
    out = F.conv2d(t64(x), t64(w), stride=(1, 2))
    assert_close(out, conv2d_ref(x[None], w, stride=(1, 2))[0], rtol=1e-12, atol=1e-12)


CONV1D = [
    ("plain", (2, 3, 7), (4, 3, 3), {}),
    ("stride_padding_dilation", (2, 2, 9), (3, 2, 2), {"stride": 2, "padding": 2, "dilation": 3}),
    ("groups_same", (1, 4, 6), (4, 2, 4), {"groups": 2, "padding": "same"}),
]


def _conv1d_ref(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    if padding == "same":
        total = dilation * (w.shape[2] - 1)
        pads = (0, 0, total // 2, total - total // 2)
    else:
        pads = (0, 0, padding, padding)
    return conv2d_ref(x[:, :, None], w[:, :, None], b, (1, stride), pads, (1, dilation),
                      groups)[:, :, 0]


@pytest.mark.parametrize("shape_x,shape_w,kw", [pytest.param(*r[1:], id=r[0]) for r in CONV1D])
def test_conv1d_matches_loops_and_gradcheck(shape_x, shape_w, kw, rng):
    x, w = rng.standard_normal(shape_x), rng.standard_normal(shape_w)
    b = rng.standard_normal(shape_w[0])
    assert_close(F.conv1d(t64(x), t64(w), t64(b), **kw), _conv1d_ref(x, w, b, **kw),
                 rtol=1e-12, atol=1e-12)
    xs, ws, bs = t64(x[:1], True), t64(w, True), t64(b, True)
    assert gradcheck(lambda x, w, b: F.conv1d(x, w, b, **kw), (xs, ws, bs))
    unbatched = F.conv1d(t64(x[0]), t64(w), t64(b), **kw)
    assert_close(unbatched, _conv1d_ref(x[:1], w, b, **kw)[0], rtol=1e-12, atol=1e-12)


# ---- conv_transpose2d ---------------------------------------------------------------------

CONVT = [
    ("plain", (2, 3, 3, 4), (3, 2, 3, 2), {}),
    ("stride_padding", (1, 2, 3, 3), (2, 3, 3, 3), {"stride": 2, "padding": 1}),
    ("output_padding", (1, 2, 3, 2), (2, 2, 3, 3), {"stride": (2, 3), "padding": (1, 0),
                                                    "output_padding": (1, 2)}),
    # output_padding > padding: the last output row receives nothing but the bias
    ("output_padding_beyond", (1, 1, 2, 2), (1, 2, 2, 2), {"stride": 3, "output_padding": 2}),
    ("dilation_output_padding", (1, 2, 3, 3), (2, 1, 2, 2), {"dilation": 3, "output_padding": 2,
                                                             "padding": 1}),
    ("groups", (2, 4, 3, 3), (4, 3, 2, 2), {"groups": 2, "stride": 2}),
]


@pytest.mark.parametrize("shape_x,shape_w,kw", [pytest.param(*r[1:], id=r[0]) for r in CONVT])
def test_conv_transpose2d_matches_loops_and_gradcheck(shape_x, shape_w, kw, rng):
    x, w = rng.standard_normal(shape_x), rng.standard_normal(shape_w)
    groups = kw.get("groups", 1)
    b = rng.standard_normal(shape_w[1] * groups)
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    expected = conv_transpose2d_ref(x, w, b, pair(kw.get("stride", 1)), pair(kw.get("padding", 0)),
                                    pair(kw.get("output_padding", 0)), groups,
                                    pair(kw.get("dilation", 1)))
    out = F.conv_transpose2d(t64(x), t64(w), t64(b), **kw)
    assert_close(out, expected, rtol=1e-12, atol=1e-12)
    xs, ws, bs = t64(x[:1], True), t64(w, True), t64(b, True)
    assert gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), (xs, ws, bs))


def test_conv_transpose2d_is_the_input_gradient_of_conv2d(rng):
    x = t64(rng.standard_normal((2, 3, 7, 6)), True)
    w = rng.standard_normal((4, 3, 3, 2))
    kw = dict(stride=2, padding=1, dilation=(1, 2))
    out = F.conv2d(x, t64(w), **kw)
    g = rng.standard_normal(out.shape)
    out.backward(t64(g))
    # output_padding recovers the rows the strided forward dropped
    again = F.conv_transpose2d(t64(g), t64(w), output_padding=(0, 1), **kw)
    assert again.shape == x.shape
    assert_close(again, x.grad, rtol=1e-12, atol=1e-12)


# ---- F.unfold / F.fold ---------------------------------------------------------------------

def test_fold_of_unfold_counts_window_memberships(rng):
    x = rng.standard_normal((2, 3, 5, 6))
    kw = dict(kernel_size=(2, 3), dilation=(2, 1), padding=1, stride=(1, 2))
    cols = F.unfold(t64(x), **kw)
    back = F.fold(cols, (5, 6), **kw)
    counts = F.fold(F.unfold(gj.ones(1, 1, 5, 6, dtype=gj.float64), **kw), (5, 6), **kw)
    assert_close(back, x * counts.numpy(), rtol=1e-12, atol=1e-12)
    assert F.unfold(t64(x[0]), **kw).shape == cols.shape[1:]        # unbatched
    assert F.fold(cols[0], (5, 6), **kw).shape == (3, 5, 6)


def test_conv2d_is_unfold_then_matmul(rng):
    """PyTorch's documented identity: conv2d == (w.view(oc, -1) @ unfold(x)).view(...)."""
    x, w = t64(rng.standard_normal((2, 3, 6, 5))), t64(rng.standard_normal((4, 3, 3, 3)))
    via_unfold = (w.reshape(4, -1) @ F.unfold(x, 3, padding=1, stride=2)).reshape(2, 4, 3, 3)
    assert_close(F.conv2d(x, w, padding=1, stride=2), via_unfold, rtol=1e-12, atol=1e-12)


# ---- errors ----------------------------------------------------------------------------------

def _raises(exc, call, *fragments):
    return raises_naming(exc, call, *fragments, file=THIS_FILE)


def test_conv_errors_name_the_op_the_shapes_and_the_line():
    x = gj.randn(2, 4, 8, 8)
    w = gj.randn(6, 3, 5, 5)
    _raises(gj.ShapeError, lambda: F.conv2d(x, w), "conv2d", "(6, 3, 5, 5)", "(2, 4, 8, 8)",
            "3 channels", "4 channels")
    _raises(gj.ShapeError, lambda: F.conv2d(gj.randn(1, 3, 4, 4), w), "conv2d", "(1, 3, 4, 4)",
            "Kernel size can't be greater")
    _raises(gj.ShapeError, lambda: F.conv2d(gj.randn(3, 8), w), "conv2d", "(3, 8)")
    _raises(gj.ShapeError, lambda: F.conv2d(gj.randn(1, 3, 8, 8), w, gj.randn(5)), "conv2d",
            "bias of shape (5,)", "(6,)")
    _raises(gj.ShapeError, lambda: F.conv2d(gj.randn(1, 6, 8, 8), w, groups=4), "conv2d",
            "divisible by groups")
    _raises(gj.DTypeError, lambda: F.conv2d(gj.randn(1, 3, 8, 8, dtype=gj.float64), w),
            "conv2d", "float64", "float32")
    _raises(ValueError, lambda: F.conv2d(gj.randn(1, 3, 8, 8), w, padding="same", stride=2),
            "conv2d", "strided")
    _raises(ValueError, lambda: F.conv2d(gj.randn(1, 3, 8, 8), w, padding="full"), "conv2d",
            "'full'")
    _raises(ValueError, lambda: F.conv2d(gj.randn(1, 3, 8, 8), w, stride=0), "conv2d", "stride")
    _raises(gj.ShapeError, lambda: F.conv1d(gj.randn(1, 3, 8), w), "conv1d", "(6, 3, 5, 5)")
    _raises(ValueError, lambda: F.conv_transpose2d(gj.randn(1, 6, 3, 3), w, output_padding=1),
            "conv_transpose2d", "output padding must be smaller")
    _raises(gj.ShapeError, lambda: F.conv_transpose2d(gj.randn(1, 4, 3, 3), w),
            "conv_transpose2d", "(1, 4, 3, 3)", "6 channels")
    _raises(gj.ShapeError, lambda: F.fold(gj.randn(1, 12, 10), (4, 5), (2, 3)), "fold",
            "3 * 3 = 9", "(1, 12, 10)")
    _raises(gj.ShapeError, lambda: F.fold(gj.randn(1, 10, 9), (4, 5), (2, 3)), "fold",
            "divisible")
    _raises(gj.ShapeError, lambda: F.unfold(gj.randn(1, 2, 3, 3), 4), "unfold", "(1, 2, 3, 3)")


# ---- modules -------------------------------------------------------------------------------

def test_conv2d_module_shapes_init_and_forward(rng):
    gj.manual_seed(0)
    m = nn.Conv2d(3, 6, 5)
    assert m.weight.shape == (6, 3, 5, 5) and m.bias.shape == (6,)
    bound = 1 / math.sqrt(3 * 5 * 5)  # kaiming_uniform(a=sqrt(5)) and the bias: 1/sqrt(fan_in)
    assert np.abs(m.weight.detach().numpy()).max() <= bound
    assert np.abs(m.bias.detach().numpy()).max() <= bound
    assert np.abs(m.weight.detach().numpy()).max() > 0.8 * bound
    assert repr(m) == "Conv2d(3, 6, kernel_size=(5, 5), stride=(1, 1))"
    x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32)
    out = m(gj.tensor(x))
    expected = conv2d_ref(x, m.weight.detach().numpy(), m.bias.detach().numpy())
    assert_close(out, expected.astype(np.float32), rtol=1e-5, atol=1e-5)
    assert list(m.state_dict()) == ["weight", "bias"]
    g = nn.Conv2d(4, 8, (3, 2), stride=2, padding=1, dilation=(2, 1), groups=2, bias=False)
    assert g.weight.shape == (8, 2, 3, 2) and g.bias is None
    assert repr(g) == ("Conv2d(4, 8, kernel_size=(3, 2), stride=(2, 2), padding=(1, 1), "
                       "dilation=(2, 1), groups=2, bias=False)")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_modes(mode, rng):
    m = nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode).double()
    x = rng.standard_normal((1, 2, 4, 5))
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)), mode=np_mode)
    expected = conv2d_ref(padded, m.weight.detach().numpy(), m.bias.detach().numpy())
    assert_close(m(t64(x)), expected, rtol=1e-12, atol=1e-12)
    same = nn.Conv1d(2, 2, 4, padding="same", padding_mode=mode).double()
    x1 = rng.standard_normal((1, 2, 6))
    padded1 = np.pad(x1, ((0, 0), (0, 0), (1, 2)), mode=np_mode)
    expected1 = _conv1d_ref(padded1, same.weight.detach().numpy(), same.bias.detach().numpy())
    assert_close(same(t64(x1)), expected1, rtol=1e-12, atol=1e-12)


def test_conv1d_and_transpose_modules(rng):
    m = nn.Conv1d(4, 6, 3, stride=2, groups=2).double()
    assert m.weight.shape == (6, 2, 3)
    x = rng.standard_normal((2, 4, 9))
    expected = _conv1d_ref(x, m.weight.detach().numpy(), m.bias.detach().numpy(), stride=2,
                           groups=2)
    assert_close(m(t64(x)), expected, rtol=1e-12, atol=1e-12)
    t = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    assert t.weight.shape == (4, 3, 3, 3) and t.bias.shape == (6,)
    bound = 1 / math.sqrt(3 * 3 * 3)  # PyTorch's fan_in of a transposed weight: dims 1 and up
    assert np.abs(t.bias.detach().numpy()).max() <= bound
    xt = t64(rng.standard_normal((1, 4, 3, 3)))
    assert t(xt).shape == (1, 6, 5, 5)
    assert t(xt, output_size=(6, 6)).shape == (1, 6, 6, 6)
    assert t(xt, output_size=(1, 6, 6, 5)).shape == (1, 6, 6, 5)
    _raises(ValueError, lambda: t(xt, output_size=(8, 8)), "ConvTranspose2d", "(5..6)")
    _raises(ValueError, lambda: nn.Conv2d(3, 6, 3, groups=2), "Conv2d", "divisible by groups")
    _raises(ValueError, lambda: nn.Conv2d(2, 2, 3, stride=2, padding="same"), "Conv2d",
            "strided")
    _raises(ValueError, lambda: nn.Conv2d(2, 2, 3, padding_mode="mirror"), "Conv2d",
            "padding_mode")


def test_conv_state_dict_round_trip(rng):
    a, b = nn.Conv2d(2, 3, 3), nn.Conv2d(2, 3, 3)
    b.load_state_dict(a.state_dict())
    x = gj.tensor(rng.standard_normal((1, 2, 5, 5)).astype(np.float32))
    assert_close(b(x), a(x), rtol=0, atol=0)
    with pytest.raises(gj.ShapeError, match="size mismatch for weight"):
        nn.Conv2d(2, 4, 3).load_state_dict(a.state_dict())


def test_unfold_fold_modules(rng):
    x = t64(rng.standard_normal((1, 2, 4, 4)))
    cols = nn.Unfold(2, stride=2)(x)
    assert cols.shape == (1, 8, 4)
    assert_close(nn.Fold((4, 4), 2, stride=2)(cols), x, rtol=0, atol=0)


def test_tutorial_cifar_net_trains(rng):
    """The CIFAR-10 tutorial's network, eagerly: one SGD step lowers the loss on its batch."""
    gj.manual_seed(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = gj.flatten(x, 1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    net = Net()
    opt = gj.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = gj.tensor(rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
    y = gj.tensor(rng.integers(0, 10, size=4))
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in net.parameters())


# ---- the compiler's passes on convolution graphs ----------------------------------------------

def _graph_of(fn, arrays, wrt):
    """The graph of ``fn(**arrays)`` with grad requests for ``wrt``, as a trace makes it."""
    g = Graph("conv")
    values = {name: g.add_input(TensorType(a.shape, dtypes.from_numpy(a.dtype)), name,
                                "param" if name in wrt else "arg") for name, a in arrays.items()}
    with registry.interpreter(GraphBuilder(g)):
        y = fn(**values)
        grads = [registry.bind(registry.get("grad"), y, values[name]) for name in wrt]
    g.outputs = [y] + grads
    return g


def test_pass_pipeline_keeps_convolution_numbers(rng):
    """unfold/fold go through every pass (autodiff, fusion, GEMM forming...) and the optimised
    graph, run by the reference interpreter, gives eager mode's values and gradients. (The
    backends cannot compile these graphs yet: no emitters for unfold/fold.)"""
    from passes.pipeline import run_pipeline

    def net(x, w1, b1, w2):
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 2, ceil_mode=True)
        h = F.conv_transpose2d(h, w2, stride=2)
        return api.sum(F.avg_pool2d(h, 2))

    arrays = {"x": rng.standard_normal((2, 2, 5, 5)), "w1": rng.standard_normal((3, 2, 3, 3)),
              "b1": rng.standard_normal(3), "w2": rng.standard_normal((3, 2, 2, 2))}
    wrt = ("w1", "b1", "w2")
    graph, snapshots = run_pipeline(_graph_of(net, arrays, wrt), verify=True)
    stages = dict(snapshots)
    assert "unfold(" in stages["fuse"] and "fold(" in stages["autodiff"]
    text = print_graph(graph)
    assert print_graph(parse_graph(text)) == text  # attributes (-inf padding) round-trip
    outs, _ = run_graph(graph, list(arrays.values()))
    tensors = {k: t64(a, requires_grad=k in wrt) for k, a in arrays.items()}
    y = net(**tensors)
    y.backward()
    assert_close(outs[0], y.detach().numpy(), rtol=1e-10, atol=1e-10)
    for got, name in zip(outs[1:], wrt):
        assert_close(got, tensors[name].grad.numpy(), rtol=1e-10, atol=1e-10)


def test_compiled_conv_step_matches_eager(rng):
    # unfold and fold compiled (backend/cpu/window.py): the forward, the gradients of the
    # weights, the bias and the input (fold), against eager mode.
    conv = nn.Conv2d(2, 3, 3, padding=1, stride=(1, 2)).double()
    x = t64(rng.standard_normal((2, 2, 6, 7)))

    def step(x):
        loss = F.max_pool2d(F.relu(conv(x)), 2, ceil_mode=True).sum()
        loss.backward()
        return loss

    want = step(x.requires_grad_())
    grads = [conv.weight.grad.numpy().copy(), conv.bias.grad.numpy().copy(), x.grad.numpy().copy()]
    for t in (conv.weight, conv.bias, x):
        t.grad = None
    got = gj.compile(step)(x)
    assert_close(got, want, rtol=1e-12, atol=1e-12)
    for t, g in zip((conv.weight, conv.bias, x), grads):
        assert_close(t.grad, g, rtol=1e-10, atol=1e-12)


def test_unfold_returns_windows_of_its_own_even_where_they_are_the_input_s_layout():
    """One 2x2 window over a 2x2 image is the image's own memory order: eager unfold used to
    return a view of its input, so an in-place change of the input (an optimizer step)
    changed the windows too, unlike PyTorch's (found by the fuzzer, seed 45)."""
    p = gj.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    windows = F.unfold(p, 2)
    p.mul_(10.0)
    np.testing.assert_array_equal(windows.numpy().ravel(), [1.0, 2.0, 3.0, 4.0])
