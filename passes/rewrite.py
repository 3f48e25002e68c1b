"""A small rule matcher and fixed-point driver, shared by the rewriting passes.

A rule is a row ``Rule(name, ops, fn)``: ``fn(node)`` looks at one node whose op is in
``ops`` (``None``: any op) and returns ``None`` (no match), an existing ``Value`` that
replaces the node's result, or an ``Emit(op, inputs, attrs)`` describing one new node
that replaces it. The driver applies a rewrite only when the replacement has exactly the
node's type (shape and dtype), so no rule can change broadcasting or dtypes by accident,
and it places new nodes where the old one stood, so the graph stays topologically
ordered (a rule may only use values the matched node can already see: its inputs and the
inputs of their producers). Nodes left without users are not removed here: that is DCE's
job, and the dump then shows what each pass did.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from graphjit.errors import GraphjitError
from graphjit.ir.graph import Node
from graphjit.ops import registry


@dataclass(frozen=True)
class Emit:
    """A new node ``op(*inputs, **attrs)`` to replace the matched one."""
    op: str
    inputs: tuple = ()
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    name: str
    ops: tuple | None  # op names the rule looks at; None for every op
    fn: Callable


# ---- small pattern helpers ----------------------------------------------------------------

def producer(value, op_name: str):
    """The node that defines ``value`` if it is an ``op_name`` node, else None."""
    n = value.node
    return n if n is not None and n.op.name == op_name else None


def full_value(value):
    """The fill value of a ``full`` node's result, or None for anything else."""
    n = producer(value, "full")
    return None if n is None else n.attrs["value"]


def same_type(a, b) -> bool:
    return tuple(a.shape) == tuple(b.shape) and a.dtype is b.dtype


# ---- use replacement ----------------------------------------------------------------------

def resolve(mapping: dict, value):
    """Follow ``mapping`` (old value -> new value) to the end of the chain."""
    while value in mapping:
        value = mapping[value]
    return value


def replace_uses(graph, mapping: dict) -> None:
    """Replace every read of a mapped value: in node inputs, outputs and update values.
    (Update *targets* are graph inputs, which are never replaced.)"""
    if not mapping:
        return
    for n in graph.nodes:
        n.inputs = [resolve(mapping, v) for v in n.inputs]
    graph.outputs = [resolve(mapping, v) for v in graph.outputs]
    graph.updates = [(t, resolve(mapping, v)) for t, v in graph.updates]


# ---- the driver ---------------------------------------------------------------------------

def _index_rules(rules):
    by_op, anywhere = {}, []
    for r in rules:
        if r.ops is None:
            anywhere.append(r)
        else:
            for name in r.ops:
                by_op.setdefault(name, []).append(r)
    return by_op, anywhere


def _build(emit: Emit, source):
    op = registry.get(emit.op)
    try:
        out_type = op.infer(*[v.type for v in emit.inputs], **emit.attrs)
    except GraphjitError:
        return None  # the rewrite would be ill-typed: treat it as no match
    return Node(op, emit.inputs, emit.attrs, out_type, source)


def _sweep(graph, by_op, anywhere, counts: Counter) -> int:
    mapping, kept, fired = {}, [], 0
    for n in graph.nodes:
        n.inputs = [resolve(mapping, v) for v in n.inputs]
        replacement = None
        if len(n.outs) != 1:
            kept.append(n)  # multi-result (fused) nodes: no rule rewrites them
            continue
        for rule in by_op.get(n.op.name, []) + anywhere:
            result = rule.fn(n)
            if result is None:
                continue
            if isinstance(result, Emit):
                new = _build(result, n.source)
                if new is None or not same_type(new.out, n.out):
                    continue
                kept.append(new)
                replacement = new.out
            elif same_type(result, n.out):
                replacement = result
            else:
                continue
            counts[rule.name] += 1
            fired += 1
            break
        if replacement is None:
            kept.append(n)
        else:
            mapping[n.out] = replacement
    graph.nodes = kept
    replace_uses(graph, mapping)
    return fired


def rewrite_fixed_point(graph, rules, counts: Counter | None = None,
                        max_sweeps: int = 100) -> Counter:
    """Apply ``rules`` over the graph, sweep after sweep, until none fires.

    Returns (and adds to ``counts``) how often each rule fired. Each sweep visits the nodes
    in order, so a chain such as ``neg(neg(neg(neg(x))))`` folds within one sweep; later
    sweeps catch what a rewrite newly exposed.
    """
    counts = Counter() if counts is None else counts
    by_op, anywhere = _index_rules(rules)
    for _ in range(max_sweeps):
        if not _sweep(graph, by_op, anywhere, counts):
            return counts
    fired = ", ".join(f"{k} x{v}" for k, v in counts.most_common(5))
    raise GraphjitError(f"rewriting did not reach a fixed point in {max_sweeps} sweeps "
                        f"(rules that fired most: {fired}); two rules probably undo each other",
                        where="")
