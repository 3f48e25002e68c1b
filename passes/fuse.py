"""Elementwise fusion: a chain or tree of elementwise nodes becomes one ``fused`` node, one loop.

    %0 = mul(%a, %a) : f32[4M]                %2 = fused(%a, %b, body='t0 = mul(i0, i0);
    %1 = mul(%0, %a) : f32[4M]        ->            t1 = mul(t0, i0); t2 = mul(t1, i1)') : f32[4M]
    %2 = mul(%1, %b) : f32[4M]

Groups grow from a root (visited last to first) into its producers. A producer joins when
- it is elementwise with a scalar expression (see [Fused nodes] in graphjit/ir/fused.py),
- every reader of its value is already in the group, and the value is no graph output or
  update: nothing outside needs it, so it needs no buffer of its own, and
- its shape is the root's (or it is 0-d): every member runs once per output element, so
  fusion never recomputes work unboundedly. Inputs of the group may broadcast.
A small expression (``MAX_COPIED_NODES``) read by a few loops (``MAX_COPIES``) is instead
copied into each of them, a bounded recomputation that saves its buffer.
Such a group is convex by construction: every member but the root is read only inside the
group, so a path that leaves the group can only start at the root, and cannot come back to
a member (members are ancestors of the root). ``check_convex`` verifies that with networkx
in tests. ``full`` constants a member reads are copied into its body (a literal costs
nothing to recompute); the original node stays for its other readers, and DCE drops it
when none is left.

Not yet: several outputs per loop (horizontal fusion of sibling gradients), reductions with
their elementwise producers and consumers, GEMM epilogues.
"""
from __future__ import annotations

import networkx as nx

from graphjit.ir.fused import FUSED, format_body
from graphjit.ir.graph import Node
from graphjit.ir.printer import value_names

from .manager import graph_pass
from .rewrite import replace_uses


def fusable(node) -> bool:
    return node.op.kind == "elementwise" and node.op.scalar is not None


def _is_constant(node) -> bool:
    return node is not None and node.op.name == "full" and not node.inputs


# Bounded recomputation: a small elementwise expression read by several loops (SGD's
# ``g + weight_decay * p``, read by the momentum update and Nesterov's step) is copied into
# each of them instead of getting a buffer of its own: a few extra flops per element cost far
# less than writing and reading the buffer, and a step then allocates nothing parameter-sized.
MAX_COPIED_NODES = 3
MAX_COPIES = 4
# Only arithmetic a few instructions long is copied; exp, log, tanh and friends are not.
CHEAP_OPS = frozenset({"add", "sub", "mul", "neg", "cast", "abs", "relu", "maximum", "minimum",
                       "where", "clamp", "sign", "eq", "ne", "lt", "le", "gt", "ge",
                       "logical_and", "logical_or", "logical_not", "leaky_relu"})


def _cheap(n, users) -> bool:
    return (fusable(n) and not _is_constant(n) and n.op.name in CHEAP_OPS
            and len(users[n.out]) <= MAX_COPIES)


def _copyable(p, users, shape, taken):
    """The nodes to copy into a loop of ``shape`` to recompute ``p`` there: ``p`` and, up to
    MAX_COPIED_NODES in all, the cheap producers it reads; or None if ``p`` is not cheap."""
    if not _cheap(p, users):
        return None
    sub, frontier = [p], [p]
    while frontier and len(sub) < MAX_COPIED_NODES:
        n = frontier.pop(0)
        for v in n.inputs:
            q = v.node
            if q is None or q in sub or q in taken or not _cheap(q, users):
                continue
            if tuple(v.shape) not in ((), shape) or len(sub) >= MAX_COPIED_NODES:
                continue
            sub.append(q)
            frontier.append(q)
    return set(sub)


