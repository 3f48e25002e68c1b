"""W5: Elman RNN training step: input 32, hidden 128, 50 time steps, batch 32.

h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) from h_0 = 0, a linear head
(128 -> 1) on the last state, MSE against a fixed target, SGD (lr 1e-2). graphjit, PyTorch
and JAX unroll the same Python loop over time (traced / compiled); the NumPy version is
backpropagation through time by hand (its input projections batched into one GEMM).
"""
from __future__ import annotations

import numpy as np

from .base import (GRAPHJIT_COMPILED, GRAPHJIT_EAGER, JAX_JIT, NUMPY, TORCH_COMPILE, TORCH_EAGER,
                   Impl, NumpySGD, Workload, gj_load_linear, gj_np, linear_init, need_jax,
                   need_torch, torch_load_linear, torch_np)

I, H, T, B, LR = 32, 128, 50, 32, 1e-2
NAMES = ["W_ih", "b_ih", "W_hh", "b_hh", "W_o", "b_o"]


def init():
    rng = np.random.default_rng(5)
    out = {}
    out["W_ih"], out["b_ih"] = linear_init(rng, I, H)
    out["W_hh"], out["b_hh"] = linear_init(rng, H, H)
    out["W_o"], out["b_o"] = linear_init(rng, H, 1)
    out["xs"] = rng.standard_normal((T, B, I), dtype=np.float32)
    out["y"] = rng.standard_normal((B, 1), dtype=np.float32)
    return out


def _values(loss, params, grads):
    vals = {"loss": np.float32(loss)}
    for n, p, g in zip(NAMES, params, grads):
        vals[n], vals[n + ".grad"] = p, g
    return vals


def _module_step(init, lib, compiled):
    if lib == "graphjit":
        import graphjit as gj
        import graphjit.nn as nn
        import graphjit.nn.functional as F
        zeros, tanh, optim, load, to_np = gj.zeros, gj.tanh, gj.optim, gj_load_linear, gj_np
        tensor, compile_fn = (lambda a: gj.tensor(a.copy())), gj.compile
    else:
        torch = need_torch()
        nn, F, optim = torch.nn, torch.nn.functional, torch.optim
        zeros, tanh, to_np = torch.zeros, torch.tanh, torch_np
        load = lambda layer, w, b: torch_load_linear(torch, layer, w, b)  # noqa: E731
        tensor, compile_fn = (lambda a: torch.from_numpy(a.copy())), torch.compile
    ih, hh, head = nn.Linear(I, H), nn.Linear(H, H), nn.Linear(H, 1)
    for layer, w, b in ((ih, "W_ih", "b_ih"), (hh, "W_hh", "b_hh"), (head, "W_o", "b_o")):
        load(layer, init[w], init[b])
    params = [ih.weight, ih.bias, hh.weight, hh.bias, head.weight, head.bias]
    opt = optim.SGD(params, lr=LR)

    def step_fn(xs, y):
        opt.zero_grad()
        h = zeros(B, H)
        for t in range(T):
            h = tanh(ih(xs[t]) + hh(h))
        loss = F.mse_loss(head(h), y)
        loss.backward()
        opt.step()
        return loss

    fn = compile_fn(step_fn) if compiled else step_fn
    xs, y = tensor(init["xs"]), tensor(init["y"])
    out = {}

    def step():
        out["loss"] = fn(xs, y)

    return step, lambda: _values(out["loss"].item(), [to_np(p) for p in params],
                                 [to_np(p.grad) for p in params])


