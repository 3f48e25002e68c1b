"""Buffer liveness: when each value's buffer is needed, and the peak bytes a program holds.

This is the analysis half of memory planning (buffer reuse and in-place updates build on
it). A node's result needs a buffer from the node that computes it to its last reader; a
value that is a graph output or an update stays alive to the end. Values that share a
buffer without copying (``reshape``, ``detach``: see [Flat buffers] in
graphjit/backend/cpu/kernel.py) extend the life of the buffer they view. Graph inputs are the
caller's arrays and are not counted.
"""
from __future__ import annotations

from graphjit.shapes import numel

# Ops whose result is their input's buffer, unchanged (the CPU backend's aliases).
ALIASING_OPS = ("reshape", "detach")


def buffer_owner(graph) -> dict:
    """Each value -> the value whose buffer holds it (itself, or what a reshape views)."""
    owner = {v: v for v in graph.inputs}
    for n in graph.nodes:
        for v in n.outs:
            owner[v] = owner[n.inputs[0]] if n.op.name in ALIASING_OPS else v
    return owner


def live_ranges(graph) -> dict:
    """Buffer-owning node value -> (index of the defining node, index of its last use);
    ``len(graph.nodes)`` as the last use means "alive to the end" (a result)."""
    owner = buffer_owner(graph)
    ranges = {}
    for i, n in enumerate(graph.nodes):
        for v in n.outs:
            if owner[v] is v:
                ranges[v] = [i, i]
        for v in n.inputs:
            o = owner[v]
            if o in ranges:
                ranges[o][1] = max(ranges[o][1], i)
    end = len(graph.nodes)
    for v in list(graph.outputs) + [v for _, v in graph.updates]:
        if owner[v] in ranges:
            ranges[owner[v]][1] = end
    return {v: tuple(r) for v, r in ranges.items()}


def peak_bytes(graph) -> int:
    """The most bytes of node buffers alive at once, freeing each after its last use."""
    ranges = live_ranges(graph)
    size = {v: numel(v.shape) * v.dtype.itemsize for v in ranges}
    live = peak = 0
    frees: dict = {}
    for i in range(len(graph.nodes)):
        for v in graph.nodes[i].outs:
            if v in ranges:
                live += size[v]
                frees.setdefault(ranges[v][1], []).append(v)
        peak = max(peak, live)
        for v in frees.pop(i, ()):
            live -= size[v]
    return peak
