"""W7: the CIFAR-10 tutorial's convolutional network, one training step.

conv(3->6, 5x5) relu maxpool(2) conv(6->16, 5x5) relu maxpool(2) flatten
linear(400->120) relu linear(120->84) relu linear(84->10), cross-entropy, SGD momentum 0.9
(lr 1e-2), on a batch of 64 32x32 RGB images: PyTorch's "Training a classifier" tutorial
network. graphjit and PyTorch run the same module code; the NumPy version is the same step
by hand (im2col convolutions as GEMMs, the pooling gradient to the first maximum of each
window, as PyTorch's).
"""
from __future__ import annotations

import numpy as np

from .base import (GRAPHJIT_COMPILED, GRAPHJIT_EAGER, NUMPY, TORCH_COMPILE, TORCH_EAGER, Impl,
                   NumpySGD, Workload, linear_init, module_api)

B, LR, MOMENTUM = 64, 1e-2, 0.9
CONVS = [("c1", 3, 6), ("c2", 6, 16)]  # (name, in channels, out channels), 5x5 kernels
LINEARS = [("f1", 400, 120), ("f2", 120, 84), ("f3", 84, 10)]
K = 5
NAMES = [f"{p}{n}" for n, *_ in CONVS + LINEARS for p in ("W_", "b_")]


def init():
    rng = np.random.default_rng(7)
    out = {}
    for name, cin, cout in CONVS:
        # PyTorch's Conv2d initialisation: uniform in +-1/sqrt(fan_in), as Linear's.
        w, b = linear_init(rng, cin * K * K, cout)
        out[f"W_{name}"], out[f"b_{name}"] = w.reshape(cout, cin, K, K), b
    for name, i, o in LINEARS:
        out[f"W_{name}"], out[f"b_{name}"] = linear_init(rng, i, o)
    out["x"] = rng.standard_normal((B, 3, 32, 32), dtype=np.float32)
    out["y"] = rng.integers(0, 10, B).astype(np.int64)
    return out


def _values(loss, params, grads):
    vals = {"loss": np.asarray(loss, dtype=np.float32)}
    for n, p, g in zip(NAMES, params, grads):
        vals[n], vals[n + ".grad"] = p, g
    return vals


def _module_step(init, lib, compiled):
    nn, F, optim, to_np, flatten, no_grad, tensor, from_numpy, compile_fn = module_api(lib)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.pool, self.c2 = nn.Conv2d(3, 6, K), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, K)
            self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.c1(x)))
            x = self.pool(F.relu(self.c2(x)))
            x = flatten(x, 1)
            return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))

    net = Net()
    params = []
    with no_grad():
        for name, *_ in CONVS + LINEARS:
            layer = getattr(net, name)
            layer.weight.copy_(from_numpy(np.array(init[f"W_{name}"], copy=True)))
            layer.bias.copy_(from_numpy(np.array(init[f"b_{name}"], copy=True)))
            params += [layer.weight, layer.bias]
    opt = optim.SGD(params, lr=LR, momentum=MOMENTUM)

    def step_fn(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss

    fn = compile_fn(step_fn) if compiled else step_fn
    x, y = tensor(init["x"]), tensor(init["y"])
    out = {}

    def step():
        out["loss"] = fn(x, y)

    return step, lambda: _values(out["loss"].item(), [to_np(p) for p in params],
                                 [to_np(p.grad) for p in params])


# ---------------------------------------------------------------- NumPy, by hand

def _conv_forward(x, w, b):
    """Valid 5x5 convolution, stride 1, as one GEMM over im2col columns; returns the output
    [B, O, Ho, Wo] and the columns [B*Ho*Wo, C*K*K] the backward needs."""
    n, c = x.shape[:2]
    o = w.shape[0]
    win = np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(2, 3))  # [B,C,Ho,Wo,K,K]
    ho, wo = win.shape[2:4]
    cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, c * K * K)
    out = cols @ w.reshape(o, -1).T + b
    return np.ascontiguousarray(out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)), cols


def _conv_backward(dout, cols, w, x_shape, gw, gb):
    n, c, h, wd = x_shape
    o, ho, wo = dout.shape[1:]
    d2 = np.ascontiguousarray(dout.transpose(0, 2, 3, 1)).reshape(-1, o)
    np.matmul(d2.T, cols, out=gw.reshape(o, -1))
    np.sum(d2, axis=0, out=gb)
    dcols = (d2 @ w.reshape(o, -1)).reshape(n, ho, wo, c, K, K)
    dx = np.zeros(x_shape, np.float32)
    for i in range(K):
        for j in range(K):
            dx[:, :, i:i + ho, j:j + wo] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx


