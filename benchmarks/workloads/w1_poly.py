"""W1: Q = 3 a^3 - b^2 over 4M elements; Q.sum().backward(); the step returns the gradients.

Every implementation clears the gradients first (``a.grad = None``), so each step computes
them fresh instead of accumulating. At least 16 bytes per element move: read a and b, write
their gradients (Q itself need not be written).

graphjit is also called in the other ways users write (issue 21): the compiled function
without the clearing, its caller setting ``a.grad = None`` before each call; accumulating
into the existing ``.grad`` (never cleared: 8 more bytes per element, read and written;
``--check`` compares the mean gradient over the steps); a compiled forward returning
``Q.sum()`` with an eager ``backward()`` outside (its compiled backward program).
"""
from __future__ import annotations

import numpy as np

from .base import (GRAPHJIT_ACCUMULATE, GRAPHJIT_CLEARED_OUTSIDE, GRAPHJIT_COMPILED,
                   GRAPHJIT_EAGER, GRAPHJIT_FORWARD, JAX_JIT, NUMPY, TORCH_COMPILE, TORCH_EAGER,
                   Impl, Workload, gj_np, need_jax, need_torch, torch_np)

N = 1 << 22  # 4,194,304 elements


def init():
    rng = np.random.default_rng(1)
    return {"a": rng.standard_normal(N, dtype=np.float32),
            "b": rng.standard_normal(N, dtype=np.float32)}


def _graphjit(compiled):
    def make(init):
        import graphjit as gj
        a = gj.tensor(init["a"].copy(), requires_grad=True)
        b = gj.tensor(init["b"].copy(), requires_grad=True)

        def step_fn(a, b):
            a.grad = None
            b.grad = None
            q = 3 * a ** 3 - b ** 2
            q.sum().backward()
            return a.grad, b.grad

        fn = gj.compile(step_fn) if compiled else step_fn
        out = {}

        def step():
            out["ga"], out["gb"] = fn(a, b)

        return step, lambda: {"a.grad": gj_np(out["ga"]), "b.grad": gj_np(out["gb"])}
    return make


def _graphjit_call(how):
    """The other ways of calling the compiler (see the module docstring)."""
    def make(init):
        import graphjit as gj
        a = gj.tensor(init["a"].copy(), requires_grad=True)
        b = gj.tensor(init["b"].copy(), requires_grad=True)

        @gj.compile
        def step_fn(a, b):
            q = 3 * a ** 3 - b ** 2
            q.sum().backward()
            return a.grad, b.grad

        @gj.compile
        def forward(a, b):
            return (3 * a ** 3 - b ** 2).sum()

        out = {"steps": 0}

        def step():
            if how != "accumulate":
                a.grad = None
                b.grad = None
            if how == "forward":
                forward(a, b).backward()
                out["ga"], out["gb"] = a.grad, b.grad
            else:
                out["ga"], out["gb"] = step_fn(a, b)
            out["steps"] += 1

        def values():
            n = out["steps"] if how == "accumulate" else 1  # the mean gradient
            return {"a.grad": gj_np(out["ga"]) / n, "b.grad": gj_np(out["gb"]) / n}
        return step, values
    return make


def _numpy(init):
    a, b = init["a"].copy(), init["b"].copy()
    ga, gb = np.empty_like(a), np.empty_like(b)
    nine, minus_two = np.float32(9), np.float32(-2)

    def step():
        # dQ/da = 9 a^2, dQ/db = -2 b (the gradient of a sum is ones)
        np.multiply(a, a, out=ga)
        np.multiply(ga, nine, out=ga)
        np.multiply(b, minus_two, out=gb)
        return ga, gb

    return step, lambda: {"a.grad": ga.copy(), "b.grad": gb.copy()}


def _torch(compiled):
    def make(init):
        torch = need_torch()
        a = torch.tensor(init["a"], requires_grad=True)
        b = torch.tensor(init["b"], requires_grad=True)

        def step_fn(a, b):
            a.grad = None
            b.grad = None
            q = 3 * a ** 3 - b ** 2
            q.sum().backward()
            return a.grad, b.grad

        fn = torch.compile(step_fn) if compiled else step_fn
        out = {}

        def step():
            out["ga"], out["gb"] = fn(a, b)

        return step, lambda: {"a.grad": torch_np(out["ga"]), "b.grad": torch_np(out["gb"])}
    return make


def _jax(init):
    jax = need_jax()

    def q_sum(a, b):
        return (3 * a ** 3 - b ** 2).sum()

    fn = jax.jit(jax.grad(q_sum, argnums=(0, 1)))
    a, b = jax.numpy.asarray(init["a"]), jax.numpy.asarray(init["b"])
    out = {}

    def step():
        out["g"] = jax.block_until_ready(fn(a, b))

    return step, lambda: {"a.grad": np.asarray(out["g"][0]), "b.grad": np.asarray(out["g"][1])}


WORKLOAD = Workload(
    key="W1",
    title=f"Q = 3a^3 - b^2, Q.sum().backward(), a and b of {N:,} float32 (forward + backward)",
    bound="bandwidth",
    init=init,
    min_bytes=4 * N * 4,
    limit_note="read a, b; write a.grad, b.grad: 16 B/element",
    impls=[
        Impl(GRAPHJIT_COMPILED, _graphjit(True), graphjit=True),
        Impl(GRAPHJIT_CLEARED_OUTSIDE, _graphjit_call("cleared"), True, pattern=True, target=1.2),
        Impl(GRAPHJIT_ACCUMULATE, _graphjit_call("accumulate"), True, pattern=True),
        Impl(GRAPHJIT_FORWARD, _graphjit_call("forward"), True, pattern=True),
        Impl(GRAPHJIT_EAGER, _graphjit(False), graphjit=True),
        Impl(NUMPY, _numpy),
        Impl(TORCH_EAGER, _torch(False)),
        Impl(TORCH_COMPILE, _torch(True)),
        Impl(JAX_JIT, _jax),
    ],
)
