"""W6: one Adam step (lr 1e-3, default betas and eps) over 10M parameters with given gradients.

The logic of ``benchmarks/optimizer_update.py`` (its NumPy and hand-written Numba updates are
reused from there). At least 28 bytes per parameter move: read p, g, m, v; write p, m, v.
"""
from __future__ import annotations

import numpy as np

from .base import (GRAPHJIT_COMPILED, GRAPHJIT_EAGER, JAX_JIT, NUMPY, TORCH_COMPILE, Impl,
                   Workload, gj_np, jax_adam_update, need_jax, need_torch, torch_np)

N = 10_000_000
LR = 1e-3


def init():
    rng = np.random.default_rng(6)
    return {"p": rng.standard_normal(N, dtype=np.float32),
            "g": rng.standard_normal(N, dtype=np.float32) * np.float32(1e-3)}


def _graphjit(mode):
    def make(init):
        import graphjit as gj
        p = gj.nn.Parameter(gj.tensor(init["p"].copy()))
        p.grad = gj.tensor(init["g"].copy())
        opt = gj.optim.Adam([p], lr=LR, fused=(mode != "op by op"))

        if mode == "compiled":
            @gj.compile
            def step():
                opt.step()
        else:
            step = opt.step

        def values():
            st = opt.state[p]
            return {"p": gj_np(p), "m": gj_np(st["exp_avg"]), "v": gj_np(st["exp_avg_sq"])}

        return step, values
    return make


def _numpy(kind):
    def make(init):
        from optimizer_update import numba_adam, numpy_adam
        build = numpy_adam if kind == "numpy" else numba_adam
        step = build(N, lr=LR, p=init["p"].copy(), g=init["g"].copy())
        return step, lambda: {k: a.copy() for k, a in step.state.items()}
    return make


def _torch(kind):
    def make(init):
        torch = need_torch()
        p = torch.nn.Parameter(torch.from_numpy(init["p"].copy()))
        p.grad = torch.from_numpy(init["g"].copy())
        if kind == "fused":
            opt = torch.optim.Adam([p], lr=LR, fused=True)
        elif kind == "foreach":
            opt = torch.optim.Adam([p], lr=LR, foreach=True)
        else:
            opt = torch.optim.Adam([p], lr=LR)
        step = torch.compile(opt.step) if kind == "compile" else opt.step

        def values():
            st = opt.state[p]
            return {"p": torch_np(p), "m": torch_np(st["exp_avg"]), "v": torch_np(st["exp_avg_sq"])}

        return (lambda: step()), values
    return make


def _jax(init):
    jax = need_jax()
    jnp = jax.numpy

    def update(p, m, v, t, g):
        t = t + 1
        (p,), (m,), (v,) = jax_adam_update(jnp, [p], [g], [m], [v], t, lr=LR)
        return p, m, v, t

    fn = jax.jit(update, donate_argnums=(0, 1, 2, 3))
    g = jnp.asarray(init["g"])
    cur = {"s": (jnp.asarray(init["p"]), jnp.zeros(N, jnp.float32), jnp.zeros(N, jnp.float32),
                 jnp.zeros((), jnp.float32))}

    def step():
        cur["s"] = jax.block_until_ready(fn(*cur["s"], g))

    def values():
        p, m, v, _ = cur["s"]
        return {"p": np.asarray(p), "m": np.asarray(m), "v": np.asarray(v)}

    return step, values


WORKLOAD = Workload(
    key="W6",
    title=f"one Adam step over {N:,} float32 parameters with given gradients",
    bound="bandwidth",
    init=init,
    min_bytes=28 * N,
    limit_note="read p, g, m, v; write p, m, v: 28 B/parameter",
    impls=[
        Impl(GRAPHJIT_COMPILED, _graphjit("compiled"), graphjit=True),
        Impl(GRAPHJIT_EAGER + " opt.step() (a compiled update)", _graphjit("eager"), graphjit=True),
        Impl(GRAPHJIT_EAGER + " fused=False (op by op)", _graphjit("op by op"), graphjit=True),
        Impl(NUMPY, _numpy("numpy")),
        Impl("Numba (hand-written loop)", _numpy("numba")),
        Impl("PyTorch Adam(fused=True)", _torch("fused")),
        Impl("PyTorch Adam(foreach=True)", _torch("foreach")),
        Impl(TORCH_COMPILE + "(opt.step)", _torch("compile")),
        Impl(JAX_JIT, _jax),
    ],
    notes=["graphjit compiled: @graphjit.compile on a function calling opt.step()"],
)
