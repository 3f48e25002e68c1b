"""W8: a ResNet-18-shaped network, width 16, one training step on 32x32 images.

CIFAR-style ResNet-18 topology (He et al.'s BasicBlock network as CIFAR code writes it: a
3x3 stem and no max pool): conv3x3(3->16) BN ReLU, then four stages of two BasicBlocks
(widths 16, 32, 64, 128; the first block of stages 2-4 has stride 2 and a conv1x1(stride 2)
+ BN shortcut; a block is conv3x3 BN ReLU conv3x3 BN, + shortcut, ReLU), global average
pool, linear(128->10); convolutions without bias. Cross-entropy, SGD momentum 0.9, lr 1e-2,
weight decay 5e-4 (on every parameter, as PyTorch's SGD applies it), on a batch of 16 RGB
images. Width 16 (a quarter of ResNet-18's 64) and batch 16 keep a step affordable on a
2-core machine; the graph is ResNet-18's: 20 convolutions and 20 batch norms in training
mode (batch statistics; running averages updated with momentum 0.1, compared by
``--check``, which runs in float64: see ``check_dtype`` below).

graphjit and PyTorch run the same module code (parameter names as torchvision's
``resnet18``); the NumPy version is the same step by hand, channels-last: im2col
convolutions with padding and stride as GEMMs, batch norm forward and backward, residual
adds, global average pool, cross-entropy.
"""
from __future__ import annotations

import numpy as np

from .base import (GRAPHJIT_COMPILED, GRAPHJIT_EAGER, NUMPY, TORCH_COMPILE, TORCH_EAGER, Impl,
                   NumpySGD, Workload, linear_init, module_api)

B, HW, WIDTH, CLASSES = 16, 32, 16, 10
LR, MOMENTUM, WEIGHT_DECAY = 1e-2, 0.9, 5e-4
BN_MOMENTUM, BN_EPS = 0.1, 1e-5
STAGES = [WIDTH, 2 * WIDTH, 4 * WIDTH, 8 * WIDTH]


def _convs():
    """Every convolution as (prefix, in channels, out channels, kernel, stride, output size);
    the BN after a convolution ``P.convN`` is ``P.bnN``, after ``P.downsample.0`` it is
    ``P.downsample.1`` (torchvision's names)."""
    out = [("", 3, WIDTH, 3, 1, HW)]
    cin, size = WIDTH, HW
    for s, cout in enumerate(STAGES):
        for b in range(2):
            stride = 2 if s > 0 and b == 0 else 1
            size //= stride
            p = f"layer{s + 1}.{b}."
            out += [(p, cin, cout, 3, stride, size), (p, cout, cout, 3, 1, size)]
            if stride != 1:
                out.append((p + "downsample.", cin, cout, 1, stride, size))
            cin = cout
    return out


def _names():
    """Parameter names in the order of the module's ``named_parameters()``, and BN names."""
    params, bns = ["conv1.weight", "bn1.weight", "bn1.bias"], ["bn1"]
    for s in range(4):
        for b in range(2):
            p = f"layer{s + 1}.{b}."
            for k in (1, 2):
                params += [f"{p}conv{k}.weight", f"{p}bn{k}.weight", f"{p}bn{k}.bias"]
                bns.append(f"{p}bn{k}")
            if s > 0 and b == 0:
                params += [f"{p}downsample.0.weight", f"{p}downsample.1.weight",
                           f"{p}downsample.1.bias"]
                bns.append(f"{p}downsample.1")
    return params + ["fc.weight", "fc.bias"], bns


NAMES, BNS = _names()
STATS = [f"{bn}.{s}" for bn in BNS for s in ("running_mean", "running_var")]


def init():
    rng = np.random.default_rng(8)
    out = {}
    conv_names = [n for n in NAMES if n.endswith("weight") and ("conv" in n or "downsample.0" in n)]
    for name, (_, cin, cout, k, _, _) in zip(conv_names, _convs()):
        # torchvision's ResNet initialisation: Kaiming normal, fan_out, for ReLU.
        std = np.sqrt(2.0 / (cout * k * k))
        out[name] = (rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32)
    for bn in BNS:
        c = out[_conv_of(bn)].shape[0]
        out[f"{bn}.weight"], out[f"{bn}.bias"] = np.ones(c, np.float32), np.zeros(c, np.float32)
    out["fc.weight"], out["fc.bias"] = linear_init(rng, STAGES[-1], CLASSES)
    out["x"] = rng.standard_normal((B, 3, HW, HW), dtype=np.float32)
    out["y"] = rng.integers(0, CLASSES, B).astype(np.int64)
    return out


