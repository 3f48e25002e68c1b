"""Autograd inside a trace: ``backward()`` and ``graphjit.grad`` become ``grad`` requests.

# NOTE: [Gradients while tracing]
A graph input or node value "carries a gradient" when autodiff could reach a tensor that
requires grad through it: the inputs of such tensors and the results of recorded ops
(``_grad_values``). Eager mode records no edge for work done under ``no_grad`` or on a
detached tensor, but the graph's autodiff differentiates every op with a VJP rule, so
such a result gets an explicit ``detach`` node (``apply``, ``wrap``): a traced tensor that
does not require grad never passes a gradient on. ``backward()`` asks for gradients with
respect to each leaf's current value: after an in-place update under ``no_grad`` (an
optimizer step inside the function) a leaf holds a new, detached value, and the next
backward differentiates at that value, as eagerly.

A ``grad`` request is a graph node ``grad(root, wrt, seed)`` that ``passes/autodiff`` expands
with the ops' VJP rules. The state these methods use (``_grad_values``, ``freed_roots``,
``_grad_owner``) is set up in ``Tracer.__init__`` (trace.py).
"""
from __future__ import annotations

from .. import autograd, devices
from ..errors import AutogradError, ShapeError, TraceError
from ..ops import api, registry
from ..tensor import Tensor
from .tracer_tensor import TracerTensor


def _leaf_requiring_grad(t) -> bool:
    return isinstance(t, Tensor) and t._requires_grad and t._grad_fn is None


class TracerAutograd:
    """The methods of ``Tracer`` for gradients ([Gradients while tracing])."""

    def stop_gradient(self, t: "TracerTensor") -> None:
        """``t.detach_()`` / ``t.requires_grad = False`` on a traced tensor."""
        value = self.value_of(t)
        if value in self._grad_values:
            t._value = self.builder.apply(registry.get("detach"), [value], {})
        t._requires_grad = False
        if t._view is not None:
            t._view.chain += ((registry.get("detach"), {}),)
            t._view.source = self._root_value(t._view.root)

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
        # With respect to each leaf's current value: see [Gradients while tracing].
        current = [self.value_of(s.resolve(self._flat_args)) for s in leaves]
        reached = self.reached_by(self.value_of(root), current)
        for slot, value in zip(leaves, current):
            if value not in reached:
                continue
            leaf = slot.resolve(self._flat_args)
            g = self._grad_request(root, value, seed)
            self.note_grad_read(leaf)
            existing = leaf._grad
            if existing is None:
                placeholder = Tensor._wrap(devices.zeros(leaf.shape, leaf.dtype.np, leaf.device))
                self._undo.append(("grad", leaf, None))
                leaf._grad = placeholder
                self._grad_owner[id(placeholder)] = leaf
                self._lift(placeholder, owner=leaf)
                self.current[id(placeholder)] = (placeholder, g)
            else:
                with autograd.no_grad():
                    total = self.builder.apply(registry.get("add"), [self.value_of(existing), g], {})
                self.current[id(existing)] = (existing, total)

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
            xv = self.value_of(x)
            total = None
            for j, y in enumerate(outputs):
                seed = self._seed(y, None if grad_outputs is None else grad_outputs[j])
                if not self.reached_by(self.value_of(y), [xv]):
                    continue
                g = self._grad_request(y, xv, seed)
                total = g if total is None else self.builder.apply(registry.get("add"), [total, g], {})
            if total is None and not allow_unused:
                raise AutogradError(f"grad: input {i} (shape {tuple(x.shape)}) was not used to "
                                    "compute the outputs; pass allow_unused=True to get None for it")
            result.append(None if total is None else TracerTensor._make(total, self, False))
        return tuple(result)
