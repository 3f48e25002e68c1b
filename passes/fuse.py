"""Loop fusion: groups of elementwise nodes and reductions over one loop domain become one
``fused`` node, one loop nest, with as many results as the group's values needed outside.

    %0 = pow_scalar(%a, exponent=3) : f32[4M]      %0, %1 = fused(%a, %b, body='
    %1 = mul(%0, %three) : f32[4M]                   t0 = pow_scalar(i0, exponent=3); ...;
    %2 = mul(%b, %b) : f32[4M]                 ->    t4 = sum(t3, dims=[0], keepdim=false);
    %3 = sub(%1, %2) : f32[4M]                       return t3, t4') : f32[4M], f32[]
    %4 = sum(%3, dims=[0], keepdim=false) : f32[]

Fusion is greedy over program order: each candidate node (an elementwise op with a scalar
expression, or a ``sum``/``amax``/``amin``) starts as a group of its own and is merged
- vertically with the groups of the nodes it reads, and
- horizontally with the groups of earlier nodes that read one of its domain-sized inputs
  (the sibling gradients of an elementwise chain read the same saved values),
when the merged group is legal (``_merge_problem``):
- at most ``MAX_MEMBERS`` nodes, and at most ``MAX_ARGUMENTS`` arrays in and out;
- one loop domain: every reduction reads the same shape and reduces the same dims; every
  other member has that shape, the reduced shape (a per-row value such as ``1 / sum``) or is
  0-d, so no member is computed more than a bounded number of times per domain element;
- a layout the code generator handles (``reduction_layout``): the reduced dims are the
  innermost ones ("inner": a row at a time, per-row values available to later passes over
  the row, at most ``MAX_PHASES`` such passes; beside them column sums and a total may
  accumulate across the rows) or the outermost ones ("outer": results
  accumulated across rows; nothing in the group may read them but per-row epilogue steps);
- convex: no path between two members of the merged group through anything outside it, in
  the graph where the other groups are already contracted (so the fused graph stays
  acyclic). Reachability is kept as bitsets of node indices and updated on every merge.
Values of a group that are read outside it, or are graph outputs or updates, become the
fused node's results. ``full`` constants a member reads are copied into its body (a literal
costs nothing to recompute). ``check_convex`` re-verifies a group with networkx in tests.

A graph may name ``fusion_split`` inputs (the forward/backward split of a compiled model
function): nodes that depend on them never share a group with nodes that do not. Host nodes
of a CUDA program (scalar work on CPU values, [Host scalars] in graphjit/ir/host.py) join
no group: the program's driver computes them on the host.

Not here: matrix-multiply epilogues (see passes/epilogue.py).
"""
from __future__ import annotations

import heapq

from graphjit.ir.fused import (FUSED, REDUCTIONS, fusable_step, format_body, kept_shapes,
                               reduction_layout, shape_size, split_dim_sets, step_phases)
from graphjit.errors import ShapeError
from graphjit.ir.graph import Node
from graphjit.ir.host import host_nodes
from graphjit.ir.printer import value_names
from graphjit.shapes import numel

from .manager import graph_pass
from .rewrite import replace_uses

# The most nodes one loop holds: Numba's compile time grows faster than linearly with a
# function's size (its liveness analysis), and a loop with dozens of live values spills
# registers anyway. Real groups (an optimizer update, an activation's forward and backward)
# are far smaller; the cap stops horizontal fusion from gluing a whole graph together.
MAX_MEMBERS = 64
# The most arrays a fused kernel reads and writes. Every argument costs Numba compile time
# twice, in the kernel and in the driver's call form for it, and faster than linearly (an
# njit function of N array arguments: 1.0 s at N=10, 2.6 s at 100). W5's bias gradient, the
# sum of its 50 unrolled steps' parts, was one 54-argument kernel whose call form alone cost
# the looped driver about 3 s (issue 22); capped, it is a chain of kernels of equal bodies that
# share one compiled kernel and one call form.
MAX_ARGUMENTS = 20
# Passes over one row that a fused "inner" reduction group may need (softmax: max, then
# exp-and-sum, then the division; layer norm: mean, variance, normalise).
MAX_PHASES = 4


def _is_constant(node) -> bool:
    return node is not None and node.op.name == "full" and not node.inputs


def fusable(node) -> bool:
    if len(node.outs) != 1 or _is_constant(node) or not fusable_step(node.op):
        return False
    if node.op.name in REDUCTIONS:
        return bool(node.attrs["dims"]) and numel(node.inputs[0].shape) > 0
    return True


