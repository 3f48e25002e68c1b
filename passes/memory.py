"""Memory planning: the last pass of every pipeline records the graph's buffer plan on it.

``memory`` leaves the graph's nodes as they are and sets ``graph.buffer_plan``: which
buffer holds each value (flat views share their input's), which updates may be computed in
their targets' buffers, and which workspace slot each temporary takes (see [Buffer plan],
[Flat buffers] and [In-place updates] in graphjit/ir/buffers.py, where the planning code is
so that the backends, which may not import passes/, plan the graphs they are given
directly with the same functions). The code generators read the recorded plan; a pass
that changes the graph afterwards makes it stale, and the backend then plans again.

Its statistics (``last_stats``, kept with the other passes' by the pass manager): the peak
bytes of node buffers alive at once, the workspace the slots take, and the targets of the
updates that may be computed in place.
"""
from __future__ import annotations

from graphjit.ir.buffers import peak_bytes, plan_buffers

from .manager import graph_pass


@graph_pass("memory")
def memory(graph):
    plan = plan_buffers(graph)
    graph.buffer_plan = plan
    memory.last_stats = {
        "peak_bytes": peak_bytes(graph),
        "workspace_bytes": sum(n * dtype.itemsize for dtype, n in plan.slots),
        "slots": len(plan.slots),
        "temporaries": len(plan.temps),
        "in_place": sorted(t.name for t in set(plan.in_place.values())),
    }
    return graph

