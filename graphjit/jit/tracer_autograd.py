"""Autograd inside a trace: ``backward()`` and ``graphjit.grad`` become ``grad`` requests.

# NOTE: [Gradients while tracing]
A graph input or node value "carries a gradient" when autodiff could reach a tensor that
requires grad through it: the inputs of such tensors and the results of recorded ops
(``_grad_values``). Eager mode records no edge for work done under ``no_grad`` or on a
detached tensor, but the graph's autodiff differentiates every op with a VJP rule, so
such a result gets an explicit ``detach`` node (``apply``, ``wrap``): a traced tensor that
does not require grad never passes a gradient on. A leaf's gradient is the sum over every
value it held while tracing (``_held``: its input, then each in-place update, each made
under ``no_grad`` and so detached from the one before): after an optimizer step inside the
function the next backward differentiates at the updated value, and a loss computed before
an in-place change (a weight decay by hand before ``backward()``) still reaches the value
it read, as eagerly, where the gradient goes to the leaf whatever its data was.

A ``grad`` request is a graph node ``grad(root, wrt, seed)`` that ``passes/autodiff`` expands
with the ops' VJP rules. The state these methods use (``_grad_values``, ``freed_roots``,
``_grad_owner``) is set up in ``Tracer.__init__`` (trace.py).
"""
from __future__ import annotations

from .. import autograd_engine
from ..autograd_tape import no_grad
from ..errors import AutogradError, ShapeError, TraceError
from ..ops import api, registry
from ..tensor import Tensor
from .tracer_tensor import TracerTensor


def _leaf_requiring_grad(t) -> bool:
    return isinstance(t, Tensor) and t._requires_grad and t._grad_fn is None


def _read_for(node, saved, needing) -> bool:
    """Whether the VJP rule of ``node`` reads its operand ``saved`` (an input index, or
    "out") to compute the gradient of any input in ``needing``: what eager mode's tape
    finds out by running the rule (a changed saved value raises only where a gradient that
    is wanted depends on it: ``x * w`` with ``w`` changed needs no error for ``x``'s
    gradient, ``x.sin()`` with ``x`` changed does). The rule is traced on placeholders
    into a scratch graph; only done for a value found changed, so rarely."""
    from ..ir import Graph, GraphBuilder
    if len(node.outs) != 1:
        return True
    g = Graph("vjp")
    seed = g.add_input(node.out.type, "g", "arg")
    out = g.add_input(node.out.type, "out", "arg")
    ins = [g.add_input(x.type, f"x{k}", "arg") for k, x in enumerate(node.inputs)]
    with registry.interpreter(GraphBuilder(g)):
        grads = node.op.vjp(seed, out, *ins, **node.attrs)
    target = out if saved == "out" else ins[saved]
    for j in needing:
        stack, seen = [grads[j]] if j < len(grads) and grads[j] is not None else [], set()
        while stack:
            v = stack.pop()
            if v is target:
                return True
            if v in seen or v.node is None:
                continue
            seen.add(v)
            stack.extend(v.node.inputs)
    return False


