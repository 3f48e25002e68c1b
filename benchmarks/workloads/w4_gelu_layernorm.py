"""W4: y = layer_norm(gelu_tanh(x * w + b)), loss = mean(y * t); forward + backward to w, b.

x and t are [4096, 1024] (t fixed and random); w and b are [1024] and require grad. The
layer norm is over the last dimension with eps 1e-5 and no affine parameters. graphjit has
no ``F.layer_norm`` / ``nn.LayerNorm`` yet, so its version (and JAX's) is written from
``mean`` and ``var``; PyTorch uses its ``F.layer_norm``. At least x and t must be read once
(32 MiB); w, b and their gradients are 16 KiB.
"""
from __future__ import annotations

import math

import numpy as np

from .base import (GRAPHJIT_COMPILED, GRAPHJIT_EAGER, JAX_JIT, NUMPY, TORCH_COMPILE, TORCH_EAGER,
                   Impl, Workload, gj_np, need_jax, need_torch, torch_np)

ROWS, COLS, EPS = 4096, 1024, 1e-5
K = math.sqrt(2.0 / math.pi)
C = 0.044715


def init():
    rng = np.random.default_rng(4)
    return {"x": rng.standard_normal((ROWS, COLS), dtype=np.float32),
            "t": rng.standard_normal((ROWS, COLS), dtype=np.float32),
            "w": (1 + 0.1 * rng.standard_normal(COLS)).astype(np.float32),
            "b": (0.1 * rng.standard_normal(COLS)).astype(np.float32)}


def _graphjit(compiled):
    def make(init):
        import graphjit as gj
        import graphjit.nn.functional as F

        x, t = gj.tensor(init["x"].copy()), gj.tensor(init["t"].copy())
        w = gj.tensor(init["w"].copy(), requires_grad=True)
        b = gj.tensor(init["b"].copy(), requires_grad=True)

        def layer_norm(h):  # graphjit has no F.layer_norm yet
            mu = h.mean(-1, keepdim=True)
            var = h.var(-1, unbiased=False, keepdim=True)
            return (h - mu) * gj.rsqrt(var + EPS)

        def step_fn(x, t, w, b):
            w.grad = None
            b.grad = None
            y = layer_norm(F.gelu(x * w + b, approximate="tanh"))
            loss = (y * t).mean()
            loss.backward()
            return loss, w.grad, b.grad

        fn = gj.compile(step_fn) if compiled else step_fn
        out = {}

        def step():
            out["r"] = fn(x, t, w, b)

        def values():
            loss, gw, gb = out["r"]
            return {"loss": np.float32(loss.item()), "w.grad": gj_np(gw), "b.grad": gj_np(gb)}

        return step, values
    return make


def _numpy(init):
    x, t, w, b = (init[k].copy() for k in ("x", "t", "w", "b"))
    n = np.float32(x.size)
    u, th, h, tmp = (np.empty_like(x) for _ in range(4))
    half, one, k, c, c3 = (np.float32(v) for v in (0.5, 1.0, K, C, 3 * C))
    out = {}

    def step():
        # forward: u = x w + b; h = gelu_tanh(u) = u/2 (1 + tanh(k (u + c u^3)))
        np.multiply(x, w, out=u)
        np.add(u, b, out=u)
        np.multiply(u, u, out=tmp)           # u^2, kept in tmp for the derivative
        np.multiply(tmp, c, out=th)
        np.add(th, one, out=th)
        np.multiply(th, u, out=th)
        np.multiply(th, k, out=th)
        np.tanh(th, out=th)
        np.add(th, one, out=h)
        np.multiply(h, u, out=h)
        np.multiply(h, half, out=h)
        # layer norm over rows: yhat = (h - mu) r, r = 1 / sqrt(var + eps)
        mu = h.mean(axis=1, keepdims=True)
        np.subtract(h, mu, out=h)
        var = np.mean(h * h, axis=1, keepdims=True)
        r = (1 / np.sqrt(var + np.float32(EPS))).astype(np.float32)
        np.multiply(h, r, out=h)             # h is yhat now
        loss = np.sum(h * t, dtype=np.float64) / x.size
        # backward: g = dloss/dyhat = t / n; dh = r (g - mean(g) - yhat mean(g yhat))
        g = t / n
        gm = g.mean(axis=1, keepdims=True)
        gym = np.mean(g * h, axis=1, keepdims=True)
        np.multiply(h, gym, out=h)
        np.subtract(g, h, out=g)
        np.subtract(g, gm, out=g)
        np.multiply(g, r, out=g)             # g is dloss/dh now
        # gelu'(u) = (1 + th)/2 + u/2 (1 - th^2) k (1 + 3 c u^2)
        np.multiply(tmp, c3, out=tmp)
        np.add(tmp, one, out=tmp)
        np.multiply(tmp, k, out=tmp)
        np.multiply(tmp, u, out=tmp)
        np.multiply(tmp, half, out=tmp)
        np.multiply(th, th, out=h)
        np.subtract(one, h, out=h)
        np.multiply(tmp, h, out=tmp)
        np.add(th, one, out=th)
        np.multiply(th, half, out=th)
        np.add(tmp, th, out=tmp)
        np.multiply(g, tmp, out=g)           # g is dloss/du now
        out["gb"] = g.sum(axis=0)
        np.multiply(g, x, out=g)
        out["gw"] = g.sum(axis=0)
        out["loss"] = loss

    return step, lambda: {"loss": np.float32(out["loss"]), "w.grad": out["gw"].copy(),
                          "b.grad": out["gb"].copy()}


