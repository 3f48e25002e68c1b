"""A ``networkx.DiGraph`` view of a Graph, for reachability, cycle checks and drawing.

Vertices are the printed value names (``"x"``, ``"0"``, ...) with attributes ``op`` (None
for inputs), ``type`` and ``role``; an edge ``a -> b`` means node ``b`` reads value ``a``. Each result of a multi-result node
is a vertex with the node's inputs as predecessors.
"""
from __future__ import annotations

import networkx

from .printer import value_names


def to_networkx(graph) -> "networkx.DiGraph":
    names = value_names(graph)
    g = networkx.DiGraph(name=graph.name)
    for v in graph.inputs:
        g.add_node(names[v], op=None, type=str(v.type), role=v.role)
    for n in graph.nodes:
        for out in n.outs:
            g.add_node(names[out], op=n.op.name, type=str(out.type), role=None)
            for v in n.inputs:
                g.add_edge(names[v], names[out])
    return g