def find_groups(graph, refused=None, copies=None) -> list:
    """The groups to fuse: lists of member nodes in program order, the root last. With a
    list ``refused``, append ``(producer node, root node, reason)`` for every elementwise
    producer that was left out of a group, for the dump tool's report; with a dict
    ``copies``, record ``root -> nodes recomputed inside its loop`` (see MAX_COPIED_NODES)."""
    users = graph.users()
    pinned = set(graph.outputs) | {v for _, v in graph.updates}
    taken = set()
    needed = set()  # values copied loops read: they must keep their nodes
    groups = []
    order = {n: i for i, n in enumerate(graph.nodes)}
    for root in reversed(graph.nodes):
        if root in taken or not fusable(root) or _is_constant(root):
            continue
        members, copied = {root}, set()
        shape = tuple(root.out.shape)
        frontier = [root]
        while frontier:
            m = frontier.pop()
            for v in m.inputs:
                p = v.node
                if p is None or p in members or p in copied or p in taken or not fusable(p) \
                        or _is_constant(p):
                    continue
                if v in pinned or v in needed or tuple(v.shape) not in ((), shape):
                    continue
                # (A producer refused because p was not in yet is one of p's inputs, so it
                # is looked at again when p leaves the frontier.)
                if all(u in members for u in users[v]):
                    members.add(p)
                    frontier.append(p)
                elif copies is not None:
                    sub = _copyable(p, users, shape, taken)
                    if sub is not None:
                        copied |= sub
        copied -= members  # a producer copied early may have joined as a member after
        inside = members | copied
        constants = {v.node for m in inside for v in m.inputs if _is_constant(v.node)}
        if refused is not None:
            refused.extend(_refusals(members, root, users, pinned, taken | copied, needed))
        if len(inside) + len(constants) < 2:
            continue
        taken.update(members)
        for n in copied:
            needed.update(v for v in n.inputs if v.node not in inside)
        if copies is not None:
            copies[root] = copied
        groups.append(sorted(members | constants, key=order.__getitem__))
    return groups


def _refusals(members, root, users, pinned, taken, needed):
    for m in members:
        for v in m.inputs:
            p = v.node
            if p is None or p in members or p in taken or not fusable(p) or _is_constant(p):
                continue
            if v in pinned:
                why = "it is a graph output or an update, so it needs its own buffer"
            elif v in needed:
                why = "a loop that recomputes an expression over it reads it, so it keeps its node"
            elif tuple(v.shape) not in ((), tuple(root.out.shape)):
                why = (f"its shape {list(v.shape)} is not the loop's {list(root.out.shape)}: "
                       "fusing it would compute it more than once per element")
            else:
                outside = next(u for u in users[v] if u not in members)
                why = f"it is also read outside the group (by a {outside.op.name} node)"
            yield p, root, why


def _fused_node(members, root):
    """The fused node computing ``members`` (program order, ``root`` last)."""
    inputs, names = [], {}
    steps = []
    inside = {m.out for m in members}
    for k, m in enumerate(members):
        operands = []
        for v in m.inputs:
            if v in inside:
                operands.append(names[v])
            else:
                if v not in inputs:
                    inputs.append(v)
                operands.append(f"i{inputs.index(v)}")
        steps.append((m.op.name, operands, m.attrs))
        names[m.out] = f"t{k}"
    return Node(FUSED, inputs, {"body": format_body(steps)}, root.out.type, root.source)


@graph_pass("fuse")
def fuse(graph):
    refused, copies = [], {}
    names = value_names(graph)
    groups = find_groups(graph, refused, copies)
    order = {n: i for i, n in enumerate(graph.nodes)}
    by_root = {g[-1]: sorted(set(g) | copies[g[-1]], key=order.__getitem__) for g in groups}
    absorbed = {m for g in groups for m in g[:-1] if not _is_constant(m)}
    nodes, mapping = [], {}
    for n in graph.nodes:
        if n in absorbed:
            continue
        if n in by_root:
            fused = _fused_node(by_root[n], n)
            mapping[n.out] = fused.out
            n = fused
        nodes.append(n)
    graph.nodes = nodes
    replace_uses(graph, mapping)
    fuse.last_stats = {
        "groups": len(groups), "nodes_fused": sum(len(g) for g in groups),
        "nodes_copied": sum(len(c) for c in copies.values()),
        # Value names are those of the graph fuse was given (the stage before it).
        "refused": [(f"%{names[p.out]} = {p.op.name}", f"%{names[r.out]}", why)
                    for p, r, why in refused]}
    return graph


def check_convex(graph, members) -> bool:
    """Whether no path between two of ``members`` (nodes of ``graph`` before fusion) leaves
    the group: the legality condition of a fused group, checked with networkx."""
    g = graph.to_networkx()
    names = value_names(graph)
    inside = {names[m.out] for m in members}
    reached_outside = set()
    for m in inside:
        for succ in g.successors(m):
            if succ not in inside:
                reached_outside |= {succ} | nx.descendants(g, succ)
    return not (reached_outside & inside)