def _torch(compiled):
    def make(init):
        torch = need_torch()
        F = torch.nn.functional
        x, t = torch.from_numpy(init["x"].copy()), torch.from_numpy(init["t"].copy())
        w = torch.tensor(init["w"], requires_grad=True)
        b = torch.tensor(init["b"], requires_grad=True)

        def step_fn(x, t, w, b):
            w.grad = None
            b.grad = None
            y = F.layer_norm(F.gelu(x * w + b, approximate="tanh"), (COLS,), eps=EPS)
            loss = (y * t).mean()
            loss.backward()
            return loss, w.grad, b.grad

        fn = torch.compile(step_fn) if compiled else step_fn
        out = {}

        def step():
            out["r"] = fn(x, t, w, b)

        def values():
            loss, gw, gb = out["r"]
            return {"loss": np.float32(loss.item()), "w.grad": torch_np(gw), "b.grad": torch_np(gb)}

        return step, values
    return make


def _jax(init):
    jax = need_jax()
    jnp = jax.numpy

    def loss_fn(w, b, x, t):
        h = jax.nn.gelu(x * w + b, approximate=True)
        mu = h.mean(-1, keepdims=True)
        var = jnp.mean((h - mu) ** 2, -1, keepdims=True)
        y = (h - mu) * jax.lax.rsqrt(var + EPS)
        return jnp.mean(y * t)

    fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))
    args = [jnp.asarray(init[k]) for k in ("w", "b", "x", "t")]
    out = {}

    def step():
        out["r"] = jax.block_until_ready(fn(*args))

    def values():
        loss, (gw, gb) = out["r"]
        return {"loss": np.float32(loss), "w.grad": np.asarray(gw), "b.grad": np.asarray(gb)}

    return step, values


WORKLOAD = Workload(
    key="W4",
    title=f"layer_norm(gelu_tanh(x * w + b)), loss = mean(y * t), x [{ROWS}, {COLS}]: "
          "forward + backward",
    bound="bandwidth",
    init=init,
    min_bytes=2 * ROWS * COLS * 4 + 4 * COLS * 4,
    limit_note="read x, t once (w, b, their gradients: 16 KiB)",
    impls=[
        Impl(GRAPHJIT_COMPILED, _graphjit(True), graphjit=True),
        Impl(GRAPHJIT_EAGER, _graphjit(False), graphjit=True),
        Impl(NUMPY, _numpy),
        Impl(TORCH_EAGER, _torch(False)),
        Impl(TORCH_COMPILE, _torch(True)),
        Impl(JAX_JIT, _jax),
    ],
    notes=["graphjit has no F.layer_norm / nn.LayerNorm: its layer norm (and JAX's) is written "
           "from mean, var and rsqrt; PyTorch's uses F.layer_norm"],
)