def _numpy_step(init):
    W_ih, b_ih, W_hh, b_hh, W_o, b_o = (init[n].copy() for n in NAMES)
    xs, y = init["xs"].copy(), init["y"].copy()
    params = [W_ih, b_ih, W_hh, b_hh, W_o, b_o]
    grads = [np.empty_like(p) for p in params]
    gW_ih, gb_ih, gW_hh, gb_hh, gW_o, gb_o = grads
    hs = np.zeros((T + 1, B, H), np.float32)  # hs[0] = h_0 = 0
    da = np.empty((T, B, H), np.float32)
    xs2 = xs.reshape(T * B, I)
    opt = NumpySGD(params, LR)
    bias = b_ih + b_hh
    out = {}

    def step():
        np.add(b_ih, b_hh, out=bias)
        pre = (xs2 @ W_ih.T).reshape(T, B, H)  # all input projections in one GEMM
        pre += bias
        for t in range(T):
            a = pre[t]
            a += hs[t] @ W_hh.T
            np.tanh(a, out=hs[t + 1])
        o = hs[T] @ W_o.T + b_o
        diff = o - y
        loss = np.mean(diff * diff)
        do = diff * np.float32(2.0 / diff.size)
        np.matmul(do.T, hs[T], out=gW_o)
        np.sum(do, axis=0, out=gb_o)
        dh = do @ W_o
        for t in reversed(range(T)):
            np.multiply(dh, 1 - hs[t + 1] * hs[t + 1], out=da[t])  # tanh'
            if t > 0:
                dh = da[t] @ W_hh
        da2 = da.reshape(T * B, H)
        np.matmul(da2.T, xs2, out=gW_ih)
        np.matmul(da2.T, hs[:T].reshape(T * B, H), out=gW_hh)
        np.sum(da2, axis=0, out=gb_ih)
        gb_hh[...] = gb_ih
        opt.step(grads)
        out["loss"] = loss

    return step, lambda: _values(out["loss"], [p.copy() for p in params],
                                 [g.copy() for g in grads])


def _jax_step(init):
    jax = need_jax()
    jnp = jax.numpy

    def loss_fn(params, xs, y):
        W_ih, b_ih, W_hh, b_hh, W_o, b_o = params
        h = jnp.zeros((B, H), jnp.float32)
        for t in range(T):  # unrolled, like the traced Python loops of the others
            h = jnp.tanh(xs[t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh)
        return jnp.mean((h @ W_o.T + b_o - y) ** 2)

    def train_step(params, xs, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, y)
        return [p - LR * g for p, g in zip(params, grads)], loss, grads

    train_step = jax.jit(train_step, donate_argnums=(0,))
    cur = {"params": [jnp.asarray(init[n]) for n in NAMES]}
    xs, y = jnp.asarray(init["xs"]), jnp.asarray(init["y"])

    def step():
        p, loss, grads = jax.block_until_ready(train_step(cur["params"], xs, y))
        cur.update(params=p, loss=loss, grads=grads)

    return step, lambda: _values(np.asarray(cur["loss"]), [np.asarray(p) for p in cur["params"]],
                                 [np.asarray(g) for g in cur["grads"]])


def _flops():
    fwd = T * (2 * B * I * H + 2 * B * H * H) + 2 * B * H
    bwd = T * (2 * B * I * H + 2 * B * H * H) + (T - 1) * 2 * B * H * H + 2 * 2 * B * H
    return fwd + bwd


WORKLOAD = Workload(
    key="W5",
    title=f"Elman RNN, input {I}, hidden {H}, {T} steps, batch {B}, linear head, MSE, SGD: "
          "training step (unrolled)",
    bound="overhead",
    init=init,
    flops=_flops(),
    limit_note="GEMM FLOPs of forward and BPTT (small GEMMs: latency-bound), against the GEMM rate",
    impls=[
        Impl(GRAPHJIT_COMPILED, lambda init: _module_step(init, "graphjit", True), True),
        Impl(GRAPHJIT_EAGER, lambda init: _module_step(init, "graphjit", False), True),
        Impl(NUMPY, _numpy_step),
        Impl(TORCH_EAGER, lambda init: _module_step(init, "torch", False)),
        Impl(TORCH_COMPILE, lambda init: _module_step(init, "torch", True)),
        Impl(JAX_JIT, _jax_step),
    ],
)
