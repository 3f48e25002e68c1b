"""The backward engine of the dynamic autograd tape (PyTorch's semantics).

``backward``/``grad`` walk the tape's nodes (graphjit/autograd_tape.py) in decreasing creation
order (every edge points to an older node, so this is a reverse topological order with no
recursion), sum the gradients that reach a node from several uses (fan-out), and call each
op's VJP rule - written with graphjit ops, so with ``create_graph=True`` the backward pass
is itself recorded and can be differentiated again. Here too: accumulating into leaves'
``.grad``, post-accumulate-grad hooks and queued callbacks ([Backward hooks]), and the
gradients of non-leaves kept by ``retain_grad``.

Like the tape, the engine sits under Tensor ([The tape under Tensor] in autograd_tape.py):
it makes and recognises tensors through ``_tape.Tensor`` and ``_tape.make_tensor``, and in
anomaly mode runs each node through ``_tape._anomaly_apply``. Grad mode and anomaly mode's
state belong to the tape: the engine reads ``_tape._anomaly_mode`` there at each call, never
a copy. The public names (``backward``, ``grad``, ``queue_callback``, ``RemovableHandle``)
are also in graphjit.autograd.
"""
from __future__ import annotations

import itertools
import weakref

import numpy as np

from . import _tracing
from . import autograd_tape as _tape
from . import devices
from .autograd_tape import (AccumulateGrad, BackwardNode, _device_error, _Stale, input_edge,
                       set_grad_enabled)
from .errors import AutogradError, DTypeError, ShapeError
from .ops import api

# ---- the engine -----------------------------------------------------------------------------

def _edge(t):
    node, nr = input_edge(t)
    return None if node is None else (node, nr)


def _root_grads(outputs, grad_outputs, who):
    pairs = []
    for i, out in enumerate(outputs):
        if not isinstance(out, _tape.Tensor):
            raise TypeError(f"{who}: outputs must be tensors, got {type(out).__name__}")
        edge = _edge(out)
        if edge is None:
            raise AutogradError(f"{who}: element {i} of the outputs does not require grad and has "
                                "no grad_fn (was it computed under no_grad, or from tensors that "
                                "do not require grad?)")
        g = grad_outputs[i] if grad_outputs is not None else None
        if g is None:
            if out.numel() != 1:
                raise AutogradError(f"{who}: grad can be implicitly created only for scalar outputs; "
                                    f"output {i} has shape {tuple(out.shape)}. Pass gradient= (for "
                                    "backward) or grad_outputs= (for graphjit.grad), e.g. "
                                    "graphjit.ones_like(out)")
            g = _tape.Tensor._wrap(devices.full(out.shape, 1, out.dtype.np, out.device))
        else:
            if not isinstance(g, _tape.Tensor):
                g = _tape.make_tensor(g, dtype=out.dtype)
            if tuple(g.shape) != tuple(out.shape):
                raise ShapeError(f"gradient {i} has shape {tuple(g.shape)} but the output has shape "
                                 f"{tuple(out.shape)}", op=who)
            if g.dtype is not out.dtype:
                if not g.dtype.is_floating_point:
                    raise DTypeError(f"gradient {i} must be floating point, got {g.dtype.name}", op=who)
                g = api.cast(g, out.dtype)
        pairs.append((edge, g))
    return pairs


def _reachable(roots):
    seen, order, stack = set(), [], list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        order.append(n)
        for nxt, _ in n.next_functions:
            if nxt is not None and nxt not in seen:
                stack.append(nxt)
    order.sort(key=lambda n: n.seq, reverse=True)
    return order


def _add_grad(grads: dict, edge, g) -> None:
    node, nr = edge
    slots = grads.get(node)
    if slots is None:
        slots = grads[node] = [None] * node.num_outputs
    slots[nr] = g if slots[nr] is None else api.add(slots[nr], g)


# NOTE: [Gradients the engine may keep]
# A leaf without a ``.grad`` gets a copy of the gradient that reaches it (``_accumulate``):
# the gradient may be shared, e.g. the same tensor passed on to both inputs of an ``add``.
# A node whose gradients are its own (``Node.owns_grads``: the compiled backward, whose
# results come from its program's pool, [Buffer plan] in passes/memory.py) hands them to
# the engine instead: ``run_backward`` remembers the tensors such a node returned, and the
# first leaf one of them reaches as it is (not summed with another) keeps it as its
# ``.grad``; any other place it reaches gets a copy as before. PyTorch's AccumulateGrad
# steals a gradient nothing else refers to in the same way. For a large model the copy
# (and its fresh memory) cost as much as the backward's own elementwise work.

