"""What a workload is, and the pieces its implementations share.

A workload holds its initial state as NumPy arrays (``init()``, seeded, so every
implementation starts from the same values) and a list of implementations. Each
implementation is a factory ``make(init) -> (step, values)``: ``step()`` runs one full step
and returns only when its results exist (JAX is synchronised inside it); ``values()``
returns a dict of NumPy arrays after the last step (the loss, gradients, updated
parameters and optimizer state), which ``--check`` compares against the NumPy reference.
A factory raises ``Unavailable`` when its library is not importable.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

GRAPHJIT_COMPILED = "graphjit compiled"
GRAPHJIT_EAGER = "graphjit eager"
# Other ways users call the compiler (issue 21), each timed beside the whole compiled step:
GRAPHJIT_CLEARED_OUTSIDE = "graphjit compiled, grad=None outside"  # W1
GRAPHJIT_ZERO_GRAD_OUTSIDE = "graphjit compiled, zero_grad() outside"  # W2, W3
GRAPHJIT_ACCUMULATE = "graphjit compiled, accumulate"  # W1
GRAPHJIT_FORWARD = "graphjit compiled forward + eager backward"  # W1
GRAPHJIT_LOSS = "graphjit compiled forward + eager backward + eager step"  # W2, W3
GRAPHJIT_MODULE = "graphjit compile(model)"  # W2, W3
NUMPY = "NumPy (hand-written)"
TORCH_EAGER = "PyTorch eager"
TORCH_COMPILE = "torch.compile"
JAX_JIT = "JAX jit"


class Unavailable(Exception):
    """The library an implementation needs is not installed: skip it quietly."""


@dataclass
class Impl:
    name: str
    make: object          # make(init) -> (step, values)
    graphjit: bool = False  # graphjit's own; every other implementation is a peer
    # Another way of calling graphjit's compiler for the same step: the suite also prints its
    # time against the whole step compiled ("graphjit compiled"), and ``target``, the ratio it
    # should stay under (0: none)
    pattern: bool = False
    target: float = 0.0


@dataclass
class Workload:
    key: str
    title: str
    bound: str            # "bandwidth", "gemm" or "overhead"
    init: object          # init() -> dict of NumPy arrays
    impls: list = field(default_factory=list)
    min_bytes: int = 0    # bytes a step must move at least (bandwidth-bound workloads)
    flops: int = 0        # GEMM FLOPs of a step (matrix-bound and overhead-bound workloads)
    limit_note: str = ""  # how min_bytes / flops were counted
    rtol: float = 1e-4
    check_steps: int = 3  # steps run by --check (a compiled step's first programs differ)
    # --check skips parameter updates where the reference gradient is below this: an Adam
    # update lr * g / (|g| + eps) of a gradient that is float32 rounding noise (|g| ~ eps)
    # is itself noise anywhere in [-lr, lr]; the gradients themselves are still compared
    noisy_grad_below: float = 0.0
    # rtol of parameter updates (default: rtol). Adam scales every element's update to about
    # lr, so an update carries its own gradient's elementwise relative error, far above the
    # gradients' error relative to their largest element for small elements
    update_rtol: float = 0.0
    # --check casts the initial state's float32 arrays to this dtype, and the implementations
    # follow init's dtype (W8: float64, because a float32 pre-activation within rounding of 0
    # lands on either side of a ReLU, see there)
    check_dtype: object = np.float32
    notes: list = field(default_factory=list)

    def impl(self, name):
        return next(i for i in self.impls if i.name == name)


def need_torch():
    try:
        import torch
    except ImportError as e:
        raise Unavailable("torch is not installed") from e
    logging.getLogger("torch").setLevel(logging.ERROR)
    threads = int(os.environ.get("GRAPHJIT_SUITE_THREADS", "0"))
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", module=r"torch\..*")
    return torch


class ModuleAPI(NamedTuple):
    """What a module-based workload (W7, W8) takes from graphjit or torch, so both run the
    same model code: ``module_api(lib)``."""
    nn: object
    F: object
    optim: object
    to_np: object       # tensor -> a NumPy copy
    flatten: object
    no_grad: object
    tensor: object      # NumPy array -> a tensor holding a copy
    from_numpy: object
    compile: object


def module_api(lib: str) -> ModuleAPI:
    if lib == "graphjit":
        import graphjit as gj
        import graphjit.nn.functional as F
        return ModuleAPI(gj.nn, F, gj.optim, gj_np, gj.flatten, gj.no_grad,
                         lambda a: gj.tensor(a.copy()), gj.from_numpy, gj.compile)
    torch = need_torch()
    copy = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    return ModuleAPI(torch.nn, torch.nn.functional, torch.optim, torch_np, torch.flatten,
                     torch.no_grad, copy, copy, torch.compile)


def need_jax():
    try:
        import jax
    except ImportError as e:
        raise Unavailable("jax is not installed") from e
    warnings.filterwarnings("ignore", message=".*donated buffers were not usable.*")
    return jax


def gj_load_linear(layer, w, b):
    """Copy NumPy weights into a graphjit (or torch) ``Linear``."""
    import graphjit as gj
    with gj.no_grad():
        layer.weight.copy_(gj.from_numpy(np.array(w, copy=True)))
        layer.bias.copy_(gj.from_numpy(np.array(b, copy=True)))


def torch_load_linear(torch, layer, w, b):
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(w, copy=True)))
        layer.bias.copy_(torch.from_numpy(np.array(b, copy=True)))


def gj_np(t):
    """A graphjit tensor (or None) as a NumPy array copy."""
    return None if t is None else np.array(t.detach().numpy(), copy=True)


def torch_np(t):
    return None if t is None else t.detach().cpu().numpy().copy()


def linear_init(rng, fan_in, fan_out):
    """PyTorch's default ``Linear`` initialisation, drawn from a NumPy generator."""
    bound = 1.0 / np.sqrt(fan_in)
    w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return w, b


