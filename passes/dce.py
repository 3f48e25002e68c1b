"""Dead-code elimination: drop every node that no output and no update needs.

Sound by construction: nodes are pure and state changes are explicit ``update`` entries
(DESIGN.md section 4), so a node whose value nobody reads has no effect at all.
Unused ``const`` inputs go too (they are data baked into the graph, not part of the
caller's signature); inputs of every other role stay, so the signature never changes.
"""
from __future__ import annotations

from .manager import graph_pass


def live_values(graph) -> set:
    """Values the outputs and updates need, directly or through other nodes."""
    live = set(graph.outputs)
    for target, value in graph.updates:
        live.update((target, value))
    for n in reversed(graph.nodes):
        if any(v in live for v in n.outs):
            live.update(n.inputs)
    return live


@graph_pass("dce")
def dce(graph):
    live = live_values(graph)
    removed = len(graph.nodes)
    graph.nodes = [n for n in graph.nodes if any(v in live for v in n.outs)]
    removed -= len(graph.nodes)
    dead_consts = [v for v in graph.inputs if v.role == "const" and v not in live]
    if dead_consts:
        graph.inputs = [v for v in graph.inputs if v not in dead_consts]
        for v in dead_consts:
            graph.constants.pop(v, None)
    dce.last_stats = {"nodes_removed": removed, "consts_removed": len(dead_consts)}
    return graph
