"""The ``ctx`` of ``graphjit.autograd.Function`` and what both of its forms share.

``BackwardCFunction`` is at once a call's ``ctx`` (the methods of ``FunctionCtx``) and its
node on the tape; it keeps the saved tensors (``_SavedInput``, ``_SavedOutput``) and checks
what ``backward`` returns (``_check_gradients``), as does the traced form of ``apply``
(autograd_function_trace.py), which also picks the differentiable outputs the same way
(``_differentiable_outputs``). ``Function`` itself is in autograd_function.py, above both.
"""
from __future__ import annotations

import inspect

from . import autograd_tape as _tape
from . import devices
from .errors import AutogradError, DTypeError, ShapeError
from .ops import api
from .tensor import Tensor

__all__ = ["FunctionCtx", "BackwardCFunction"]


class FunctionCtx:
    """The ``ctx`` methods of ``forward`` / ``setup_context``, as PyTorch's ``FunctionCtx``."""
    __slots__ = ()

    def save_for_backward(self, *tensors) -> None:
        """Keep ``tensors`` (inputs, outputs or intermediate results; None allowed) for
        ``backward``, which reads them as ``ctx.saved_tensors``. Call it once, in forward.
        Unlike attributes set on ``ctx``, saved tensors are checked: ``backward`` raises if
        one was modified in place since, and they are freed after a backward that does not
        retain the graph."""
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save tensors (or None), but "
                                f"argument {tensors.index(t)} is a {type(t).__name__}; keep "
                                "other values as attributes of ctx")
        self.to_save = tensors

    def mark_dirty(self, *tensors) -> None:
        """Refused: graphjit's custom Functions cannot modify their inputs in place."""
        raise AutogradError(
            f"ctx.mark_dirty in {self._function_name()}.forward: custom Functions that modify "
            "an input in place are not supported by graphjit. Return a new tensor instead "
            "(compute on x.clone(), or out of place)")

    def mark_non_differentiable(self, *tensors) -> None:
        """Outputs that get no gradient: they do not require grad, and ``backward`` gets a
        zero gradient (or None, see ``set_materialize_grads``) for them."""
        self.non_differentiable = tensors

    def set_materialize_grads(self, value: bool) -> None:
        """``True`` (the default): ``backward`` gets zeros for outputs no gradient reached.
        ``False``: it gets None for them."""
        self.materialize_grads = bool(value)

    def _function_name(self) -> str:
        cls = getattr(self, "_forward_cls", None)
        return cls.__name__ if cls is not None else "Function"


_FREED = ("Trying to backward through the graph a second time (or directly access saved "
          "tensors after they have already been freed): the saved tensors of {name} were freed "
          "by the first backward. Pass retain_graph=True to the first backward() or "
          "graphjit.grad() call if you need to go through it again")


class BackwardCFunction(FunctionCtx, _tape.Node):
    """The tape node of one ``Function.apply`` call, which is also its ``ctx``.

    Each Function gets a subclass named after it (``MyFnBackward``, what ``y.grad_fn``
    shows). Attributes set in forward stay on it for backward.
    """
    _forward_cls = None

    def __init__(self):
        self.seq = -1
        self.next_functions = ()
        self.to_save = ()
        self.non_differentiable = ()
        self.materialize_grads = True
        self.needs_input_grad = ()
        self._saved = None     # eager, after forward: one record per saved tensor
        self._freed = False
        self._out_meta = ()    # (shape, dtype, device) per output, None for non-tensors
        self._arg_meta = ()    # the same per forward argument
        self._where = None     # the user's line that called apply

    def name(self) -> str:
        return type(self).__name__

    @property
    def saved_tensors(self) -> tuple:
        """The tensors given to ``save_for_backward``, as they were saved."""
        if self._saved is None:  # during forward, or inside a compiled function
            return tuple(self.to_save)
        if self._freed:
            raise AutogradError(_FREED.format(name=self.name()), where=self._where)
        return tuple(None if r is None else r.unpack(self) for r in self._saved)

    saved_variables = saved_tensors  # PyTorch's old name

    def apply(self, grads):
        """The engine's call: one gradient per output (None where none arrived), one per
        tensor argument back."""
        cls = self._forward_cls
        outs = []
        for i, meta in enumerate(self._out_meta):
            g = grads[i] if i < len(grads) else None
            if g is None and meta is not None and self.materialize_grads:
                shape, dtype, device = meta
                g = Tensor._wrap(devices.zeros(shape, dtype.np, device))
            outs.append(g)
        result = cls.backward(self, *outs)
        checked = _check_gradients(cls, result, self._arg_meta, self.needs_input_grad,
                                   self._where)
        return tuple(g for g, meta in zip(checked, self._arg_meta) if meta is not None)

    def release(self) -> None:
        """Free the saved tensors (after a backward without retain_graph)."""
        if self._saved is not None:
            self._freed = True
            self._saved = ()


