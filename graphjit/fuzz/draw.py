"""Drawing one program of a seeded fuzzing run: the optimizer it trains with, and its
statements, made by the specs (specs/) on the generator's variables (generator.py,
[Generator grammar]). This module sits above both: the specs build on the generator.
"""
from __future__ import annotations

import random

from . import specs  # the op statements
from .generator import Gen
from .program import FLOAT_DTYPES, OptConfig, Program

OPTIMIZERS = {
    # kind: (weight, option choices); lr small enough that a parameter moves ~1e-2 a step
    "SGD": 3, "Adam": 2, "AdamW": 1, "Adagrad": 1, "RMSprop": 1, "Adadelta": 1, "user": 1.5,
    "manual": 1, None: 1,
}


def _optimizer(r: random.Random, params: list) -> OptConfig | None:
    kinds = list(OPTIMIZERS)
    kind = r.choices(kinds, [OPTIMIZERS[k] for k in kinds])[0]
    if kind is None:
        return None
    o: dict = {}
    if kind == "SGD":
        o["lr"] = r.choice([0.01, 0.005])
        if r.random() < 0.7:
            o["momentum"] = r.choice([0.9, 0.5])
            if r.random() < 0.4:
                o["nesterov"] = True
            elif r.random() < 0.3:
                o["dampening"] = 0.1
        if r.random() < 0.3:
            o["weight_decay"] = 0.01
        if r.random() < 0.15:
            o["maximize"] = True
    elif kind in ("Adam", "AdamW"):
        o["lr"] = r.choice([0.01, 0.003])
        if r.random() < 0.3:
            o["betas"] = (0.8, 0.99)
        if r.random() < 0.3:
            o["amsgrad"] = True
        if r.random() < 0.3:
            o["weight_decay"] = 0.02
        if r.random() < 0.1:
            o["maximize"] = True
    elif kind == "Adagrad":
        o["lr"] = 0.01
        if r.random() < 0.4:
            o["lr_decay"] = 0.01
        if r.random() < 0.4:
            o["initial_accumulator_value"] = 0.1
        if r.random() < 0.3:
            o["weight_decay"] = 0.01
    elif kind == "RMSprop":
        o["lr"] = 0.001
        if r.random() < 0.4:
            o["momentum"] = 0.5
        if r.random() < 0.4:
            o["centered"] = True
        if r.random() < 0.3:
            o["alpha"] = 0.9
    elif kind == "Adadelta":
        o["lr"] = r.choice([1.0, 0.5])
        if r.random() < 0.3:
            o["weight_decay"] = 0.01
    elif kind == "user":
        o["lr"] = 0.01
        if r.random() < 0.7:
            o["momentum"] = 0.9
    elif kind == "manual":
        o["lr"] = 0.01
    groups = None
    if kind not in ("manual",) and len(params) >= 2 and r.random() < 0.25:
        cut = r.randrange(1, len(params))
        groups = [(params[:cut], {}), (params[cut:], {"lr": o["lr"] / 2})]
    return OptConfig(kind, o, groups)


def generate(seed: int, index: int, device: str = "cpu", features=None,
             attempt: int = 0) -> Program:
    """Program ``index`` of the run seeded ``seed`` (``attempt``: a replacement for one whose
    eager run was not finite): a pure function of its arguments."""
    features = frozenset(specs.FEATURES if features is None else features)
    r = random.Random(f"graphjit-fuzz/{seed}/{index}" + (f"/{attempt}" if attempt else ""))
    p = Program(seed=seed, index=index, dtype=r.choice(FLOAT_DTYPES), device=device)
    g = Gen(r, p, features)
    # Start from one or two parameters and an argument, so gradients have somewhere to go.
    for _ in range(r.choice([1, 1, 2])):
        g.new_input(role="param", requires_grad=True,
                    domain=r.choices(["real", "positive"], [3, 1])[0])
    g.new_input(role="arg", domain=r.choices(["real", "positive"], [3, 1])[0])
    n_stmts = r.choice([2, 3, 3, 4, 4, 5, 6, 7])
    specs.forward_statements(g, n_stmts)
    specs.finish(g)
    params = [i.name for i in p.by_role("param")]
    p.optimizer = _optimizer(r, params) if "optimizer" in features else None
    if p.optimizer is not None and p.optimizer.kind == "user" and "user_optimizer" not in features:
        p.optimizer = OptConfig("SGD", {"lr": 0.01, "momentum": 0.9})
    specs.tail_statements(g)
    p.zero_grad = r.choices(["to_none", "zeros", "none", "end"],
                            [4, 2, 2, 1 if "grad_assign" in features else 0])[0]
    p.calls = r.choices([1, 2, 3, 4], [1, 2, 5, 2])[0]
    if p.optimizer is not None and p.optimizer.kind != "manual" and r.random() < 0.3 \
            and "lr_change" in features:
        p.lr_decay = 0.5
    return p