class _Group:
    __slots__ = ("members", "mask", "domain", "dimsets")

    def __init__(self, node, bit):
        self.members = [node]
        self.mask = bit
        if node.op.name in REDUCTIONS:
            self.domain = tuple(node.inputs[0].shape)
            self.dimsets = {tuple(sorted(node.attrs["dims"]))}
        else:
            self.domain = tuple(node.out.shape)
            self.dimsets = set()


def _argument_count(members, users, pinned) -> int:
    """How many arrays the fused kernel of ``members`` would read and write: the values
    they read from outside (``full`` constants are copied into the body) and their values
    read outside or pinned as graph outputs."""
    inside = {m.out for m in members}
    member_set = set(members)
    inputs = {v for m in members for v in m.inputs
              if v not in inside and not _is_constant(v.node)}
    return len(inputs) + sum(1 for m in members if _is_result(m, member_set, users, pinned))


def _is_result(member, member_set, users, pinned) -> bool:
    """Whether a group's fused node returns ``member``'s value: read outside the group, or
    a graph output or update."""
    return member.out in pinned or any(u not in member_set for u in users[member.out])


def _merge_problem(a, b, position, users, pinned) -> str | None:
    """Why groups ``a`` and ``b`` cannot be one loop (None: they can)."""
    if len(a.members) + len(b.members) > MAX_MEMBERS:
        return f"the loop would hold more than {MAX_MEMBERS} nodes"
    if _argument_count(a.members + b.members, users, pinned) > MAX_ARGUMENTS:
        return f"the loop would read and write more than {MAX_ARGUMENTS} arrays"
    if a.dimsets and b.dimsets:
        if a.domain != b.domain:
            return (f"the groups reduce different shapes ({list(a.domain)} and "
                    f"{list(b.domain)})")
        domain = a.domain
    elif a.dimsets or b.dimsets:
        domain = a.domain if a.dimsets else b.domain
    else:
        domain = max(a.domain, b.domain, key=shape_size)
    try:
        dims, cols, total = split_dim_sets(domain, a.dimsets | b.dimsets)
    except ShapeError:
        return (f"the groups reduce different dims of {list(domain)} "
                f"({sorted(a.dimsets | b.dimsets)})")
    allowed = {(), domain} | (set(kept_shapes(domain, dims)) if dims is not None else set())
    for across in (cols, total):
        if across is not None:
            allowed |= set(kept_shapes(domain, across))
    for m in a.members + b.members:
        shape = tuple(m.inputs[0].shape) if m.op.name in REDUCTIONS else tuple(m.out.shape)
        if shape not in allowed:
            return (f"shape {list(shape)} is not the loop's {list(domain)}: fusing would "
                    "compute it more than once per element")
    if dims is None:
        return None
    layout = reduction_layout(domain, dims)
    if layout is None:
        return f"reducing dims {list(dims)} of {list(domain)} is neither innermost nor outermost"
    members = sorted(a.members + b.members, key=position.__getitem__)
    inside = {m.out for m in members}
    keep, nokeep = kept_shapes(domain, dims)
    for across, what in ((cols, "column sum"), (total, "total")):
        if across is not None and any(
                v in inside and v.node.op.name in REDUCTIONS
                and tuple(sorted(v.node.attrs["dims"])) == across
                for m in members for v in m.inputs):
            return f"a {what}'s result would be read inside its own loop"
    if cols is not None and any(tuple(m.out.shape) in kept_shapes(domain, cols)
                                and tuple(m.out.shape) not in ((), domain)
                                for m in members if m.op.name not in REDUCTIONS):
        return "a per-column step beside row reductions would run once per row"
    if layout == "outer":
        # Results accumulate across rows, so they are complete only at the end.
        if any(v in inside and v.node.op.name in REDUCTIONS for m in members for v in m.inputs):
            return "an outer reduction's result would be read inside its own loop"
        if any(tuple(m.out.shape) not in ((), domain) for m in members
               if m.op.name not in REDUCTIONS):
            return "a per-column step in an outer reduction's loop would run once per row"
        return None
    for m in members:
        if tuple(m.out.shape) == domain and nokeep not in ((), keep) and any(
                v in inside and tuple(v.shape) == nokeep for v in m.inputs):
            return (f"a step over {list(domain)} broadcasts a reduced {list(nokeep)} value "
                    "along other dims than the reduced ones")
    phases = step_phases(members, domain)
    if max(phases.values(), default=0) >= MAX_PHASES:
        return f"the row would need more than {MAX_PHASES} passes"
    return None


