"""W2 and W3: a full MLP training step (zero_grad, forward, loss, backward, optimizer step).

W2: 784-512-512-10 ReLU, batch 256, cross-entropy, Adam (lr 1e-3): matrix-bound.
W3: 32-64-64-1 tanh, batch 64, MSE, SGD momentum 0.9 (lr 1e-2): overhead-bound.

graphjit is also called in the other ways users write (issue 21), the same step each time:
``opt.zero_grad()`` outside the compiled step; a compiled loss function with
``loss.backward()`` and ``opt.step()`` outside; ``graphjit.compile(model)`` with the loss,
backward and step outside.
"""
from __future__ import annotations

import numpy as np

from .base import (GRAPHJIT_COMPILED, GRAPHJIT_EAGER, GRAPHJIT_LOSS, GRAPHJIT_MODULE,
                   GRAPHJIT_ZERO_GRAD_OUTSIDE, JAX_JIT, NUMPY, TORCH_COMPILE, TORCH_EAGER,
                   Impl, NumpyAdam, NumpySGD, Workload, gj_load_linear, gj_np, jax_adam_update,
                   linear_init, mlp_gemm_flops, need_jax, need_torch, torch_load_linear, torch_np)


class MLPSpec:
    def __init__(self, sizes, batch, act, loss, opt, lr, momentum=0.0, seed=0):
        self.sizes, self.batch, self.act, self.loss = sizes, batch, act, loss
        self.opt, self.lr, self.momentum, self.seed = opt, lr, momentum, seed
        self.n_layers = len(sizes) - 1

    def init(self):
        rng = np.random.default_rng(self.seed)
        out = {}
        for k, (i, o) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            out[f"W{k}"], out[f"b{k}"] = linear_init(rng, i, o)
        out["x"] = rng.standard_normal((self.batch, self.sizes[0]), dtype=np.float32)
        if self.loss == "ce":
            out["y"] = rng.integers(0, self.sizes[-1], self.batch).astype(np.int64)
        else:
            out["y"] = rng.standard_normal((self.batch, self.sizes[-1]), dtype=np.float32)
        return out

    def param_names(self):
        return [f"{p}{k}" for k in range(self.n_layers) for p in ("W", "b")]


def _values(names, loss, params, grads):
    vals = {"loss": np.asarray(loss, dtype=np.float32)}
    for n, p, g in zip(names, params, grads):
        vals[n] = p
        vals[n + ".grad"] = g
    return vals


# ---------------------------------------------------------------- graphjit and PyTorch

