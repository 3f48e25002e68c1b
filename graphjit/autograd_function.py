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

from . import _tracing
from . import anomaly as _anomaly
from . import autograd_tape as _tape
from .autograd_function_ctx import (BackwardCFunction, _differentiable_outputs, _SavedInput,
                                    _SavedOutput)
from .autograd_function_trace import apply_traced
from .errors import AutogradError, user_frame
from .tensor import Tensor

__all__ = ["Function", "once_differentiable"]


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
        ctx, raw, outs = _run_forward(cls, args, where)
        if not ctx.recording:
            return raw
        if tracer is not None:
            return apply_traced(cls, args, ctx, raw, outs, tracer)
        return _apply_eager(args, ctx, raw, outs)


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


def _apply_eager(args, ctx, raw, outs):
    """Put the node of a recording call on the tape (``ctx``, after ``_run_forward``)."""
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
