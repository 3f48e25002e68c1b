"""The buffers a program's driver takes from its caller, from the graph's buffer plan.

The plan (graphjit/ir/buffers.py: owners, updates that may be computed in place, workspace
slots) is the target's whole memory layout but for two choices made when a program is
generated: whether updates are computed in place at all (``inplace``: compiled steps do;
a one-off program such as a compiled backward does not), and which of the legal ones a
target refuses (``refuse``: see the CUDA target's). Both targets' drivers then take, after
the graph's inputs, one buffer per result a node computes (from the program's result
pool), then the workspace.
"""
from __future__ import annotations

from ...ir.buffers import plan_of
from ...shapes import numel


class ProgramBuffers:
    """``in_place``: ``{value: target}`` of the updates computed in their targets' buffers;
    ``results``: the values the driver returns (outputs, then the other updates);
    ``result_buffers``: the node values whose buffers hold them, in that order, once each;
    ``temps``, ``slot_of``, ``slots``: the temporaries and their workspace slots;
    ``owner``: value -> the value whose buffer holds it; ``host``: the host values."""

    def __init__(self, graph, inplace: bool, refuse=None):
        plan = plan_of(graph)
        self.owner = plan.owner
        self.host = plan.host
        in_place = dict(plan.in_place) if inplace else {}
        if refuse is not None and in_place:
            refused = refuse(in_place)
            in_place = {v: t for v, t in in_place.items() if t not in refused}
        self.in_place = in_place
        self.results = list(graph.outputs) + [v for t, v in graph.updates
                                              if in_place.get(v) is not t]
        self.result_buffers = []
        for v in self.results:
            o = self.owner[v]
            if o.node is not None and o not in self.result_buffers and v not in self.host:
                self.result_buffers.append(o)
        self.temps, self.slot_of, self.slots = plan.temps, plan.slot_of, plan.slots
        self._graph = graph

    def in_place_positions(self) -> dict:
        """Update position -> index of its target among the graph's inputs, for the updates
        computed in place."""
        inputs = self._graph.inputs
        return {j: inputs.index(t) for j, (t, v) in enumerate(self._graph.updates)
                if self.in_place.get(v) is t}

    def result_types(self) -> list:
        """``(elements, dtype)`` per result buffer."""
        return [(numel(v.shape), v.dtype) for v in self.result_buffers]

    def slot_types(self) -> list:
        """``(elements, dtype)`` per workspace slot."""
        return [(n, dtype) for dtype, n in self.slots]
