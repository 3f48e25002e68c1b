"""The eager interpreter and the dynamic autograd tape (PyTorch's semantics).

Eager mode runs each op's NumPy ``impl`` at once. When grad mode is on and an input
requires grad, it also records a ``BackwardNode`` (the output's ``grad_fn``) that holds
the op, its attributes, the values its VJP rule reads (``OpDef.saves``) and one edge per
input: the input's own ``grad_fn``, or the ``AccumulateGrad`` node of a leaf.

This module keeps grad mode, anomaly mode's state, the tape's nodes, the checks of views
and copied views, and the eager interpreter. It sits under Tensor, which it never imports
([The tape under Tensor]). The engine that walks the nodes backward is
graphjit/autograd_engine.py. The public names (``graphjit.autograd``) are gathered in
graphjit/autograd.py, for users: the package imports them from their homes.
"""
from __future__ import annotations

import contextvars
import functools
import itertools
import weakref

import numpy as np

from . import devices
from .errors import AutogradError, CopiedViewError, GraphjitError
from .ops import registry
from .shapes import TensorType

# ---- the Tensor class ----------------------------------------------------------------------

# NOTE: [The tape under Tensor]
# Tensor's methods run ops through the tape, and the tape wraps every result in a Tensor, so
# each needs the other. tensor.py imports this module; this module never imports tensor.py:
# tensor.py hands over the class and its ``tensor()`` constructor when it has made them, at
# its end (``set_tensor_class``), before any op can run, and the tape and the engine
# (graphjit/autograd_engine.py) read them here as ``Tensor`` and ``make_tensor`` (as module
# attributes, never copies). Anomaly mode's work, which re-runs user code on Tensors, sits
# above Tensor in the same way: graphjit/anomaly.py installs it here (``set_anomaly_hooks``).
# So the tensor layer has no import circle: the tape and the engine, then Tensor, then what
# is built on Tensor (creation, random numbers, anomaly mode, ``Function``).
Tensor = None
make_tensor = None


def set_tensor_class(tensor_class, tensor_fn) -> None:
    """Called once by graphjit/tensor.py: the class the tape makes its results of, and
    ``graphjit.tensor`` (data -> a new tensor) for the engine ([The tape under Tensor])."""
    global Tensor, make_tensor
    Tensor, make_tensor = tensor_class, tensor_fn


# ---- grad mode ------------------------------------------------------------------------------

_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("graphjit_grad_enabled",
                                                                     default=True)


def is_grad_enabled() -> bool:
    return _grad_enabled.get()


class _GradMode:
    """Base of no_grad / enable_grad: a context manager that is also a decorator."""
    mode = True

    def __enter__(self):
        self._token = _grad_enabled.set(self.mode)
        return self

    def __exit__(self, *exc):
        _grad_enabled.reset(self._token)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class _DecoratorGradMode(_GradMode):
    def __new__(cls, orig_func=None):
        # `@no_grad` without parentheses decorates too, as in PyTorch >= 2.1.
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)


class no_grad(_DecoratorGradMode):
    """Disable gradient recording inside the block or decorated function."""
    mode = False