def find_groups(graph, refused=None) -> list:
    """The groups to fuse: lists of member nodes in program order. With a list ``refused``,
    append ``(producer node, consumer node, reason)`` for every fusable producer that was
    left out of its consumer's loop, for the dump tool's report."""
    nodes = graph.nodes
    position = {n: i for i, n in enumerate(nodes)}
    split = _split_dependent(graph)
    # Reachability between nodes as bitsets over node positions, kept for the graph in
    # which every group is contracted to one vertex.
    anc = [0] * len(nodes)
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v.node is not None:
                j = position[v.node]
                anc[i] |= anc[j] | (1 << j)
    desc = [0] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        for v in nodes[i].inputs:
            if v.node is not None:
                j = position[v.node]
                desc[j] |= desc[i] | (1 << i)
    group = {}          # node -> its _Group
    reach = {}          # group -> [ancestors mask, descendants mask] (outside the group)
    problems = {}       # (producer, consumer) -> why they were not merged
    users = graph.users()
    pinned = set(graph.outputs) | {v for _, v in graph.updates}

    def merge(a, b):
        if a is b:
            return None
        if (a.members[0] in split) != (b.members[0] in split):
            return "one is forward work and the other backward work of a split program"
        anc_a, desc_a = reach[a]
        anc_b, desc_b = reach[b]
        both = a.mask | b.mask
        if (desc_a & anc_b) & ~both or (desc_b & anc_a) & ~both:
            return "a path between them leaves the group (fusing would make a cycle)"
        why = _merge_problem(a, b, position, users, pinned)
        if why is not None:
            return why
        m_anc, m_desc = (anc_a | anc_b) & ~both, (desc_a | desc_b) & ~both
        a.members += b.members
        a.mask = both
        if b.dimsets:
            a.domain = b.domain
        elif not a.dimsets:
            a.domain = max(a.domain, b.domain, key=shape_size)
        a.dimsets |= b.dimsets
        for n in b.members:
            group[n] = a
        del reach[b]
        reach[a] = [m_anc, m_desc]
        for g, (g_anc, g_desc) in reach.items():
            if g is not a:
                if g_anc & both:
                    reach[g][0] = (g_anc | m_anc | both) & ~g.mask
                if g_desc & both:
                    reach[g][1] = (g_desc | m_desc | both) & ~g.mask
        return None

    on_host = host_nodes(graph)
    for i, n in enumerate(nodes):
        if not fusable(n) or n in on_host:
            continue
        g = group[n] = _Group(n, 1 << i)
        reach[g] = [anc[i], desc[i]]
        for v in n.inputs:
            p = v.node
            if p in group:
                why = merge(group[p], group[n])
                if why is not None:
                    problems.setdefault((p, n), why)
        # Horizontal merges only over a shared input as big as the loop: a shared small
        # operand (a bias row) saves nothing, and merging on one put the bias adds of all
        # 50 unrolled RNN steps into one loop of 100 arrays, which LLVM left scalar (its
        # runtime alias checks give up): 381 us of W5's ~1.7 ms.
        size = numel(n.inputs[0].shape) if n.op.name in REDUCTIONS else numel(n.out.shape)
        for v in n.inputs:
            if numel(v.shape) <= 1 or numel(v.shape) < size or _is_constant(v.node):
                continue
            for u in users[v]:
                if u is not n and u in group and position[u] < i:
                    merge(group[u], group[n])

    groups = []
    for g in {id(g): g for g in group.values()}.values():
        members = sorted(g.members, key=position.__getitem__)
        constants = {v.node for m in members for v in m.inputs if _is_constant(v.node)}
        if len(members) + len(constants) < 2:
            continue
        if len(members) == 1 and _unfusable_alone(members[0]):
            continue  # (a group of one never went through _merge_problem's checks)
        groups.append(members)
    if refused is not None:
        for (p, n), why in problems.items():
            if group[p] is not group[n]:
                refused.append((p, n, why))
    return sorted(groups, key=lambda g: position[g[-1]])


