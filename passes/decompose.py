"""Decomposition: composite elementwise ops rebuilt from the primitives they are made of.

``gelu(x, approximate='tanh')`` computes ``tanh((x + x^3 C) K)``, and so does its VJP.
As one op, the forward keeps its tanh inside its own scalar expression and the backward
computes a second one: two of the most expensive element operations of a transformer
block where one would do. This pass replaces every node whose op has a ``decompose``
rule (``OpDef.decompose``: gelu, silu) by the nodes that rule emits, calls to
``graphjit.ops.api`` recorded by a GraphBuilder exactly as the autodiff pass records VJP
rules, placed where the node stood. The rules build their parts with the same calls as
the VJP rules, so the CSE pass after this one merges the forward's tanh with the
backward's and fusion computes it once per element.

It runs after autodiff (the VJP rules differentiate the composite op as a whole) and
before simplify and CSE. A rule computes what the op's eager ``impl`` computes, in the
same order of operations (see the note above ``_gelu`` in graphjit/ops/elementwise.py),
so decomposed programs still match eager mode.
"""
from __future__ import annotations

from graphjit.errors import GraphjitError
from graphjit.ir import GraphBuilder
from graphjit.ops import registry

from .manager import graph_pass
from .rewrite import replace_uses, same_type


@graph_pass("decompose")
def decompose(graph):
    mapping = {}
    nodes = []
    for n in list(graph.nodes):
        if n.op.decompose is None or len(n.outs) != 1:
            nodes.append(n)
            continue
        start = len(graph.nodes)
        with registry.interpreter(GraphBuilder(graph, source=n.source)):
            value = n.op.decompose(*n.inputs, **n.attrs)
        emitted = graph.nodes[start:]
        del graph.nodes[start:]
        if not same_type(value, n.out):
            raise GraphjitError(f"the decomposition of {n.op.name} gave a value of type "
                                f"{value.type} for a result of type {n.out.type}",
                                op=n.op.name, where=n.source or "")
        for m in emitted:
            m.source = n.source
        nodes.extend(emitted)
        mapping[n.out] = value
    graph.nodes = nodes
    replace_uses(graph, mapping)
    decompose.last_stats = {"nodes_decomposed": len(mapping)}
    return graph