def _accumulate(holder, g, create_graph: bool, owned: bool = False) -> None:
    """Add ``g`` into ``holder.grad`` with PyTorch's rules (in place unless create_graph).
    ``owned``: nothing else refers to ``g``, so a new ``.grad`` may be ``g`` itself rather
    than a copy ([Gradients the engine may keep])."""
    if g.dtype is not holder.dtype:
        g = api.cast(g, holder.dtype)
    if g.device != holder.device:  # a VJP's zeros made on the CPU for a CUDA leaf
        g = g.to(holder.device)
    old = holder._grad
    if create_graph:
        holder._grad = g if old is None else old + g
        return
    if old is None:
        holder._grad = g if owned else _tape.Tensor._wrap(devices.copy(g._data))
    elif type(old._data) is not np.ndarray or type(g._data) is not np.ndarray:
        # CUDA (see [Devices]): the sum by the eager CUDA add, into the gradient's buffer.
        if old.device != g.device:
            raise _device_error("backward (accumulating .grad)", [old, g])
        total = api.add(old, g)
        if old._requires_grad:
            holder._grad = total
        else:
            devices.copyto(old._data, total._data)
            old._version.bump()
    elif old._requires_grad or not old._data.flags.writeable:
        holder._grad = _tape.Tensor._wrap(old._data + g._data)
    else:
        np.add(old._data, g._data, out=old._data)
        old._version.bump()


def run_backward(outputs, grad_outputs, retain_graph, create_graph, capture=None, who="backward"):
    """Propagate gradients from ``outputs``. With ``capture`` (a list of edges) return the
    gradient reaching each of them instead of accumulating into leaves' ``.grad``."""
    if retain_graph is None:
        retain_graph = create_graph
    pairs = _root_grads(outputs, grad_outputs, who)
    grads: dict = {}
    for edge, g in pairs:
        _add_grad(grads, edge, g)
    order = _reachable([edge[0] for edge, _ in pairs])
    needed = None
    if capture is not None:
        targets = {node for node, _ in capture}
        needed = set()
        for n in reversed(order):  # oldest first: a node is needed if any edge leads to a needed one
            if n in targets or any(nxt in needed for nxt, _ in n.next_functions if nxt is not None):
                needed.add(n)
    captured = {}
    owned = {}  # id -> a gradient a node gave the engine ([Gradients the engine may keep])
    anomaly = _tape._anomaly_mode  # read once: see [Anomaly mode]
    with set_grad_enabled(create_graph):
        for node in order:
            slots = grads.pop(node, None)
            if slots is None:
                continue
            for nr, g in enumerate(slots):
                if g is not None and type(g) is _Stale:
                    raise AutogradError(g.error)
            if capture is not None:
                if node in targets:
                    for nr, g in enumerate(slots):
                        captured[(node, nr)] = g
                if node not in needed or isinstance(node, AccumulateGrad):
                    continue
            elif isinstance(node, AccumulateGrad):
                g = slots[0]
                _accumulate(node.variable, g, create_graph, owned.pop(id(g), None) is g)
                post_accumulate_grad(node.variable)
                continue
            if getattr(node, "retained", None) and capture is None:
                for ref in node.retained:
                    t = ref()
                    if t is not None and t._grad_fn is node and slots[t._output_nr] is not None:
                        _accumulate(t, slots[t._output_nr], create_graph)
            if anomaly:
                in_grads = _tape._anomaly_apply(node, slots, needed)
            else:
                in_grads = node.apply(slots)
            owns = node.owns_grads and capture is None
            for edge, gi in zip(node.next_functions, in_grads):
                if edge[0] is None or gi is None:
                    continue
                if capture is not None and edge[0] not in needed:
                    continue
                if owns:
                    owned[id(gi)] = gi
                _add_grad(grads, edge, gi)
            if not retain_graph:
                node.release()
    return captured


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """``graphjit.autograd.backward``: accumulate d(tensors)/d(leaves) into the leaves' ``.grad``.

    Hooks registered with ``Tensor.register_post_accumulate_grad_hook`` run after each
    leaf's ``.grad`` is written, and callbacks queued during the pass (``queue_callback``)
    when it has finished, eagerly and while tracing alike (see [Backward hooks])."""
    _callbacks.append([])
    try:
        _backward(tensors, grad_tensors, retain_graph, create_graph, inputs)
        queued = _callbacks[-1]
        i = 0
        while i < len(queued):  # a callback may queue another
            queued[i]()
            i += 1
    finally:
        _callbacks.pop()