def mlp_gemm_flops(sizes, batch, input_grad=False):
    """GEMM FLOPs of an MLP training step: forward, weight gradients, and input gradients of
    every layer but the first (unless ``input_grad``)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * i * o for i, o in layers)
    dx = sum(2 * batch * i * o for k, (i, o) in enumerate(layers) if k > 0 or input_grad)
    return 2 * fwd + dx


# ---------------------------------------------------------------- NumPy optimizers, in place

class NumpyAdam:
    """PyTorch's Adam (no weight decay, no amsgrad) on NumPy arrays, updated in place."""

    def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.tmp = [np.empty_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.b1, self.b2
        c2 = np.float32(np.sqrt(1 - b2 ** self.t))
        step_size = np.float32(self.lr / (1 - b1 ** self.t))
        for p, g, m, v, tmp in zip(self.params, grads, self.m, self.v, self.tmp):
            np.multiply(m, np.float32(b1), out=m)
            np.multiply(g, np.float32(1 - b1), out=tmp)
            np.add(m, tmp, out=m)
            np.multiply(v, np.float32(b2), out=v)
            np.multiply(g, g, out=tmp)
            np.multiply(tmp, np.float32(1 - b2), out=tmp)
            np.add(v, tmp, out=v)
            np.sqrt(v, out=tmp)
            np.divide(tmp, c2, out=tmp)
            np.add(tmp, np.float32(self.eps), out=tmp)
            np.divide(m, tmp, out=tmp)
            np.multiply(tmp, step_size, out=tmp)
            np.subtract(p, tmp, out=p)


class NumpySGD:
    """PyTorch's SGD with optional momentum and weight decay (no dampening, no Nesterov), in
    place: g + weight_decay * p, then the momentum buffer, then p -= lr * buffer."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params, self.lr, self.momentum = params, np.float32(lr), np.float32(momentum)
        self.weight_decay = np.float32(weight_decay)
        self.bufs = [None] * len(params)
        self.tmp = [np.empty_like(p) for p in params]

    def step(self, grads):
        for k, (p, g, tmp) in enumerate(zip(self.params, grads, self.tmp)):
            if self.weight_decay:
                np.multiply(p, self.weight_decay, out=tmp)
                np.add(g, tmp, out=tmp)
                g = tmp
            if self.momentum:
                if self.bufs[k] is None:
                    self.bufs[k] = g.copy()
                else:
                    np.multiply(self.bufs[k], self.momentum, out=self.bufs[k])
                    np.add(self.bufs[k], g, out=self.bufs[k])
                g = self.bufs[k]
            np.multiply(g, self.lr, out=tmp)
            np.subtract(p, tmp, out=p)


# ---------------------------------------------------------------- JAX optimizers, functional

def jax_adam_update(jnp, params, grads, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step on lists of arrays; ``t`` is the new step count (a float32 scalar)."""
    m = [b1 * mi + (1 - b1) * g for mi, g in zip(m, grads)]
    v = [b2 * vi + (1 - b2) * g * g for vi, g in zip(v, grads)]
    bc1 = 1 - b1 ** t
    bc2 = jnp.sqrt(1 - b2 ** t)
    params = [p - (lr / bc1) * mi / (jnp.sqrt(vi) / bc2 + eps) for p, mi, vi in zip(params, m, v)]
    return params, m, v