def _conv_of(bn):
    """The convolution a batch norm follows: ``P.bnK`` -> ``P.convK.weight``."""
    if bn.endswith("downsample.1"):
        return bn[:-1] + "0.weight"
    head, _, k = bn.rpartition("bn")
    return f"{head}conv{k}.weight"


def _values(loss, params, grads, stats):
    vals = {"loss": np.asarray(loss, dtype=np.float64)}
    for n, p, g in zip(NAMES, params, grads):
        vals[n], vals[n + ".grad"] = p, g
    vals.update(zip(STATS, stats))
    return vals


def _module_step(init, lib, compiled):
    nn, F, optim, to_np, flatten, no_grad, tensor, from_numpy, compile_fn = module_api(lib)

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x if self.downsample is None else self.downsample(x)
            return F.relu(out + shortcut)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, WIDTH, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(WIDTH)
            cin = WIDTH
            for s, cout in enumerate(STAGES):
                stride = 1 if s == 0 else 2
                setattr(self, f"layer{s + 1}", nn.Sequential(BasicBlock(cin, cout, stride),
                                                             BasicBlock(cout, cout, 1)))
                cin = cout
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, CLASSES)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(flatten(self.avgpool(x), 1))

    net = ResNet18()
    if init["x"].dtype == np.float64:  # --check (see WORKLOAD)
        net.double()
    named = dict(net.named_parameters())
    assert list(named) == NAMES, list(named)
    buffers = dict(net.named_buffers())
    params = [named[n] for n in NAMES]
    stats = [buffers[n] for n in STATS]
    with no_grad():
        for n, p in zip(NAMES, params):
            p.copy_(from_numpy(np.array(init[n], copy=True)))
    opt = optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

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
                                 [to_np(p.grad) for p in params], [to_np(s) for s in stats])


# ---------------------------------------------------------------- NumPy, by hand (NHWC)

def _im2col(x, k, stride, pad):
    """Columns [N*Ho*Wo, K*K*C] of channels-last x [N, H, W, C], in (kh, kw, c) order."""
    n, h, wd, c = x.shape
    if k == 1 and pad == 0:
        return np.ascontiguousarray(x[:, ::stride, ::stride, :]).reshape(-1, c)
    xp = np.zeros((n, h + 2 * pad, wd + 2 * pad, c), x.dtype)
    xp[:, pad:pad + h, pad:pad + wd, :] = x
    # one copy of the strided windows (9 slice copies of 16-channel runs were 5x slower)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))
    win = win[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)  # [N, Ho, Wo, K, K, C]
    return np.ascontiguousarray(win).reshape(-1, k * k * c)


class _Conv:
    """A convolution without bias on channels-last [N, H, W, C] activations, as one GEMM of
    im2col columns [N*Ho*Wo, K*K*C] (in (kh, kw, c) order) by the weight [K*K*C, O]. ``w`` is
    the parameter in PyTorch's layout [O, C, K, K], updated in place by the optimizer.

    The input gradient of a stride-1 convolution is itself a stride-1 convolution of the
    output gradient (weights flipped, channels swapped): the same GEMM shape as the forward.
    The columns-then-scatter form ([N*Ho*Wo, O] @ [O, K*K*C], then nine strided adds), used
    for stride 2, was 4x slower there (a GEMM with K = O = 16 writing 9x the input)."""

    def __init__(self, w, grad, stride):
        self.w, self.grad, self.stride = w, grad, stride
        self.o, self.c, self.k = w.shape[0], w.shape[1], w.shape[2]
        self.pad = self.k // 2

    def forward(self, x):
        n, h, wd, c = x.shape
        k, s, p = self.k, self.stride, self.pad
        ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        self.x_shape, self.out_hw = x.shape, (ho, wo)
        self.wm = np.ascontiguousarray(self.w.transpose(2, 3, 1, 0)).reshape(k * k * c, self.o)
        self.cols = _im2col(x, k, s, p)
        return (self.cols @ self.wm).reshape(n, ho, wo, self.o)

    def backward(self, dout, need_dx=True):
        n, h, wd, c = self.x_shape
        k, s, p = self.k, self.stride, self.pad
        ho, wo = self.out_hw
        d2 = dout.reshape(-1, self.o)
        gw = self.cols.T @ d2  # [K*K*C, O]
        self.grad[...] = gw.reshape(k, k, c, self.o).transpose(3, 2, 0, 1)
        if not need_dx:
            return None
        if s == 1:
            # dx[n, y, x, c] = sum over (i, j, o) of dout_padded[n, y + i, x + j, o] *
            # w[o, c, k-1-i, k-1-j]
            wflip = self.w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(k * k * self.o, c)
            return (_im2col(dout, k, 1, k - 1 - p) @ wflip).reshape(self.x_shape)
        dcols = (d2 @ self.wm.T).reshape(n, ho, wo, k, k, c)
        if k == 1:
            dx = np.zeros(self.x_shape, dout.dtype)
            dx[:, ::s, ::s, :] = dcols[:, :, :, 0, 0, :]
            return dx
        dxp = np.zeros((n, h + 2 * p, wd + 2 * p, c), dout.dtype)
        for i in range(k):
            for j in range(k):
                dxp[:, i:i + s * ho:s, j:j + s * wo:s, :] += dcols[:, :, :, i, j, :]
        return dxp[:, p:p + h, p:p + wd, :]


