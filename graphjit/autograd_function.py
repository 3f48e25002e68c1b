"""``graphjit.autograd.Function``: a custom forward and backward, as ``torch.autograd.Function``.

::

    class ClippedExp(graphjit.autograd.Function):
        @staticmethod
        def forward(ctx, x, limit):
            y = x.clamp(max=limit).exp()
            ctx.save_for_backward(x, y)
            ctx.limit = limit
            return y

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            return g * y * (x < ctx.limit), None   # one gradient per forward argument

    y = ClippedExp.apply(x, 3.0)

Eagerly, ``apply`` runs ``forward`` under ``no_grad`` and, when grad mode is on and a
tensor argument requires grad, puts one node on the tape for all the outputs: ``ctx``
itself, an instance of ``ClippedExpBackward`` (``y.grad_fn``). The engine calls it with one
gradient per output (zeros where none arrived, unless ``ctx.set_materialize_grads(False)``)
and it returns what ``backward`` returns, checked as PyTorch checks it.

Inside ``graphjit.compile`` it works differently: see [Custom Functions while tracing] in
autograd_function_trace.py.
"""
from __future__ import annotations

import functools
import inspect

from . import _tracing, devices
from . import anomaly as _anomaly
from . import autograd_tape as _tape
from .errors import AutogradError, DTypeError, ShapeError, user_frame
from .ops import api
from .tensor import Tensor

__all__ = ["Function", "FunctionCtx", "BackwardCFunction", "once_differentiable"]


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


class FunctionMeta(type):
    """Gives each Function subclass its node class, ``<Name>Backward`` (``_backward_cls``)."""

    def __init__(cls, name, bases, attrs):
        cls._backward_cls = type(f"{name}Backward", (BackwardCFunction,),
                                 {"_forward_cls": cls, "__module__": cls.__module__})
        super().__init__(name, bases, attrs)


class Function(metaclass=FunctionMeta):
    """A differentiable operation with a hand-written backward (``torch.autograd.Function``).

    Subclass it with ``@staticmethod``s ``forward(ctx, *args)`` and
    ``backward(ctx, *grad_outputs)``, then call ``MyFn.apply(*args)``. (Or, as PyTorch 2
    allows, ``forward(*args)`` without ctx plus ``setup_context(ctx, inputs, output)``.)

    - ``forward`` runs under ``no_grad`` on the arguments as given: tensors, and any other
      Python values. It returns a tensor or a tuple (tensors and other values).
    - ``ctx.save_for_backward(*tensors)`` / ``ctx.saved_tensors``;
      ``ctx.needs_input_grad`` (a bool per argument); ``ctx.mark_non_differentiable(*outs)``;
      ``ctx.set_materialize_grads(False)``; any other attribute set on ``ctx``.
      ``ctx.mark_dirty`` (in-place Functions) is refused with an error.
    - ``backward`` gets one gradient per output and returns one per forward argument
      (a single tensor if there is one argument): None for arguments that are no tensors or
      need no gradient; extra trailing Nones are allowed. A gradient of another shape that
      broadcasts to the argument's is summed to it; one of another floating dtype is cast.
      A wrong count, shape or device raises PyTorch's error, naming the node
      (``MyFnBackward``) and the line that called ``apply``.
    - With ``create_graph=True`` the backward is itself recorded when it is written with
      graphjit ops (so higher derivatives work), unless it is decorated with
      ``once_differentiable``.
    - Inside ``graphjit.compile`` the same code traces into the program and gives eager
      mode's numbers ([Custom Functions while tracing] in autograd_function_trace.py);
      what cannot be traced there
      (``.item()``, NumPy on tensor data) raises ``TraceError`` at its line.
    """

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is a graphjit.autograd.Function with static "
                           f"forward and backward methods: call {type(self).__name__}.apply(...) "
                           "instead of instantiating it")

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for a custom "
                                  "graphjit.autograd.Function.")

    @staticmethod
    def setup_context(ctx, inputs, output):
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement the backward method of your custom "
                                  "graphjit.autograd.Function to use it with backward mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run ``forward`` on ``args`` and record the node that runs ``backward``."""
        if cls is Function:
            raise RuntimeError("call apply on a subclass of graphjit.autograd.Function")
        args = _positional(cls, args, kwargs)
        where = user_frame()
        tracer = _tracing.active()
        if tracer is not None:
            from .autograd_function_trace import apply_traced
            return apply_traced(cls, args, tracer, where)
        return _apply_eager(cls, args, where)


def _uses_setup_context(cls) -> bool:
    return cls.setup_context is not Function.setup_context