def _module_step(spec, init, lib, compiled, how="step"):
    """The same training-step code for graphjit and PyTorch (``lib`` is either). ``how``
    (compiled graphjit): "step", the whole step compiled; "zero_grad outside"; "loss", a
    compiled loss function, backward and step outside; "module", ``compile(model)``."""
    if lib == "graphjit":
        import graphjit as gj
        import graphjit.nn as nn
        import graphjit.nn.functional as F
        optim, load, to_np = gj.optim, gj_load_linear, gj_np
        tensor = lambda a: gj.tensor(a.copy())  # noqa: E731
        compile_fn = gj.compile
    else:
        torch = need_torch()
        nn, F, optim = torch.nn, torch.nn.functional, torch.optim
        load = lambda layer, w, b: torch_load_linear(torch, layer, w, b)  # noqa: E731
        to_np, tensor, compile_fn = torch_np, lambda a: torch.from_numpy(a.copy()), torch.compile
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[spec.act]
    layers = []
    for k, (i, o) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:])):
        lin = nn.Linear(i, o)
        load(lin, init[f"W{k}"], init[f"b{k}"])
        layers.append(lin)
        if k < spec.n_layers - 1:
            layers.append(act())
    model = nn.Sequential(*layers)
    params = [p for lin in layers if isinstance(lin, nn.Linear) for p in (lin.weight, lin.bias)]
    if spec.opt == "adam":
        opt = optim.Adam(params, lr=spec.lr)
    else:
        opt = optim.SGD(params, lr=spec.lr, momentum=spec.momentum)
    loss_fn = F.cross_entropy if spec.loss == "ce" else F.mse_loss

    def step_fn(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def step_after_zero_grad(x, y):
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = tensor(init["x"]), tensor(init["y"])
    out = {}
    if how == "step":
        fn = compile_fn(step_fn) if compiled else step_fn

        def step():
            out["loss"] = fn(x, y)
    elif how == "zero_grad outside":
        fn = compile_fn(step_after_zero_grad)

        def step():
            opt.zero_grad()
            out["loss"] = fn(x, y)
    else:
        if how == "loss":
            loss_of = compile_fn(lambda x, y: loss_fn(model(x), y))
        else:
            compiled_model = compile_fn(model)
            loss_of = lambda x, y: loss_fn(compiled_model(x), y)  # noqa: E731

        def step():
            opt.zero_grad()
            loss = loss_of(x, y)
            loss.backward()
            opt.step()
            out["loss"] = loss

    def values():
        return _values(spec.param_names(), out["loss"].item(), [to_np(p) for p in params],
                       [to_np(p.grad) for p in params])

    return step, values


# ---------------------------------------------------------------- NumPy, by hand

def _numpy_step(spec, init):
    L, B = spec.n_layers, spec.batch
    W = [init[f"W{k}"].copy() for k in range(L)]
    b = [init[f"b{k}"].copy() for k in range(L)]
    x, y = init["x"].copy(), init["y"].copy()
    gW = [np.empty_like(w) for w in W]
    gb = [np.empty_like(v) for v in b]
    sizes = spec.sizes
    z = [np.empty((B, o), np.float32) for o in sizes[1:]]       # pre-activations
    h = [x] + [np.empty((B, o), np.float32) for o in sizes[1:-1]]  # layer inputs
    d = [np.empty((B, o), np.float32) for o in sizes[1:]]       # dloss/dz
    rows = np.arange(B)
    params = [p for k in range(L) for p in (W[k], b[k])]
    grads = [g for k in range(L) for g in (gW[k], gb[k])]
    if spec.opt == "adam":
        opt = NumpyAdam(params, lr=spec.lr)
    else:
        opt = NumpySGD(params, lr=spec.lr, momentum=spec.momentum)
    act = np.maximum if spec.act == "relu" else None
    out = {}

    def step():
        for k in range(L):
            np.matmul(h[k], W[k].T, out=z[k])
            np.add(z[k], b[k], out=z[k])
            if k < L - 1:
                if act is not None:
                    act(z[k], 0, out=h[k + 1])
                else:
                    np.tanh(z[k], out=h[k + 1])
        logits, dl = z[-1], d[-1]
        if spec.loss == "ce":
            m = logits.max(axis=1, keepdims=True)
            np.subtract(logits, m, out=dl)
            np.exp(dl, out=dl)
            s = dl.sum(axis=1, keepdims=True)
            loss = np.mean(np.log(s[:, 0]) + m[:, 0] - logits[rows, y])
            np.divide(dl, s, out=dl)
            dl[rows, y] -= 1
            np.multiply(dl, np.float32(1.0 / B), out=dl)
        else:
            np.subtract(logits, y, out=dl)
            loss = np.mean(dl * dl)
            np.multiply(dl, np.float32(2.0 / dl.size), out=dl)
        for k in reversed(range(L)):
            np.matmul(d[k].T, h[k], out=gW[k])
            np.sum(d[k], axis=0, out=gb[k])
            if k > 0:
                np.matmul(d[k], W[k], out=d[k - 1])
                if spec.act == "relu":
                    np.multiply(d[k - 1], z[k - 1] > 0, out=d[k - 1])
                else:  # tanh' = 1 - tanh^2, and h[k] = tanh(z[k - 1])
                    np.multiply(d[k - 1], 1 - h[k] * h[k], out=d[k - 1])
        opt.step(grads)
        out["loss"] = loss

    return step, lambda: _values(spec.param_names(), out["loss"], [p.copy() for p in params],
                                 [g.copy() for g in grads])


# ---------------------------------------------------------------- JAX

def _jax_step(spec, init):
    jax = need_jax()
    jnp = jax.numpy
    L = spec.n_layers

    def loss_fn(params, x, y):
        h = x
        for k in range(L):
            h = h @ params[2 * k].T + params[2 * k + 1]
            if k < L - 1:
                h = jax.nn.relu(h) if spec.act == "relu" else jnp.tanh(h)
        if spec.loss == "ce":
            logp = jax.nn.log_softmax(h, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return jnp.mean((h - y) ** 2)

    if spec.opt == "adam":
        def update(params, grads, state):
            m, v, t = state
            t = t + 1
            params, m, v = jax_adam_update(jnp, params, grads, m, v, t, lr=spec.lr)
            return params, (m, v, t)
        state = ([jnp.zeros_like(jnp.asarray(init[n])) for n in spec.param_names()],
                 [jnp.zeros_like(jnp.asarray(init[n])) for n in spec.param_names()],
                 jnp.zeros((), jnp.float32))
    else:
        def update(params, grads, state):
            bufs, started = state
            # PyTorch: the first step's buffer is the gradient itself
            bufs = [jnp.where(started, spec.momentum * bf + g, g) for bf, g in zip(bufs, grads)]
            params = [p - spec.lr * bf for p, bf in zip(params, bufs)]
            return params, (bufs, jnp.ones((), bool))
        state = ([jnp.zeros_like(jnp.asarray(init[n])) for n in spec.param_names()],
                 jnp.zeros((), bool))

    def train_step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        params, state = update(params, grads, state)
        return params, state, loss, grads

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    params = [jnp.asarray(init[n]) for n in spec.param_names()]
    x, y = jnp.asarray(init["x"]), jnp.asarray(init["y"].astype(np.int32)
                                                if spec.loss == "ce" else init["y"])
    cur = {"params": params, "state": state}

    def step():
        p, s, loss, grads = jax.block_until_ready(train_step(cur["params"], cur["state"], x, y))
        cur.update(params=p, state=s, loss=loss, grads=grads)

    return step, lambda: _values(spec.param_names(), np.asarray(cur["loss"]),
                                 [np.asarray(p) for p in cur["params"]],
                                 [np.asarray(g) for g in cur["grads"]])


def _impls(spec, split_target=0.0):
    """``split_target``: what a compiled loss function with eager backward and step may cost
    against the whole step compiled (issue 21 sets 1.3x for W2; W3's step is call overhead,
    and a split step makes three calls and runs autograd's engine)."""
    return [
        Impl(GRAPHJIT_COMPILED, lambda init: _module_step(spec, init, "graphjit", True), True),
        Impl(GRAPHJIT_ZERO_GRAD_OUTSIDE,
             lambda init: _module_step(spec, init, "graphjit", True, "zero_grad outside"), True,
             pattern=True, target=1.2),
        Impl(GRAPHJIT_LOSS, lambda init: _module_step(spec, init, "graphjit", True, "loss"), True,
             pattern=True, target=split_target),
        # (no target: its loss runs eagerly too, W2's cross-entropy 42 eager ops per step with
        # its backward)
        Impl(GRAPHJIT_MODULE, lambda init: _module_step(spec, init, "graphjit", True, "module"),
             True, pattern=True),
        Impl(GRAPHJIT_EAGER, lambda init: _module_step(spec, init, "graphjit", False), True),
        Impl(NUMPY, lambda init: _numpy_step(spec, init)),
        Impl(TORCH_EAGER, lambda init: _module_step(spec, init, "torch", False)),
        Impl(TORCH_COMPILE, lambda init: _module_step(spec, init, "torch", True)),
        Impl(JAX_JIT, lambda init: _jax_step(spec, init)),
    ]


W2_SPEC = MLPSpec([784, 512, 512, 10], 256, "relu", "ce", "adam", lr=1e-3, seed=2)
W3_SPEC = MLPSpec([32, 64, 64, 1], 64, "tanh", "mse", "sgd", lr=1e-2, momentum=0.9, seed=3)

W2 = Workload(
    key="W2",
    title="MLP 784-512-512-10 ReLU, batch 256, cross-entropy, Adam: full training step",
    bound="gemm",
    init=W2_SPEC.init,
    flops=mlp_gemm_flops(W2_SPEC.sizes, W2_SPEC.batch),
    limit_note="GEMM FLOPs: forward, weight gradients, input gradients of layers 2-3",
    impls=_impls(W2_SPEC, split_target=1.3),
    noisy_grad_below=1e-6,  # 100 x Adam's eps
    update_rtol=1e-2,
)

W3 = Workload(
    key="W3",
    title="MLP 32-64-64-1 tanh, batch 64, MSE, SGD momentum 0.9: full training step "
          "(overhead-bound)",
    bound="overhead",
    init=W3_SPEC.init,
    flops=mlp_gemm_flops(W3_SPEC.sizes, W3_SPEC.batch),
    limit_note="GEMM FLOPs, set against the GEMM rate (tiny: this step is call overhead)",
    impls=_impls(W3_SPEC),
)
