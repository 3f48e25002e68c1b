"""Reverse-mode autodiff on the IR: expand every ``grad`` request into a backward graph.

``%g = grad(%y, %x)`` (seed = ones) or ``grad(%y, %x, %seed)`` asks for
d(sum(y * seed))/dx (graphjit/ops/grad.py). The pass replaces every such node by nodes
computed from the VJP rules of the forward ops (``OpDef.vjp``), called under a
``GraphBuilder`` so that the rules' ``graphjit.ops.api`` calls append IR nodes.

1. Requests are grouped by ``(y, seed)``: one backward sweep serves every ``x`` of a
   group. Groups are expanded in the order of their first request in the graph.
2. Only nodes on a path from some requested ``x`` to ``y`` are differentiated. A path
   runs through floating point values and through ops that have a VJP: ops with
   ``vjp=None`` (comparisons, ``detach``, ``argmax``, ``full``, ``iota``) and integer or
   bool values stop it, and a VJP entry of ``None`` means "no gradient for that input".
   So a frozen parameter (no request) or an integer input gets no gradient work. A VJP
   rule computes the gradients of all its inputs; the ones nobody asked for are pruned
   before the backward nodes are placed, so not even a dead node is left for them.
3. A value read by several nodes gets the sum of their contributions (fan-out), added in
   reverse program order.
4. The seed defaults to ``full(1)`` of y's shape; an ``x`` that ``y`` does not depend on
   gets ``full(0)`` of its own shape.
5. The backward nodes go where the group's first request stood. That keeps the graph
   topologically ordered: everything a sweep reads (y, the seed, the forward values the
   VJP rules use, every x that y depends on) is an ancestor of that request. Every use of
   each request's value (nodes, outputs, updates) then reads the computed gradient and the
   ``grad`` nodes are gone.
6. Each emitted node carries the ``source`` of the forward node whose VJP emitted it (the
   seed and zero fills carry the request's), so an error in the backward graph points at
   the user's forward line.

Higher-order requests (a ``y`` that depends on the value of another ``grad`` node) are
supported: that other request comes earlier in the graph, so it has been expanded into
ordinary ops (all of which have VJP rules) by the time the outer sweep runs.
"""
from __future__ import annotations

import contextlib

from graphjit.errors import GraphjitError
from graphjit.ir import GraphBuilder
from graphjit.ops import api, registry

from .manager import graph_pass
from .rewrite import replace_uses, same_type


class AutodiffError(GraphjitError):
    """A gradient request that cannot be expanded (a VJP rule broke its contract)."""


def _floating(v) -> bool:
    return v.dtype.is_floating_point


def _path_values(nodes, y, xs) -> set:
    """Values on a differentiable path from some x to y (the xs and y included)."""
    active = {x for x in xs if _floating(x)}
    for n in nodes:
        if n.op.vjp is not None and _floating(n.out) and any(v in active for v in n.inputs):
            active.add(n.out)
    if y not in active:
        return set()
    needed = {y}
    for n in reversed(nodes):
        if n.out in needed:
            needed.update(n.inputs)
    return active & needed


class _Emitter:
    """Appends nodes to the graph through a GraphBuilder, stamping them with a source."""

    def __init__(self, graph, source):
        self.graph = graph
        self.builder = GraphBuilder(graph, source=source)

    @contextlib.contextmanager
    def source(self, source):
        start = len(self.graph.nodes)
        self.builder.source = source
        yield
        # GraphBuilder falls back to the caller's frame when source is None; keep None.
        for n in self.graph.nodes[start:]:
            n.source = source

    def vjp(self, node, g):
        """Call the node's VJP rule; its api calls append nodes to the graph."""
        grads = node.op.vjp(g, node.out, *node.inputs, **node.attrs)
        if not isinstance(grads, (tuple, list)) or len(grads) != len(node.inputs):
            raise AutodiffError(f"the vjp of {node.op.name} returned {grads!r}; it must return "
                                f"one entry per input ({len(node.inputs)})", op=node.op.name,
                                where=node.source or "")
        return grads


def _backward(graph, em, y, seed, xs, source):
    """Append the backward sweep for one group; return {x: gradient value}."""
    on_path = _path_values(graph.nodes, y, xs)
    # Only nodes with an input on the path need their VJP (an x's own producer does not).
    sweep = [n for n in graph.nodes if n.out in on_path and any(v in on_path for v in n.inputs)]
    with em.source(source):
        if seed is None:
            seed = api.full(y.shape, 1, y.dtype)
        elif seed.dtype is not y.dtype:
            seed = api.cast(seed, y.dtype)
    adjoint = {y: seed}
    for n in reversed(sweep):
        g = adjoint.get(n.out)
        if g is None:
            continue  # every reader's VJP said "no gradient" for this value
        with em.source(n.source):
            for v, gv in zip(n.inputs, em.vjp(n, g)):
                if gv is None or v not in on_path:
                    continue
                if not same_type(gv, v):
                    raise AutodiffError(f"the vjp of {n.op.name} gave a gradient of type {gv.type} "
                                        f"for an input of type {v.type}", op=n.op.name,
                                        where=n.source or "")
                adjoint[v] = gv if v not in adjoint else api.add(adjoint[v], gv)
    result = {}
    with em.source(source):
        for x in xs:
            if x not in result:
                result[x] = adjoint[x] if x in adjoint else api.zeros(x.shape, x.dtype)
    return result


def _needed_emitted(emitted, results) -> list:
    """The emitted nodes that the results need (VJPs also emit unrequested gradients)."""
    needed = set(results)
    keep = []
    for n in reversed(emitted):
        if n.out in needed:
            needed.update(n.inputs)
            keep.append(n)
    keep.reverse()
    return keep


def _expand_group(graph, requests) -> dict:
    """Expand one (y, seed) group in place; return {request value: gradient value}."""
    first = requests[0]
    y = first.inputs[0]
    seed = first.inputs[2] if len(first.inputs) == 3 else None
    xs = [r.inputs[1] for r in requests]
    start = len(graph.nodes)
    em = _Emitter(graph, first.source)
    with registry.interpreter(em.builder):
        grads = _backward(graph, em, y, seed, xs, first.source)
    emitted = graph.nodes[start:]
    del graph.nodes[start:]
    keep = _needed_emitted(emitted, list(grads.values()))
    at = graph.nodes.index(first)
    request_set = set(requests)
    graph.nodes[at:] = keep + [n for n in graph.nodes[at:] if n not in request_set]
    return {r.out: grads[r.inputs[1]] for r in requests}


@graph_pass("autodiff")
def autodiff(graph):
    expanded = 0
    while True:
        requests = [n for n in graph.nodes if n.op.name == "grad"]
        if not requests:
            break
        first = requests[0]
        key = tuple(first.inputs[0:1] + first.inputs[2:3])
        group = [r for r in requests if tuple(r.inputs[0:1] + r.inputs[2:3]) == key]
        mapping = _expand_group(graph, group)
        replace_uses(graph, mapping)
        expanded += len(group)
    autodiff.last_stats = {"requests_expanded": expanded}
    return graph