def _positional(cls, args, kwargs) -> tuple:
    """The forward arguments as a tuple (keyword arguments bound by forward's signature;
    with ``setup_context``, defaults filled in, as PyTorch does)."""
    setup = _uses_setup_context(cls)
    if not kwargs and not setup:
        return args
    sig = inspect.signature(cls.forward)
    lead = () if setup else (None,)  # forward(ctx, ...): bind ctx to a stand-in
    bound = sig.bind(*lead, *args, **kwargs)
    if setup:
        bound.apply_defaults()
    if bound.kwargs:
        raise TypeError(f"{cls.__name__}.apply: keyword-only arguments of forward "
                        f"({', '.join(bound.kwargs)}) are not supported; pass them positionally")
    return tuple(bound.args[len(lead):])


def _run_forward(cls, args, where):
    """Run forward under no_grad with a new ctx; returns ``(ctx, result, outputs as a
    tuple)``; ``ctx.recording`` says whether the call gets a node."""
    ctx = cls._backward_cls()
    ctx._where = where
    ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
    ctx._arg_meta = tuple(_meta(a) for a in args)
    with _tape.no_grad():
        if _uses_setup_context(cls):
            raw = cls.forward(*args)
            cls.setup_context(ctx, args, raw)
        else:
            raw = cls.forward(ctx, *args)
    outs = raw if isinstance(raw, tuple) else (raw,)
    ctx._out_meta = tuple(_meta(o) for o in outs)
    ctx.recording = _tape.is_grad_enabled() and any(ctx.needs_input_grad)
    return ctx, raw, outs


def _meta(t):
    return (tuple(t.shape), t.dtype, t.device) if isinstance(t, Tensor) else None


def _differentiable_outputs(ctx, outs) -> list:
    """Positions of the outputs that get the node as grad_fn: floating tensors not marked
    non-differentiable."""
    marked = {id(t) for t in ctx.non_differentiable}
    return [i for i, o in enumerate(outs) if isinstance(o, Tensor)
            and o.dtype.is_floating_point and id(o) not in marked]


def _apply_eager(cls, args, where):
    ctx, raw, outs = _run_forward(cls, args, where)
    if not ctx.recording:
        return raw
    results = list(outs)
    inputs = {id(a) for a in args if isinstance(a, Tensor)}
    for i, o in enumerate(outs):
        # An input returned as it is (or a tensor with a history of its own) is returned
        # as a new tensor sharing its data, as PyTorch returns a view of it.
        if isinstance(o, Tensor) and (id(o) in inputs or o._requires_grad):
            results[i] = o.detach()
    diff = _differentiable_outputs(ctx, outs)
    # NOTE: [Node order] in autograd_tape.py: the edges (and leaves' AccumulateGrad nodes) first.
    ctx.next_functions = tuple(_tape.input_edge(a) for a in args if isinstance(a, Tensor))
    ctx.seq = next(_tape._sequence)
    ctx.num_outputs = len(outs)
    for i in diff:
        o = results[i]
        o._grad_fn = ctx
        o._output_nr = i
        o._requires_grad = True
    saved = []
    for t in ctx.to_save:
        at = next((i for i, o in enumerate(outs) if o is t and id(t) not in inputs), None)
        saved.append(None if t is None else _SavedInput(t) if at is None
                     else _SavedOutput(results[at], at))
    ctx._saved = saved
    ctx.to_save = ()
    if _tape._anomaly_mode:
        _anomaly.record(ctx)
    return tuple(results) if isinstance(raw, tuple) else results[0]


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


# ---- once_differentiable ------------------------------------------------------------------------

class _DelayedError(_tape.Node):
    """The grad_fn of what a ``once_differentiable`` backward returns under create_graph: a
    backward through it raises."""
    __slots__ = ("message",)

    def __init__(self, message, tensors):
        self.next_functions = tuple(_tape.input_edge(t) for t in tensors)
        self.seq = next(_tape._sequence)
        self.message = message

    def apply(self, grads):
        raise AutogradError(self.message)

    def release(self) -> None:
        pass


def once_differentiable(backward):
    """Decorate a Function's ``backward`` that is not itself differentiable (it uses NumPy,
    say), as ``torch.autograd.function.once_differentiable``: it runs under ``no_grad``, and
    under ``create_graph=True`` differentiating its results again raises instead of giving
    a wrong (zero) second derivative."""
    @functools.wraps(backward)
    def wrapper(ctx, *grad_outputs):
        with _tape.no_grad():
            result = backward(ctx, *grad_outputs)
        if not _tape.is_grad_enabled() or _tracing.active() is not None:
            return result
        needing = [g for g in grad_outputs if isinstance(g, Tensor) and g.requires_grad]
        if not needing:
            return result
        node = _DelayedError(f"trying to differentiate twice a function that was marked with "
                             f"@once_differentiable ({ctx.name()})", needing)
        single = not isinstance(result, tuple)
        wrapped = []
        for k, g in enumerate((result,) if single else result):
            if isinstance(g, Tensor) and g.dtype.is_floating_point:
                g = g.detach()
                g._grad_fn = node
                g._requires_grad = True
            wrapped.append(g)
        return wrapped[0] if single else tuple(wrapped)
    return wrapper