def _unfusable_alone(node) -> bool:
    """A reduction the code generator cannot emit as a fused loop even on its own: its
    reduced dims are neither the innermost nor the outermost (a sum over the middle dim of
    a constant was fused with the constant and compiled to a wrong loop)."""
    if node.op.name not in REDUCTIONS:
        return False
    domain = tuple(node.inputs[0].shape)
    dims = split_dim_sets(domain, {tuple(sorted(node.attrs["dims"]))})[0]
    return dims is not None and reduction_layout(domain, dims) is None


def _split_dependent(graph) -> set:
    """The nodes that depend on the graph's ``fusion_split`` inputs."""
    split = set(graph.fusion_split)
    dependent = set()
    for n in graph.nodes:
        if any(v in split for v in n.inputs):
            split.update(n.outs)
            dependent.add(n)
    return dependent


def _fused_node(members, users, pinned):
    """The fused node computing ``members`` (program order); returns it and the member
    values it returns, in the order of its results."""
    inputs, names, steps, results = [], {}, [], []
    inside = {m.out for m in members}
    member_set = set(members)
    constants = {}
    for m in members:
        operands = []
        for v in m.inputs:
            if v in inside:
                operands.append(names[v])
            elif _is_constant(v.node):
                if v not in constants:
                    constants[v] = f"t{len(steps)}"
                    steps.append((v.node.op.name, [], v.node.attrs))
                operands.append(constants[v])
            else:
                if v not in inputs:
                    inputs.append(v)
                operands.append(f"i{inputs.index(v)}")
        names[m.out] = f"t{len(steps)}"
        steps.append((m.op.name, operands, m.attrs))
        if _is_result(m, member_set, users, pinned):
            results.append(m.out)
    indices = [int(names[v][1:]) for v in results]
    types = [v.type for v in results]
    node = Node(FUSED, inputs, {"body": format_body(steps, indices)},
                types[0] if len(types) == 1 else types, members[-1].source)
    return node, results


@graph_pass("fuse")
def fuse(graph):
    refused = []
    names = value_names(graph)
    groups = find_groups(graph, refused)
    users = graph.users()
    pinned = set(graph.outputs) | {v for _, v in graph.updates}
    position = {n: i for i, n in enumerate(graph.nodes)}
    replacement, mapping = {}, {}
    for members in groups:
        node, results = _fused_node(members, users, pinned)
        mapping.update(zip(results, node.outs))
        for m in members:
            replacement[m] = node
    graph.nodes = _schedule(graph.nodes, replacement, position)
    replace_uses(graph, mapping)
    fuse.last_stats = {
        "groups": len(groups), "nodes_fused": sum(len(g) for g in groups),
        "multi_result": sum(1 for g in groups if len({id(replacement[m]) for m in g}) == 1
                            and len(replacement[g[0]].outs) > 1),
        # Value names are those of the graph fuse was given (the stage before it).
        "refused": [(f"%{names[p.out]} = {p.op.name}", f"%{names[r.out]}", why)
                    for p, r, why in refused]}
    return graph


def _schedule(nodes, replacement, position):
    """The nodes with every group replaced by its fused node, in a topological order that
    keeps the original order where it can (each vertex ordered by its first member)."""
    vertex = {n: replacement.get(n, n) for n in nodes}
    first = {}
    for n in nodes:
        first.setdefault(vertex[n], position[n])
    preds = {v: set() for v in first}
    for n in nodes:
        for inp in n.inputs:
            if inp.node is not None and vertex[inp.node] is not vertex[n]:
                preds[vertex[n]].add(vertex[inp.node])
    succs = {v: [] for v in first}
    for v, ps in preds.items():
        for p in ps:
            succs[p].append(v)
    waiting = {v: len(ps) for v, ps in preds.items()}
    heap = [(first[v], id(v), v) for v, k in waiting.items() if k == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, _, v = heapq.heappop(heap)
        order.append(v)
        for s in succs[v]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(heap, (first[s], id(s), s))
    if len(order) != len(first):
        raise AssertionError("fusion made a cycle: a group was not convex")
    return order


def check_convex(graph, members) -> bool:
    """Whether no path between two of ``members`` (nodes of ``graph`` before fusion) leaves
    the group: the legality condition of a fused group, checked with networkx (imported
    here: importing networkx took 0.08-0.13 s of a warm start, and the pass needs none)."""
    import networkx as nx
    g = graph.to_networkx()
    names = value_names(graph)
    inside = {names[m.out] for m in members}
    reached_outside = set()
    for m in inside:
        for succ in g.successors(m):
            if succ not in inside:
                reached_outside |= {succ} | nx.descendants(g, succ)
    return not (reached_outside & inside)
