"""The buffer plan of a graph: which buffer holds each value, how long each buffer lives,
which updates are computed in their targets' buffers, and which workspace slot each
temporary takes. Both code generators (CPU and CUDA) compile from it; ``passes/memory``
records it on the graph as the last pass of every pipeline, and a backend given a graph
that never went through the pipeline (an eager CUDA op, one half of a forward/backward
split, a test's hand-written graph) plans it with the same function (``plan_of``).

It lives in the IR layer, beside ``host.py`` and ``fused.py``, for the reason they do:
``passes/`` and the backends both need it and may not import each other (DESIGN.md
section 6, STYLE.md section 7).

# NOTE: [Flat buffers]
Every buffer of a compiled program, on either target, is a 1-D C-contiguous array holding
its value in C order; shapes exist only in the generated index arithmetic, where they are
constants. So an op whose result is its input's elements in the same order needs neither a
buffer nor a kernel: its result *is* its input's buffer. Those ops are ``FLAT_VIEWS``:
``reshape`` and ``detach``. (``OpDef.view`` says more: NumPy may return a view for
``permute``, ``expand`` and ``slice`` too, but their elements are not in their input's
order, so compiled programs copy them.) Kernels never allocate; the driver gives every
kernel its output buffers (empty, zeroed, or filled with a constant).

# NOTE: [Buffer plan]
A node's result needs a buffer from the node that computes it to its last reader; a value
that is a graph output or an update stays alive to the end. A flat view extends the life
of the buffer it views. Graph inputs are the caller's arrays and are not counted.

The program's temporaries (the node buffers no result lives in) share workspace slots: a
value takes a slot whose previous holder's last use came strictly before the value's node
(a kernel never writes a buffer it is reading), of its dtype, best fit by size (a slot
grows to its largest holder). A program allocates its slots once and passes them to every
call, so a step allocates no temporaries at all; results come from a pool (the CPU program
reuses last call's array once the caller has let go of it, see backend/cpu/program.py).
Updates computed in place ([In-place updates]) need no buffer of their own. Host values
(the 0-d CPU scalars of a CUDA program, see [Host scalars] in host.py) are no device
buffers: they take no slot and are never computed in place.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..shapes import numel
from .fused import has_reduction
from .host import host_values

# Ops whose result is their input's buffer, unchanged: see [Flat buffers].
FLAT_VIEWS = frozenset({"reshape", "detach"})


def aliases_input(op) -> bool:
    """Whether ``op``'s result is its first input's buffer (no buffer, no kernel)."""
    return op.name in FLAT_VIEWS


def buffer_owner(graph) -> dict:
    """Each value -> the value whose buffer holds it (itself, or what a flat view views)."""
    owner = {v: v for v in graph.inputs}
    for n in graph.nodes:
        for v in n.outs:
            owner[v] = owner[n.inputs[0]] if aliases_input(n.op) else v
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


def assign_slots(graph, temps, owner=None):
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


def inplace_updates(graph, owner) -> dict:
    """``{value: target input}`` for the updates whose new value can be computed straight
    into the target's own buffer.

    # NOTE: [In-place updates]
    ``update %p <- %u`` may be computed in place when ``%u`` is a node's own result (not a
    view of another buffer; or a reshape of one when nothing reads ``%p``) of ``%p``'s shape
    and dtype, no other result is ``%p``'s old value, no node after ``%u``'s node ``n``
    reads it nor can raise (index bounds checks: a program that fails has then written
    nothing in place), and either
    - no node reads ``%p``'s old value at all: any kernel may write its result there (a
      gradient after ``zero_grad()``, made by a GEMM: no copy into ``.grad``), or
    - ``n`` is an elementwise or fused node without a reduction: its loop reads every
      buffer of ``%p``'s shape at the index it writes, so each element is read before it is
      overwritten (a fused node with a reduction reads rows more than once). Optimizer
      updates (``p``, ``exp_avg``, ``momentum_buffer``...) are all of this form, so a step
      allocates nothing proportional to the parameters for them.
    A multi-result node may compute several updates in place. A code generator may take
    fewer (the CUDA target: see ``cuda/codegen.py``), never more.
    """
    position = {n: i for i, n in enumerate(graph.nodes)}
    results = list(graph.outputs) + [v for _, v in graph.updates]
    read = {owner[v] for m in graph.nodes for v in m.inputs}  # buffers some node reads
    found = {}
    for target, value in graph.updates:
        if tuple(value.shape) != tuple(target.shape) or value.dtype is not target.dtype:
            continue
        unread = target not in read
        # A free reshape of a node's result (a bias gradient summed with keepdim): that
        # result, in the target's buffer, when nothing reads the target.
        src = owner[value] if unread else value
        n = src.node
        if n is None or not n.inputs or owner[src] is not src or target.role == "const":
            continue
        if not unread and not (n.op.name == "fused" or (n.op.kind == "elementwise"
                                                         and not aliases_input(n.op))):
            continue
        if not unread and n.op.name == "fused" and has_reduction(n.attrs["body"]):
            continue
        if any(owner[v] is target and tuple(v.shape) != tuple(value.shape) for v in n.inputs):
            continue  # reads the target through a reshape: not at the index it writes
        later = graph.nodes[position[n] + 1:]
        if any(owner[v] is target for m in later for v in m.inputs):
            continue
        if any(m.op.kind == "index" for m in later):
            continue
        if any(owner[r] is target for r in results):
            continue
        if src in graph.outputs or value in graph.outputs:
            continue  # an output in an input's buffer would alias it for the caller
        if src in found or target in found.values():
            continue  # one value updating two inputs: only one can hold it in place
        found[src] = found[value] = target
    return found


@dataclass(eq=False)
class BufferPlan:
    """A graph's buffers, as ``plan_buffers`` found them (see [Buffer plan]).

    ``owner``: value -> the value whose buffer holds it; ``in_place``: the updates that may
    be computed in their targets' buffers, ``{value: target}`` ([In-place updates]);
    ``temps``: the node values that own a buffer no result (output or update, in place or
    not) lives in, in program order; ``slot_of``/``slots``: each temporary's workspace slot
    and ``(dtype, elements)`` per slot; ``host``: the host values (no device buffer)."""
    owner: dict
    in_place: dict
    temps: list
    slot_of: dict
    slots: list
    host: frozenset
    made_for: tuple  # the graph's nodes, outputs, updates and host inputs it was made for

    def is_for(self, graph) -> bool:
        """Whether the graph is still as it was when this plan was made."""
        return self.made_for == _state(graph)


def _state(graph) -> tuple:
    return (tuple(graph.nodes), tuple(graph.outputs), tuple(graph.updates),
            tuple(graph.host_inputs))


def plan_buffers(graph) -> BufferPlan:
    """The buffer plan of ``graph`` (see [Buffer plan])."""
    owner = buffer_owner(graph)
    host = frozenset(host_values(graph))
    results = {owner[v] for v in list(graph.outputs) + [v for _, v in graph.updates]}
    temps = [v for n in graph.nodes for v in n.outs
             if owner[v] is v and v not in results and v not in host]
    slot_of, slots = assign_slots(graph, temps, owner)
    in_place = inplace_updates(graph, owner)
    # (``in_place`` may map a value and the node result it views to one target: drop both.)
    on_host = {t for v, t in in_place.items() if v in host or t in host}
    in_place = {v: t for v, t in in_place.items() if t not in on_host}
    return BufferPlan(owner, in_place, temps, slot_of, slots, host, _state(graph))


def plan_of(graph) -> BufferPlan:
    """The plan ``passes/memory`` recorded on ``graph`` (``graph.buffer_plan``) if the graph
    has not changed since, else a new one."""
    plan = getattr(graph, "buffer_plan", None)
    if plan is not None and plan.is_for(graph):
        return plan
    return plan_buffers(graph)