def _pool_forward(x):
    """2x2 max pooling, stride 2; the index of each window's first maximum."""
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, h // 2, w // 2, 4)
    first = win.argmax(axis=-1)
    return np.take_along_axis(win, first[..., None], -1)[..., 0], first


def _pool_backward(dout, first, x_shape):
    n, c, h, w = x_shape
    win = np.zeros(dout.shape + (4,), np.float32)
    np.put_along_axis(win, first[..., None], dout[..., None], -1)
    return win.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x_shape)


def _numpy_step(init):
    params = [init[n].copy() for n in NAMES]
    grads = [np.empty_like(p) for p in params]
    (w1, b1, w2, b2, wf1, bf1, wf2, bf2, wf3, bf3) = params
    (gw1, gb1, gw2, gb2, gwf1, gbf1, gwf2, gbf2, gwf3, gbf3) = grads
    x, y = init["x"].copy(), init["y"].copy()
    rows = np.arange(B)
    opt = NumpySGD(params, LR, MOMENTUM)
    out = {}

    def step():
        z1, cols1 = _conv_forward(x, w1, b1)
        a1 = np.maximum(z1, 0)
        p1, first1 = _pool_forward(a1)
        z2, cols2 = _conv_forward(p1, w2, b2)
        a2 = np.maximum(z2, 0)
        p2, first2 = _pool_forward(a2)
        h0 = p2.reshape(B, -1)
        z3 = h0 @ wf1.T + bf1
        h1 = np.maximum(z3, 0)
        z4 = h1 @ wf2.T + bf2
        h2 = np.maximum(z4, 0)
        logits = h2 @ wf3.T + bf3
        m = logits.max(axis=1, keepdims=True)
        e = np.exp(logits - m)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - logits[rows, y])
        d = e / s
        d[rows, y] -= 1
        d *= np.float32(1.0 / B)
        np.matmul(d.T, h2, out=gwf3)
        np.sum(d, axis=0, out=gbf3)
        d = (d @ wf3) * (z4 > 0)
        np.matmul(d.T, h1, out=gwf2)
        np.sum(d, axis=0, out=gbf2)
        d = (d @ wf2) * (z3 > 0)
        np.matmul(d.T, h0, out=gwf1)
        np.sum(d, axis=0, out=gbf1)
        d = (d @ wf1).reshape(p2.shape)
        d = _pool_backward(d, first2, a2.shape) * (z2 > 0)
        d = _conv_backward(d, cols2, w2, p1.shape, gw2, gb2)
        d = _pool_backward(d, first1, a1.shape) * (z1 > 0)
        _conv_backward(d, cols1, w1, x.shape, gw1, gb1)
        opt.step(grads)
        out["loss"] = loss

    return step, lambda: _values(out["loss"], [p.copy() for p in params],
                                 [g.copy() for g in grads])


def _flops():
    """GEMM FLOPs of a step: each conv and linear forward, its weight and input gradients
    (the first conv's input gradient is not needed, but the NumPy version computes it)."""
    convs = [(6, 3 * K * K, 28 * 28), (16, 6 * K * K, 10 * 10)]
    fwd = sum(2 * B * o * ck * hw for o, ck, hw in convs) + sum(2 * B * i * o for _, i, o in LINEARS)
    return 3 * fwd


WORKLOAD = Workload(
    key="W7", title=f"CIFAR-10 tutorial CNN, batch {B}, SGD momentum step", bound="gemm",
    init=init, flops=_flops(),
    limit_note="GEMM FLOPs of the convolutions (as im2col products) and linear layers, "
               "forward and both gradients",
    impls=[
        Impl(GRAPHJIT_COMPILED, lambda i: _module_step(i, "graphjit", True), graphjit=True),
        Impl(GRAPHJIT_EAGER, lambda i: _module_step(i, "graphjit", False), graphjit=True),
        Impl(NUMPY, _numpy_step),
        Impl(TORCH_EAGER, lambda i: _module_step(i, "torch", False)),
        Impl(TORCH_COMPILE, lambda i: _module_step(i, "torch", True)),
    ])