class TracerAutograd:
    """The methods of ``Tracer`` for gradients ([Gradients while tracing])."""

    def stop_gradient(self, t: "TracerTensor") -> None:
        """``t.detach_()`` / ``t.requires_grad = False`` on a traced tensor."""
        value = self.value_of(t)
        if value in self._grad_values:
            t._value = self.builder.apply(registry.get("detach"), [value], {})
        t._requires_grad = False
        view = self.live_view(t)
        if view is not None:
            view.chain += ((registry.get("detach"), {}),)
            view.source = self._root_value(view.root)

    def reached_by(self, root_value, values) -> set:
        """Those of ``values`` that reach ``root_value`` through differentiable ops."""
        wanted = set(values)
        found, seen, stack = set(), set(), [root_value]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in wanted:
                found.add(v)
            n = v.node
            if n is None or n.op.vjp is None:
                continue
            stack.extend(i for i in n.inputs if i.dtype.is_floating_point)
        return found

    def _check_saved(self, root_value, leaf_values) -> None:
        """Raise eager mode's error if an op on a path from ``leaf_values`` to ``root_value``
        reads a value changed in place since it ran ([Saved values while tracing] in
        trace.py)."""
        if not (self._saved or self._stale_views) or not leaf_values:
            return
        above, stack = set(), [root_value]  # the values root_value depends on, differentiably
        while stack:
            v = stack.pop()
            if v in above:
                continue
            above.add(v)
            n = v.node
            if n is not None and n.op.vjp is not None:
                stack.extend(i for i in n.inputs if i.dtype.is_floating_point)
        on_path = set(leaf_values)  # ... and that depend on a leaf, differentiably (as
        # ``above``: through float values only; ``p.long().float() * q`` takes no gradient to p)
        for n in self.graph.nodes:
            if n.op.vjp is not None and any(i in on_path for i in n.inputs
                                            if i.dtype.is_floating_point):
                on_path.update(o for o in n.outs if o.dtype.is_floating_point)
        for v in on_path & above:
            if v in self._stale_views:
                raise AutogradError(self._stale_views[v], op="backward")
        for v in [v for v in on_path & above if v in self._saved]:
            op, saved = self._saved[v]
            needing = [j for j, x in enumerate(v.node.inputs) if x in on_path]
            for i, t, version, untracked in saved:
                if self.untracked_changes(t) != untracked and _read_for(v.node, i, needing):
                    raise TraceError(
                        f"a value needed to compute the gradient of {op.name} (a "
                        f"{t.dtype.name} tensor of shape {tuple(t.shape)}) was changed through "
                        "its .data after the op read it: eager mode computes that gradient from "
                        "the changed elements, a compiled program from the ones the op read "
                        "([Changes through .data] in graphjit/jit/trace.py). Change it after the "
                        "backward, or out of place")
                now = self.version(t)
                if now != version and _read_for(v.node, i, needing):
                    raise AutogradError(
                        f"a value needed to compute the gradient of {op.name} was modified by "
                        f"an in-place operation: a {t.dtype.name} tensor of shape "
                        f"{tuple(t.shape)} is at version {now}; expected version {version}. "
                        "Use an out-of-place op (x = x + y instead of x.add_(y)) or .clone() "
                        "the value before modifying it", op="backward")

    def _values_held(self, t) -> list:
        """Every value tensor ``t`` held while tracing (one for a traced tensor)."""
        if isinstance(t, TracerTensor):
            return [self.value_of(t)]
        return list(self._held.get(id(t), [self.value_of(t)]))

    def _sum_requests(self, root, values, seed):
        total = None
        for v in values:
            g = self._grad_request(root, v, seed)
            total = g if total is None else self.builder.apply(registry.get("add"), [total, g], {})
        return total

    def _grad_request(self, root, wrt_value, seed):
        inputs = [self.value_of(root), wrt_value] + ([self.value_of(seed)] if seed is not None else [])
        return self.builder.apply(registry.get("grad"), inputs, {})

    def _seed(self, root, gradient):
        if gradient is None:
            if root.numel() != 1:
                raise AutogradError(f"backward: grad can be implicitly created only for scalar "
                                    f"outputs; the output has shape {tuple(root.shape)}. Pass "
                                    "gradient=")
            return None
        if not isinstance(gradient, Tensor):
            gradient = api.constant(gradient, root.dtype)
        if tuple(gradient.shape) != tuple(root.shape):
            raise ShapeError(f"gradient has shape {tuple(gradient.shape)} but the output has shape "
                             f"{tuple(root.shape)}", op="backward")
        return api.cast(gradient, root.dtype) if gradient.dtype is not root.dtype else gradient

    def backward(self, root, gradient, inputs, create_graph, retain_graph=None):
        if create_graph:
            raise TraceError("backward(create_graph=True) inside a compiled function is not "
                             "supported: higher-order gradients run in eager mode")
        if not root._requires_grad:
            raise AutogradError("backward: the output does not require grad and has no grad_fn")
        seed = self._seed(root, gradient)
        if not retain_graph:
            # As in eager mode, the graph behind `root` is used up: a backward through the
            # returned tensor after the call is the "second time" error, not a silent rerun.
            self.freed_roots.add(self.value_of(root))
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            leaves = [self._slot_of[id(t)] for t in inputs if id(t) in self._slot_of]
        else:
            leaves = [s for s in self.slots if s.kind != "grad"
                      and _leaf_requiring_grad(s.resolve(self._flat_args))]
        # With respect to every value each leaf held: see [Gradients while tracing].
        held = [self._values_held(s.resolve(self._flat_args)) for s in leaves]
        reached = self.reached_by(self.value_of(root), [v for vs in held for v in vs])
        self._check_saved(self.value_of(root), reached)
        for slot, values in zip(leaves, held):
            values = [v for v in values if v in reached]
            if not values:
                continue
            leaf = slot.resolve(self._flat_args)
            g = self._sum_requests(root, values, seed)
            self.note_grad_read(leaf)
            existing = leaf._grad
            if existing is None:
                self._undo.append(("grad", leaf, None))
                leaf._grad = self.new_grad(leaf, g)
            else:
                with no_grad():
                    total = self.builder.apply(registry.get("add"), [self.value_of(existing), g], {})
                self.current[id(existing)] = (existing, total)
            autograd_engine.post_accumulate_grad(leaf)  # [Backward hooks] in autograd_engine.py

    def grad(self, outputs, inputs, grad_outputs, create_graph, allow_unused):
        if create_graph:
            raise TraceError("graphjit.grad(create_graph=True) inside a compiled function is not "
                             "supported: higher-order gradients run in eager mode")
        outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if isinstance(grad_outputs, Tensor):
            grad_outputs = [grad_outputs]
        result = []
        for i, x in enumerate(inputs):
            held = self._values_held(x)
            total = None
            for j, y in enumerate(outputs):
                seed = self._seed(y, None if grad_outputs is None else grad_outputs[j])
                reached = self.reached_by(self.value_of(y), held)
                self._check_saved(self.value_of(y), reached)
                values = [v for v in held if v in reached]
                if not values:
                    continue
                g = self._sum_requests(y, values, seed)
                total = g if total is None else self.builder.apply(registry.get("add"), [total, g], {})
            if total is None and not allow_unused:
                raise AutogradError(f"grad: input {i} (shape {tuple(x.shape)}) was not used to "
                                    "compute the outputs; pass allow_unused=True to get None for it")
            result.append(None if total is None else TracerTensor._make(total, self, False))
        return tuple(result)
