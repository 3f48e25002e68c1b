"""The fuzzer's op specs: one row per kind of statement, naming the registry ops it binds.

The rows live in one module per family, as the ops do in graphjit/ops/: elementwise.py,
reduce.py (reductions, matmul, losses), shape.py (movement, views, indexing, creation),
window.py (convolutions, pooling, unfold/fold, layer norm, embedding, attention, random
numbers, a user's autograd.Function), scan.py (rounding, cumsum, prod, sort/argsort/topk),
inplace.py (in-place changes, x[k] = v, .item()) and blocks.py (no_grad, loops, branches,
and the program around the statements: outputs, loss, backward, .grad, optimizer step).

Each ``OpSpec`` makes one statement (or a few) from the variables in scope
(graphjit/fuzz/generator.py, [Generator grammar]); ``prims`` lists the primitive ops of
``graphjit.ops.registry`` it exercises in eager mode (forward or backward), and
``tests/fuzz/test_fuzz.py`` checks that together with ``INTERNAL`` they name every registry op,
and that each row really binds what it declares. ``feature`` is the switch that turns a row
off (``graphjit fuzz --without FEATURE``). The fuzzer is library code, so it keeps its own
rows rather than importing tests/op_table.py; their domains agree (log of positive values,
kinks kept away from, and so on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..generator import Gen, SkipSpec, Var

# Registry ops no statement binds in eager mode, each with where the fuzzer still meets it.
INTERNAL = {
    "grad": "the gradient request loss.backward() records while tracing (the tail's backward "
            "statement of every compiled program); its eager impl raises by design",
    "fused": "made by passes/fuse from elementwise and reduction nodes: every compiled program",
    "gemm": "made by passes/gemm from matmul nodes: every compiled program with a matmul spec",
    "window_gemm": "made by passes/gemm from a convolution's products over its unfolded "
                   "windows: every compiled program with a conv spec (the window feature)",
    "custom_function": "the traced form of a user's autograd.Function (the custom_function "
                       "spec's UserXTanh.apply in compiled programs); eager mode runs the "
                       "Function's own forward and backward",
    "reattach": "the traced form of an in-place change under no_grad of a tensor with a "
                "history (the inplace_no_grad specs' changes of non-leaf values)",
    "all_reduce": "a collective over MPI ranks: tests/distributed runs it under mpiexec (a "
                  "fuzzed program is one process)",
    "broadcast": "a collective over MPI ranks: tests/distributed runs it under mpiexec",
}

FEATURES = ("ops", "broadcast", "views", "inplace", "view_inplace", "setitem", "clone",
            "detach", "grad_rw", "no_grad", "loop", "if_grad", "optimizer", "user_optimizer",
            "lr_change", "item", "errors", "functional", "float64_mix", "grad_assign",
            "unit_dims", "noop_views", "param_inplace", "window", "saved_inplace",
            "random", "custom_function")

# What each feature is, for `graphjit fuzz --help`.
FEATURE_HELP = {
    "ops": "elementwise, reduction, matmul, shape and index ops",
    "broadcast": "operands of different shapes",
    "views": "slicing, permute, expand, reshape, split and friends",
    "inplace": "in-place ops on temporaries, buffers, arguments and (no_grad) parameters",
    "view_inplace": "in-place ops through views (x[1:3].add_, x.detach().mul_, p.data.mul_)",
    "setitem": "index assignment x[k] = v",
    "clone": "clone() (of values the program changed, too)",
    "detach": "detach()",
    "grad_rw": ".grad reads and writes after backward, gradient clipping",
    "no_grad": "with graphjit.no_grad() blocks",
    "loop": "Python loops unrolled by tracing",
    "if_grad": "Python branches on `p.grad is not None`",
    "optimizer": "optimizer steps (graphjit.optim, a hand-written update)",
    "user_optimizer": "a user-written Optimizer subclass with its own step()",
    "lr_change": "learning rates changed between calls",
    "item": ".item() / .numpy() / .tolist() inside the program",
    "errors": "statements eager mode rejects (compiled must raise the same error)",
    "functional": "graphjit.nn.functional losses (cross_entropy, mse_loss, ...)",
    "float64_mix": "casts between float32 and float64 inside a program",
    "grad_assign": "p.grad = None / = p.grad * 2 / opt.zero_grad() after backward, in the step",
    "unit_dims": "dims of size 1 (and broadcasting against them) in input shapes",
    "noop_views": "views that return the tensor itself (x[...], x.contiguous(), a full narrow)",
    "param_inplace": "parameters changed in place under no_grad inside the forward",
    "window": "convolutions, pooling, F.unfold / F.fold",
    "saved_inplace": "in-place changes of values a differentiable op read before (eager raises "
                     "at backward when the op saved them)",
    "random": "random numbers (F.dropout, graphjit.rand_like) from the seeded generator",
    "custom_function": "a user-written graphjit.autograd.Function with its own backward",
}


@dataclass(frozen=True)
class OpSpec:
    name: str
    prims: tuple
    fn: Callable
    weight: float
    feature: str
    place: str   # "op" (a forward statement), "inplace" (also inside no_grad blocks), "tail"


SPECS: list[OpSpec] = []


def spec(name, prims=(), weight=1.0, feature="ops", place="op"):
    def register(fn):
        if any(s.name == name for s in SPECS):
            raise ValueError(f"duplicate fuzz spec {name!r}")
        SPECS.append(OpSpec(name, tuple(prims), fn, weight, feature, place))
        return fn
    return register


def by_name(name: str) -> OpSpec:
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


# ---- small helpers -------------------------------------------------------------------------

def _c(g: Gen, *templates) -> str:
    return g.r.choice(templates)


def _dim(g: Gen, v: Var, neg: bool = True) -> int:
    d = g.r.randrange(len(v.shape))
    return d - len(v.shape) if neg and g.r.random() < 0.3 else d


def _unary(g: Gen, name: str, templates, out, pred=None, prefer_exact=False, domain="real",
           keep_exact=False):
    x = g.float_var(pred, prefer_exact=prefer_exact, domain=domain)
    if pred is not None and not pred(x):
        raise SkipSpec(name)
    mag, lb = out(x)
    return g.emit(_c(g, *templates), [x], shape=x.shape, dtype=x.dtype, spec=name, mag=mag, lb=lb,
                  exact=keep_exact and x.exact)


# The families register their rows on import (order = SPECS order = generation weights' order).
from . import elementwise, reduce, shape, window, scan, inplace, blocks  # noqa: E402,F401
from .blocks import finish, forward_statements, tail_statements  # noqa: E402,F401