class _SavedInput:
    """A saved tensor that is not an output of the node (an input or an intermediate)."""
    __slots__ = ("tensor", "version")

    def __init__(self, t):
        self.tensor = t
        self.version = t._version.value

    def unpack(self, node):
        t = self.tensor
        _check_version(node, t, self.version, "saved tensor")
        return t


class _SavedOutput:
    """A saved output of the node. It keeps the output's data and version counter, not the
    output (whose ``grad_fn`` is the node: that would be a reference cycle), and gives back
    a tensor sharing them, with the node as its ``grad_fn`` again (so a backward through
    it with ``create_graph=True`` reaches the node, as PyTorch's saved outputs do)."""
    __slots__ = ("data", "counter", "version", "index", "differentiable")

    def __init__(self, out, index):
        self.data = out._data
        self.counter = out._version
        self.version = out._version.value
        self.index = index
        self.differentiable = out._grad_fn is not None

    def unpack(self, node):
        t = Tensor._wrap(self.data)
        t._version = self.counter
        _check_version(node, t, self.version, f"output {self.index}")
        if self.differentiable:
            t._grad_fn = node
            t._output_nr = self.index
            t._requires_grad = True
        return t


def _check_version(node, t, version, what):
    if t._version.value != version:
        raise AutogradError(
            f"one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{t.dtype.name}{list(t.shape)}], {what} of {node.name()}, is "
            f"at version {t._version.value}; expected version {version} instead. Use an "
            "out-of-place op, or .clone() the tensor before modifying it", where=node._where)


def _differentiable_outputs(ctx, outs) -> list:
    """Positions of the outputs that get the node as grad_fn: floating tensors not marked
    non-differentiable."""
    marked = {id(t) for t in ctx.non_differentiable}
    return [i for i, o in enumerate(outs) if isinstance(o, Tensor)
            and o.dtype.is_floating_point and id(o) not in marked]


# ---- checking what backward returns -----------------------------------------------------------

def _expands_to(shape, target) -> bool:
    """Whether ``shape`` broadcasts to ``target`` (a gradient of ``target``'s shape then sums
    back to it, as PyTorch's engine does)."""
    if len(shape) > len(target):
        return False
    return all(s == t or s == 1 for s, t in zip(reversed(shape), reversed(target)))


def _backward_place(cls) -> str:
    fn = inspect.unwrap(cls.backward)
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else "?"


def _check_gradients(cls, result, arg_meta, needs, where) -> list:
    """One gradient (or None) per forward argument, from what ``backward`` returned, checked
    and converted as PyTorch's engine does (``validate_outputs``)."""
    name = cls._backward_cls.__name__

    def fail(kind, message):
        raise kind(f"{message} ({cls.__name__}.backward is at {_backward_place(cls)})",
                   where=where)

    if not isinstance(result, tuple):
        result = (result,)
    n = len(arg_meta)
    if len(result) > n and all(g is None for g in result[n:]):
        result = result[:n]
    if len(result) != n:
        fail(AutogradError, f"function {name} returned an incorrect number of gradients "
                            f"(expected {n}, got {len(result)})")
    checked = []
    for i, (g, meta) in enumerate(zip(result, arg_meta)):
        if meta is None:
            if g is not None:
                fail(AutogradError, f"function {name} returned a gradient different than None at "
                                    f"position {i + 1}, but the corresponding forward input was "
                                    "not a Tensor")
            checked.append(None)
            continue
        if g is None or not needs[i]:
            checked.append(None)  # (a gradient for an input that needs none is dropped)
            continue
        if not isinstance(g, Tensor):
            fail(AutogradError, f"function {name} returned a {type(g).__name__} as the gradient "
                                f"at index {i}; expected a Tensor or None")
        shape, dtype, device = meta
        if tuple(g.shape) != shape:
            if not _expands_to(shape, tuple(g.shape)):
                fail(ShapeError, f"Function {name} returned an invalid gradient at index {i} - "
                                 f"got {list(g.shape)} but expected shape compatible with "
                                 f"{list(shape)}")
            g = api.sum_to(g, shape)
        if g.dtype is not dtype:
            if not g.dtype.is_floating_point:
                fail(DTypeError, f"Function {name} returned an invalid gradient at index {i} - "
                                 f"expected a floating point type ({dtype.name}) but got "
                                 f"{g.dtype.name}")
            g = api.cast(g, dtype)
        if g.device != device:
            fail(AutogradError, f"Function {name} returned an invalid gradient at index {i} - "
                                f"expected device {device} but got {g.device}")
        checked.append(g)
    return checked
