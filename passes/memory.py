"""Memory planning: buffer liveness, buffer reuse, and the peak bytes a program holds.

A node's result needs a buffer from the node that computes it to its last reader; a
value that is a graph output or an update stays alive to the end. Values that share a
buffer without copying (``reshape``, ``detach``: see [Flat buffers] in
graphjit/backend/cpu/kernel.py) extend the life of the buffer they view. Graph inputs are the
caller's arrays and are not counted.

# NOTE: [Buffer plan]
``plan_buffers`` assigns the program's temporaries (the buffers no result lives in) to
workspace slots: a value takes a slot whose previous holder's last use came strictly before
the value's node (a kernel never writes a buffer it is reading), of its dtype, best fit
by size (a slot grows to its largest holder). The CPU backend allocates the slots once per
program and passes them to every call, so a step allocates no temporaries at all; results
come from a pool that reuses last call's array when the caller has let go of it (see
CompiledProgram in backend/cpu/program.py). In-place updates (codegen's
``inplace_updates``) need no buffer of their own.
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


def live_ranges(graph, owner=None) -> dict:
    """Buffer-owning node value -> (index of the defining node, index of its last use);
    ``len(graph.nodes)`` as the last use means "alive to the end" (a result). ``owner``:
    value -> the value owning its buffer (default ``buffer_owner``)."""
    owner = owner or buffer_owner(graph)
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


def plan_buffers(graph, temps, owner=None):
    """``(slot of each value in temps, [(dtype, elements) per slot])``: see [Buffer plan].
    ``temps`` are buffer-owning node values that no result lives in."""
    ranges = live_ranges(graph, owner)
    temps = set(temps)
    slot_of, slots = {}, []
    busy_until = []             # per slot: index of its current holder's last use
    for i, n in enumerate(graph.nodes):
        for v in n.outs:
            if v not in temps:
                continue
            need = numel(v.shape)
            free = [k for k, (dt, _) in enumerate(slots)
                    if dt is v.dtype and busy_until[k] < i]
            fits = [k for k in free if slots[k][1] >= need]
            if fits:
                k = min(fits, key=lambda k: slots[k][1])
            elif free:
                k = max(free, key=lambda k: slots[k][1])
                slots[k] = (v.dtype, need)
            else:
                k = len(slots)
                slots.append((v.dtype, need))
                busy_until.append(-1)
            slot_of[v] = k
            busy_until[k] = ranges[v][1]
    return slot_of, slots