class _BatchNorm:
    """Training-mode batch norm over N, H, W of [N, H, W, C]: normalise by the batch mean and
    biased variance, update the running mean and the running (unbiased) variance in place,
    in PyTorch's order (momentum * batch + (1 - momentum) * running)."""

    def __init__(self, gamma, beta, ggamma, gbeta, running_mean, running_var):
        self.gamma, self.beta, self.ggamma, self.gbeta = gamma, beta, ggamma, gbeta
        self.running_mean, self.running_var = running_mean, running_var

    def forward(self, z):
        shape = z.shape
        z2 = z.reshape(-1, shape[-1])
        m = z2.shape[0]
        mean = z2.mean(axis=0)
        centred = z2 - mean
        var = (centred * centred).mean(axis=0)
        self.invstd = 1.0 / np.sqrt(var + BN_EPS)
        self.xhat = centred * self.invstd
        self.running_mean[...] = mean * BN_MOMENTUM + self.running_mean * (1.0 - BN_MOMENTUM)
        self.running_var[...] = (var * (m / (m - 1)) * BN_MOMENTUM
                                 + self.running_var * (1.0 - BN_MOMENTUM))
        return (self.xhat * self.gamma + self.beta).reshape(shape)

    def backward(self, dy):
        shape = dy.shape
        dy2 = dy.reshape(-1, shape[-1])
        m = dy2.shape[0]
        np.sum(dy2, axis=0, out=self.gbeta)
        np.sum(dy2 * self.xhat, axis=0, out=self.ggamma)
        scale = self.gamma * self.invstd * (1.0 / m)
        dx = (dy2 * float(m) - self.gbeta - self.xhat * self.ggamma) * scale
        return dx.reshape(shape)