# NOTE: [Backward hooks]
# Two of PyTorch's hooks, for code that must act on gradients as a backward pass produces
# them (DistributedDataParallel's all-reduce, graphjit/nn/parallel/distributed.py):
# - ``Tensor.register_post_accumulate_grad_hook(hook)``: ``hook(leaf)`` after ``backward``
#   has accumulated into ``leaf.grad`` (not for ``graphjit.grad``, which writes no ``.grad``);
# - ``queue_callback(fn)``, during a backward pass (from such a hook): ``fn()`` once the
#   pass has finished (PyTorch's ``Variable._execution_engine.queue_callback``).
# While tracing (graphjit.compile) both run at trace time, right after the leaf's gradient
# request is recorded (the hook then reads ``leaf.grad`` as a traced value) and after the
# whole ``backward()`` call: what they do with tensor ops becomes part of the program.
_callbacks: list = []


def queue_callback(fn) -> None:
    """Run ``fn()`` when the backward pass now running has finished (see [Backward hooks])."""
    if not _callbacks:
        raise AutogradError("queue_callback: final callbacks can only be installed during "
                            "the backward pass (from a hook)")
    _callbacks[-1].append(fn)


class RemovableHandle:
    """What registering a hook returns: ``remove()`` unregisters it."""
    _ids = itertools.count()

    def __init__(self, hooks: dict, hook):
        self.id = next(self._ids)
        self._hooks = hooks
        hooks[self.id] = hook

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def backward_pass():
    """An object that identifies the backward pass now running (None outside one)."""
    return _callbacks[-1] if _callbacks else None


def post_accumulate_grad(t) -> None:
    """Run ``t``'s post-accumulate-grad hooks (its ``.grad`` was just written)."""
    hooks = t.__dict__.get("_post_accumulate_grad_hooks")
    if hooks:
        for hook in list(hooks.values()):
            hook(t)


def _backward(tensors, grad_tensors, retain_graph, create_graph, inputs):
    if isinstance(tensors, _tape.Tensor):
        tensors = [tensors]
    if isinstance(grad_tensors, _tape.Tensor):
        grad_tensors = [grad_tensors]
    tracer = _tracing.active()
    if tracer is not None:  # inside graphjit.compile (also for a real tensor: a leaf itself)
        for j, t in enumerate(tensors):
            tracer.backward(t, None if grad_tensors is None else grad_tensors[j], inputs,
                            create_graph, retain_graph)
        return
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, _tape.Tensor) else list(inputs)
        edges = [_capture_edge(t, "backward") for t in inputs]
        captured = run_backward(list(tensors), grad_tensors, retain_graph, create_graph,
                                capture=edges)
        with set_grad_enabled(create_graph):
            for t, e in zip(inputs, edges):
                if captured.get(e) is not None:
                    _accumulate(t, captured[e], create_graph)
                    post_accumulate_grad(t)
        return
    run_backward(list(tensors), grad_tensors, retain_graph, create_graph)


def _capture_edge(t, who):
    if not isinstance(t, _tape.Tensor):
        raise TypeError(f"{who}: inputs must be tensors, got {type(t).__name__}")
    edge = _edge(t)
    if edge is None:
        raise AutogradError(f"{who}: one of the differentiated tensors (shape {tuple(t.shape)}) does "
                            "not require grad")
    return edge


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """``torch.autograd.grad``: the gradients of ``outputs`` with respect to ``inputs``,
    returned as a tuple, without touching any ``.grad``."""
    single_out = isinstance(outputs, _tape.Tensor)
    outputs = [outputs] if single_out else list(outputs)
    tracer = _tracing.active()
    if tracer is not None:  # inside graphjit.compile: a gradient request in the graph
        return tracer.grad(outputs, inputs, grad_outputs, create_graph, allow_unused)
    inputs = [inputs] if isinstance(inputs, _tape.Tensor) else list(inputs)
    if isinstance(grad_outputs, _tape.Tensor):
        grad_outputs = [grad_outputs]
    if grad_outputs is not None and len(grad_outputs) != len(outputs):
        raise ShapeError(f"got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs", op="grad")
    edges = [_capture_edge(t, "grad") for t in inputs]
    captured = run_backward(outputs, grad_outputs, retain_graph, create_graph, capture=edges,
                            who="grad")
    result = []
    for i, (t, e) in enumerate(zip(inputs, edges)):
        g = captured.get(e)
        if g is None and not allow_unused:
            raise AutogradError(f"grad: input {i} (shape {tuple(t.shape)}) was not used to compute "
                                "the outputs; pass allow_unused=True to get None for it")
        if g is not None and not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)


def add_retained(node: BackwardNode, t) -> None:
    if node.retained is None:
        node.retained = []
    node.retained.append(weakref.ref(t))