class enable_grad(_DecoratorGradMode):
    """Enable gradient recording (e.g. inside a ``no_grad`` block)."""
    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` turns grad mode off at once, or for a ``with`` block."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = _grad_enabled.get()
        _grad_enabled.set(self.mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _grad_enabled.set(self._prev)
        return False


# ---- anomaly mode ---------------------------------------------------------------------------
# The switches and the work are in graphjit/anomaly.py ([Anomaly mode] there); the tape keeps
# the state, which it reads for every node it makes. Process-wide, as torch's AnomalyMode (not
# per thread). Read as module globals by the tape, the engine and graphjit/jit/: off, each
# pays one flag test.
_anomaly_mode = False
_anomaly_check_nan = True
# Installed by graphjit/anomaly.py when it is imported, before either flag can be turned on:
# ``_anomaly_record(node)`` remembers where the forward op that made ``node`` was called;
# ``_anomaly_apply(node, slots, needed)`` is the engine's ``node.apply(slots)`` with anomaly
# mode's checks. Called only while ``_anomaly_mode`` is on.
_anomaly_record = None
_anomaly_apply = None


def set_anomaly_hooks(record, apply) -> None:
    """Install anomaly mode's work (graphjit/anomaly.py, which sits above Tensor)."""
    global _anomaly_record, _anomaly_apply
    _anomaly_record, _anomaly_apply = record, apply


# ---- the tape -------------------------------------------------------------------------------

_sequence = itertools.count()


class _Meta:
    """Shape and dtype of an input whose value the VJP rule does not read."""
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class Node:
    """Common base of the tape's nodes (``grad_fn`` objects).

    ``next_functions`` holds one ``(node, output_nr)`` edge per input (``(None, 0)`` for an
    input that needs no gradient); ``apply`` takes one gradient per output of the node
    (None where no gradient arrived) and returns one per input.
    """
    # ``_anomaly``: where the forward op that made the node was called, recorded only in
    # anomaly mode (see [Anomaly mode] in graphjit/anomaly.py); read it with getattr.
    __slots__ = ("seq", "next_functions", "_anomaly", "__weakref__")
    num_outputs = 1
    # True: every gradient ``apply`` returns is a tensor of its own that nothing else refers
    # to, which the engine may store as a leaf's new ``.grad`` as it is ([Gradients the
    # engine may keep]).
    owns_grads = False

    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"


class AccumulateGrad(Node):
    """The node that adds a gradient into a leaf's ``.grad``."""
    __slots__ = ("variable",)

    def __init__(self, variable):
        self.seq = next(_sequence)
        self.variable = variable
        self.next_functions = ()


class _Stale:
    """Stands in for a saved value that was modified in place or freed since it was saved.

    VJP rules may compute gradients nobody asked for; an op that reads a stale value gives a
    stale result instead of failing, and the engine raises only if a stale gradient reaches
    an input that needs it. So ``y.mul_(3.0)`` (whose rule reads the old ``y`` only for the
    gradient of the constant) works, and a wrong gradient is never produced.
    """
    __slots__ = ("shape", "dtype", "error", "_requires_grad")

    def __init__(self, shape, dtype, error: str):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.error = error
        self._requires_grad = False

    @property
    def ndim(self) -> int:
        return len(self.shape)


def input_edge(t):
    """The edge to ``t``'s place on the tape: its grad_fn, a leaf's AccumulateGrad, or none."""
    if t._grad_fn is not None:
        return (t._grad_fn, t._output_nr)
    if t._requires_grad:
        return (t._accumulate_node(), 0)
    return (None, 0)


class ToCopyBackward(Node):
    """``grad_fn`` of ``t.to(device)``: the gradient goes back to ``t``'s device."""
    __slots__ = ("device",)

    def __init__(self, source):
        self.next_functions = (input_edge(source),)  # first: an edge made now is older
        self.seq = next(_sequence)
        self.device = source.device

    def name(self) -> str:
        return "ToCopyBackward0"

    def apply(self, grads):
        g = grads[0]
        return (None if g is None else g.to(self.device),)

    def release(self) -> None:
        pass


def record_move(source, out) -> None:
    """Put ``out``, a copy of ``source`` on another device, on the tape."""
    out._grad_fn = ToCopyBackward(source)
    out._requires_grad = True
    if _anomaly_mode:
        _anomaly_record(out._grad_fn)


class BackwardNode(Node):
    """``grad_fn`` of an op's output: ``MulBackward0``, ``ExpBackward0`` ..."""
    __slots__ = ("op", "attrs", "saved", "versions", "out", "out_version", "retained", "view_of")

    def __init__(self, op, attrs, inputs, out):
        self.op = op
        self.attrs = attrs
        saved, versions = [], []
        for i, t in enumerate(inputs):
            if op.saves_input(i):
                saved.append(t)
                versions.append(t._version.value)
            else:
                saved.append(_Meta(t.shape, t.dtype))
                versions.append(None)
        self.next_functions = tuple(input_edge(t) for t in inputs)
        # NOTE: [Node order] the sequence number is taken after the input edges exist (a leaf's
        # AccumulateGrad may be created just above), so every edge points to an older node and
        # decreasing seq is a reverse topological order.
        self.seq = next(_sequence)
        self.saved = saved
        self.versions = versions
        self.retained = None
        self.view_of = None
        self.bind_output(out)

    def bind_output(self, out) -> None:
        if "out" in self.op.saves:
            self.out = out
            self.out_version = out._version.value
        else:
            self.out = _Meta(out.shape, out.dtype)
            self.out_version = None

    def name(self) -> str:
        return f"{_camel(self.op.name)}Backward0"

    def _checked(self, t, version, what):
        if version is None or isinstance(t, (_Meta, _Stale)) or t._version.value == version:
            return t
        return _Stale(t.shape, t.dtype,
                      f"a value needed to compute the gradient of {self.op.name} was modified by an "
                      f"in-place operation: {what} of {self.name()}, a {t.dtype.name} tensor of "
                      f"shape {tuple(t.shape)}, is at version {t._version.value}; expected version "
                      f"{version}. Use an out-of-place op (x = x + y instead of x.add_(y)) or "
                      ".clone() the value before modifying it")

    def apply(self, grads):
        if self.view_of is not None and _changed_while_viewed(self.view_of):
            # NOTE: [In-place through views] the view and its base share memory and a version
            # counter; an in-place change of either that autograd recorded (one that gave
            # the tensor a new grad_fn) after the view was taken means the view's gradient
            # no longer describes how the data was computed. PyTorch rebases the view's
            # history (CopySlices); graphjit refuses rather than give a wrong gradient. A
            # change autograd did not record (under no_grad, or of data that requires no
            # grad) is not part of any gradient, here or in PyTorch: the view's backward
            # reads no data, and ops that saved the changed data check its version.
            raise AutogradError(f"{self.name()}: the view it made (shape {tuple(self.out.shape)}) "
                                "or the tensor it views was modified by an in-place operation "
                                "after the view was taken; autograd cannot follow in-place "
                                "changes through views. Use out-of-place ops, or .clone() the "
                                "view before modifying it")
        saved = [self._checked(t, v, f"input {i}")
                 for i, (t, v) in enumerate(zip(self.saved, self.versions))]
        out = self._checked(self.out, self.out_version, "its output")
        result = self.op.vjp(grads[0], out, *saved, **self.attrs)
        if len(result) != len(self.next_functions):
            raise GraphjitError(f"vjp of {self.op.name} returned {len(result)} gradients for "
                                f"{len(self.next_functions)} inputs")
        return result

    def release(self) -> None:
        """Free the saved values (after a backward without retain_graph)."""
        freed = (f"trying to backward through the graph a second time (through {self.name()}); "
                 "its saved values were freed by the first backward. Pass retain_graph=True to "
                 "the first backward() or graphjit.grad() call if you need to go through it again")
        self.saved = [t if isinstance(t, (_Meta, _Stale)) else _Stale(t.shape, t.dtype, freed)
                      for t in self.saved]
        if not isinstance(self.out, (_Meta, _Stale)):
            self.out = _Stale(self.out.shape, self.out.dtype, freed)


# NOTE: [Copied views]
# On the CPU, ``permute``, ``expand`` and ``slice`` (``x.T``, ``x[0]``, ``x[:, 1:]``) give
# NumPy views: writing into one writes into its base, and it sees later writes into its
# base. On CUDA, reshapes and slices that are one contiguous run of their base (``x[i]``,
# ``x[a:b]``: ``contiguous_slice`` in backend/cuda/eager.py) are device views too, sharing
# the base's memory and version counter; the others are copies (the kernels take flat
# contiguous buffers), where neither would happen. Rather than give other numbers than the CPU silently, such a copy
# remembers its base's memory's write counter (``_copy_of``: the storage's Version, its
# ``writes`` then, op; writes through ``.data`` count too): modifying
# the copy in place is an error (``Tensor._inplace``), and so is reading it once its base
# has changed in place (every eager CUDA op, ``.numpy()``, ``.item()``, ``.cpu()``, a
# compiled call), each naming what to do instead.

def check_copied_view(t, what: str) -> None:
    """Raise if ``t`` is a CUDA copy of a view whose base changed since (see [Copied views])."""
    copy_of = t.__dict__.get("_copy_of") if hasattr(t, "__dict__") else None
    if copy_of is not None and copy_of[0].writes != copy_of[1]:
        view = copy_of[2]
        raise CopiedViewError(
            f"this {t.dtype.name} tensor of shape {list(t.shape)} is a {view} of a CUDA tensor "
            f"that was modified in place after the {view} was taken; on CUDA a {view} is a "
            "copy, which does not see the change (on the CPU it would). Take it again after "
            "the change, or .clone() it before", op=what)


def _device_error(what, tensors):
    found = [(i, t) for i, t in enumerate(tensors) if getattr(t, "_data", None) is not None]
    first = found[0][1].device
    other = next(((i, t) for i, t in found if t.device != first and t.ndim > 0), found[-1])
    i0 = next(i for i, t in found if t.device == first)
    return GraphjitError(
        f"expected all tensors to be on the same device, but found {first} (input {i0}: "
        f"{tensors[i0].dtype.name}{list(tensors[i0].shape)}) and {other[1].device} (input "
        f"{other[0]}: {other[1].dtype.name}{list(other[1].shape)}); move them with "
        ".to(device)", op=what)


# ---- the eager interpreter ------------------------------------------------------------------

# NOTE: [Views of dead tensors]
# A view op's result remembers (weakly) the tensor whose memory it views, its root: the
# root of that tensor if it is a view too and its root is alive. ``Tensor._is_view`` is
# true only while that root exists: a composite that reshapes a temporary it made (the 1-D
# matmul's [1, n] product, reshaped to [n]) returns a tensor no other tensor shares memory
# with, which in-place ops with autograd may change, as PyTorch's fresh results can. A
# recorded change of the root made while it existed still counts (``_RootRef`` notes the
# root's counter when it goes): ``v = t[:, None]; t.copy_(p); del t`` and a backward through
# ``v`` refuses as it would with ``t`` alive (PyTorch would rebase ``v``'s history on the
# copy; an old history would give another gradient).
# (``detach`` shares memory too but is not a view for autograd's in-place check, as before.)

class _Gone:
    pass


_NO_ROOT = weakref.ref(_Gone())  # dead at once: "views no tensor"


def buffer_tensor(arr):
    """A tensor holding ``arr``, a NumPy view of a buffer no tensor owns (a compiled
    program's pooled result): like a fresh result, it is no view for autograd's in-place
    check (see above)."""
    t = Tensor._wrap(arr)
    if devices.is_view(arr):
        t._view_of = _NO_ROOT
    return t


class _RootRef(weakref.ref):
    """A view's weak reference to its root, which notes how many recorded in-place changes
    the root's counter had when the root went: those made while it lived still make the
    view's backward refuse ([In-place through views]); later ones are the view's own, as a
    tensor of its own ([Views of dead tensors])."""
    __slots__ = ("version", "gone_at")

    def __new__(cls, root):
        return super().__new__(cls, root, _root_gone)

    def __init__(self, root):
        super().__init__(root, _root_gone)
        self.version = root._version
        self.gone_at = None


def _root_gone(ref) -> None:
    ref.gone_at = ref.version.history


def _note_view(out, base, op) -> None:
    if op.name == "detach":
        return
    ref = base.__dict__.get("_view_of")
    out._view_of = ref if ref is not None and ref() is not None else _RootRef(base)


def _changed_while_viewed(view_of) -> bool:
    """Whether the tensor a view node viewed got a recorded in-place change (a new grad_fn)
    after the view was taken and while the tensor it views still existed."""
    version, history, ref = view_of
    if version.history == history:
        return False
    if ref is None or ref() is not None:
        return True
    gone_at = getattr(ref, "gone_at", None)  # (None: a buffer no tensor owns)
    return gone_at is not None and gone_at != history


class EagerInterpreter:
    """Runs ops at once on NumPy arrays and records the autograd tape."""
    concrete = True

    def apply(self, op, inputs, attrs):
        types = [TensorType(t.shape, t.dtype) for t in inputs]
        out_type = op.infer(*types, **attrs)
        for t in inputs:
            if type(t) is _Stale:
                return _Stale(out_type.shape, out_type.dtype, t.error)
        arrays = [t._data for t in inputs]
        if any(type(a) is not np.ndarray for a in arrays):
            return self._apply_cuda(op, inputs, attrs, arrays, out_type)
        try:
            with np.errstate(all="ignore"):
                result = op.impl(*arrays, **attrs)
        except GraphjitError:
            raise
        except (ValueError, IndexError, TypeError) as e:
            shapes = ", ".join(str(t) for t in types)
            raise GraphjitError(f"failed on inputs {shapes}: {e}", op=op.name) from None
        result = np.asarray(result)
        if result.dtype != out_type.dtype.np:
            result = result.astype(out_type.dtype.np)
        out = Tensor._wrap(result)
        if all(t.__dict__.get("_made_here") for t in inputs):
            out._made_here = True  # (so is what is computed from such values only: tril's mask)
        if op.view and inputs and np.may_share_memory(result, arrays[0]):
            out._version = inputs[0]._version
            _note_view(out, inputs[0], op)
        elif devices.is_view(result) and not any(np.may_share_memory(result, a)
                                                 for a in arrays):
            # A NumPy view of the op's own temporary (advanced indexing transposes one): a
            # fresh result, as in PyTorch, which in-place ops with autograd may change.
            out._view_of = _NO_ROOT
        return self._record(op, attrs, inputs, out, out_type)

    def _apply_cuda(self, op, inputs, attrs, arrays, out_type):
        """``op`` on CUDA tensors (see [Devices]): a 0-d CPU input stays on the CPU, its
        kernel takes it by value ([Host scalars] in graphjit/ir/host.py); another CPU input
        that graphjit made itself (an index list made a constant, an ``iota`` or ``full``
        of a VJP rule: see ``_made_here``) is copied over; any other CPU input is an error
        naming both devices."""
        # Index tensors may stay on the CPU (PyTorch accepts them for CUDA tensors too).
        for t in inputs:
            check_copied_view(t, op.name)
        index_op = op.kind == "index"
        if any(type(a) is np.ndarray and a.ndim > 0 and not t.__dict__.get("_made_here")
               and not (index_op and i > 0) for i, (t, a) in enumerate(zip(inputs, arrays))):
            raise _device_error(op.name, inputs)
        arrays = [a if type(a) is np.ndarray and a.ndim == 0
                  else devices.to_device(a, devices.CUDA) for a in arrays]
        from .backend.cuda import run_op
        result, is_view = run_op(op, arrays, attrs, out_type)
        out = Tensor._wrap(result)
        base = inputs[0] if inputs else None
        if is_view:  # as on the CPU
            out._version = base._version
            _note_view(out, base, op)
            out._device_view = True  # (NumPy's views say so themselves: arr.base)
            if "_copy_of" in base.__dict__:
                out._copy_of = base._copy_of
        elif op.view:  # permute, expand, strided slices: copies here (see [Copied views])
            out._copy_of = base.__dict__.get("_copy_of") or (base._version.storage,
                                                             base._version.storage.writes,
                                                             op.name)
        return self._record(op, attrs, inputs, out, out_type)

    def _record(self, op, attrs, inputs, out, out_type):
        if (op.vjp is not None and out_type.dtype.is_floating_point and _grad_enabled.get()
                and any(t._requires_grad for t in inputs)):
            out._grad_fn = BackwardNode(op, attrs, inputs, out)
            out._requires_grad = True
            if _anomaly_mode:
                _anomaly_record(out._grad_fn)
            if out._version is inputs[0]._version:  # a view: see [In-place through views]
                # (The root viewed, weakly: a view of a tensor that no longer exists can
                # change in place; see [Views of dead tensors].)
                out._grad_fn.view_of = (out._version, out._version.history,
                                        out.__dict__.get("_view_of"))
        return out

    def constant(self, array):
        out = Tensor._wrap(array)
        # Made by graphjit from the user's Python values, not a tensor of theirs: it may
        # join an op on CUDA tensors (copied over, see _apply_cuda).
        out._made_here = True
        return out

    def stale(self, value):
        return type(value) is _Stale


registry.set_default_interpreter(EagerInterpreter())