class _Block:
    """BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, convs, bns, down):
        (self.conv1, self.conv2), (self.bn1, self.bn2) = convs, bns
        self.down = down  # (conv, bn) of the shortcut, or None

    def forward(self, x):
        self.a1 = np.maximum(self.bn1.forward(self.conv1.forward(x)), 0)
        out = self.bn2.forward(self.conv2.forward(self.a1))
        if self.down is not None:
            out += self.down[1].forward(self.down[0].forward(x))
        else:
            out += x
        self.y = np.maximum(out, 0)
        return self.y

    def backward(self, dy):
        d = dy * (self.y > 0)
        dh = self.conv2.backward(self.bn2.backward(d)) * (self.a1 > 0)
        dx = self.conv1.backward(self.bn1.backward(dh))
        if self.down is not None:
            dx += self.down[0].backward(self.down[1].backward(d))
        else:
            dx += d
        return dx


def _numpy_step(init):
    pv = {n: init[n].copy() for n in NAMES}
    gv = {n: np.empty_like(p) for n, p in pv.items()}
    sv = {}
    for n in STATS:
        like = init[n.rpartition(".")[0] + ".weight"]
        sv[n] = (np.zeros_like if n.endswith("mean") else np.ones_like)(like)

    def conv(name, stride):
        return _Conv(pv[name], gv[name], stride)

    def bn(name):
        return _BatchNorm(pv[name + ".weight"], pv[name + ".bias"], gv[name + ".weight"],
                          gv[name + ".bias"], sv[name + ".running_mean"],
                          sv[name + ".running_var"])

    stem_conv, stem_bn = conv("conv1.weight", 1), bn("bn1")
    blocks = []
    for s in range(4):
        for b in range(2):
            p = f"layer{s + 1}.{b}."
            stride = 2 if s > 0 and b == 0 else 1
            down = None
            if stride != 1:
                down = (conv(p + "downsample.0.weight", stride), bn(p + "downsample.1"))
            blocks.append(_Block((conv(p + "conv1.weight", stride), conv(p + "conv2.weight", 1)),
                                 (bn(p + "bn1"), bn(p + "bn2")), down))
    fcw, fcb, gfcw, gfcb = pv["fc.weight"], pv["fc.bias"], gv["fc.weight"], gv["fc.bias"]
    params, grads = [pv[n] for n in NAMES], [gv[n] for n in NAMES]
    opt = NumpySGD(params, LR, MOMENTUM, WEIGHT_DECAY)
    x, y = init["x"].copy(), init["y"].copy()
    rows = np.arange(B)
    out = {}

    def step():
        a0 = np.maximum(stem_bn.forward(stem_conv.forward(x.transpose(0, 2, 3, 1))), 0)
        h = a0
        for blk in blocks:
            h = blk.forward(h)
        pooled = h.mean(axis=(1, 2))  # [B, 8w]
        logits = pooled @ fcw.T + fcb
        m = logits.max(axis=1, keepdims=True)
        e = np.exp(logits - m)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - logits[rows, y])
        d = e / s
        d[rows, y] -= 1
        d *= 1.0 / B
        np.matmul(d.T, pooled, out=gfcw)
        np.sum(d, axis=0, out=gfcb)
        dpooled = d @ fcw
        hh, ww = h.shape[1:3]
        dh = np.broadcast_to((dpooled * (1.0 / (hh * ww)))[:, None, None, :], h.shape)
        for blk in reversed(blocks):
            dh = blk.backward(dh)
        stem_conv.backward(stem_bn.backward(dh * (a0 > 0)), need_dx=False)
        opt.step(grads)
        out["loss"] = loss

    return step, lambda: _values(out["loss"], [p.copy() for p in params],
                                 [g.copy() for g in grads], [sv[n].copy() for n in STATS])


def _flops():
    """GEMM FLOPs of a step: each convolution (as its im2col product) and the linear layer,
    forward, weight gradient and input gradient (but the first convolution's input
    gradient, which nothing needs)."""
    convs = [2 * B * size * size * cout * cin * k * k for _, cin, cout, k, _, size in _convs()]
    fc = 2 * B * STAGES[-1] * CLASSES
    return 3 * sum(convs) - convs[0] + 3 * fc


WORKLOAD = Workload(
    key="W8", title=f"ResNet-18-shaped, width {WIDTH}, batch {B} at {HW}x{HW}, SGD momentum step",
    bound="gemm", init=init, flops=_flops(),
    # --check in float64: in float32 a pre-activation within rounding noise of 0 (2e-6 against
    # values of order 1) lands on the other side of a ReLU in one implementation (of the 2.2M
    # elements a step passes through ReLUs, one at layer3.1's output in the first step, graphjit
    # eager against NumPy); that element's gradient (7% of the largest there, where a channel
    # sums 1024 elements) then differs by all of itself, the layer's BN bias gradient by 1.3%
    # and every earlier layer's gradients by 1-6%: no rtol tells that from a bug. In float64
    # the implementations agree to ~5e-8 (NumpySGD's lr is float32), so a tight rtol holds.
    check_dtype=np.float64, rtol=1e-6,
    limit_note="GEMM FLOPs of the convolutions (as im2col products) and the linear layer, "
               "forward and both gradients (not the first convolution's input gradient)",
    impls=[
        Impl(GRAPHJIT_COMPILED, lambda i: _module_step(i, "graphjit", True), graphjit=True),
        Impl(GRAPHJIT_EAGER, lambda i: _module_step(i, "graphjit", False), graphjit=True),
        Impl(NUMPY, _numpy_step),
        Impl(TORCH_EAGER, lambda i: _module_step(i, "torch", False)),
        Impl(TORCH_COMPILE, lambda i: _module_step(i, "torch", True)),
    ])
