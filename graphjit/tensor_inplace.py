"""In-place changes of tensors: the version counter, the view check and the one path every
in-place op takes (``add_``, ``copy_``, ``x[key] = v`` ...).

``Tensor._inplace``, ``Tensor._is_view`` and ``Tensor.__setitem__`` (graphjit/tensor.py) call
these; the ops themselves stay Tensor's methods. The rules they enforce are autograd's:
[In-place through views], [Copied views] and [Views of dead tensors] in graphjit/autograd_tape.py.
"""
from __future__ import annotations

from . import _tracing
from . import autograd_tape as _tape
from . import devices, dtypes
from .errors import AutogradError, CopiedViewError, DTypeError, GraphjitError, ShapeError
from .ops import api


class Version:
    """The version counter shared by a tensor and its views; bumped by in-place ops.
    ``history`` counts only the in-place ops autograd recorded (those that gave the tensor a
    new ``grad_fn``): see [In-place through views] in autograd_tape.py. ``storage`` is the
    Version whose ``writes`` count every change of the memory, also those through ``.data``
    (an alias with a counter of its own, invisible to autograd, as in PyTorch): what a CUDA
    copy of a view checks to know it is stale ([Copied views] in autograd_tape.py)."""
    __slots__ = ("value", "history", "writes", "storage")

    def __init__(self, storage=None):
        self.value = 0
        self.history = 0
        self.writes = 0
        self.storage = self if storage is None else storage

    def bump(self):
        self.value += 1
        self.storage.writes += 1


def is_view(t) -> bool:
    """Whether ``t``'s data views another tensor's memory: made by a view op from a tensor
    that still exists ([Views of dead tensors] in autograd_tape.py), else a NumPy view, or a
    device view made by an eager CUDA op (see [Copied views])."""
    ref = t.__dict__.get("_view_of")
    if ref is not None:
        return ref() is not None
    return devices.is_view(t._data) or "_device_view" in t.__dict__


def inplace(t, op_name: str, compute):
    """Run the in-place op ``op_name`` on ``t``: ``compute()`` gives the new value, which is
    written into ``t``'s memory (eager) or becomes ``t``'s value in the trace; autograd's
    in-place rules are checked first. Returns ``t``."""
    if t._requires_grad and t.is_leaf and _tape.is_grad_enabled():
        raise AutogradError(f"{op_name}: a leaf tensor that requires grad (shape {t.shape}) "
                            "is used in an in-place operation; wrap it in graphjit.no_grad() "
                            "or work on a clone")
    copy_of = t.__dict__.get("_copy_of")
    if copy_of is not None:  # see [Copied views] in autograd_tape.py
        view = copy_of[2]
        raise CopiedViewError(
            f"in-place change of a {view} of a CUDA tensor (shape {list(t.shape)}): on "
            f"CUDA a {view} is a copy, so the change would not reach the tensor it was "
            "taken from (on the CPU it would). Modify that tensor itself (x[key] = value), "
            f"or .clone() the {view} to make the copy explicit", op=op_name)
    result = compute()
    if (t._requires_grad and not result._requires_grad and _tape.is_grad_enabled()
            and tuple(result.shape) == tuple(t.shape) and result.dtype is t.dtype):
        # A result that does not depend on the tensor (copy_ from a constant, zero_):
        # the tensor stays in the graph with a zero gradient to what it held, as
        # PyTorch's CopyBackwards / ZeroBackward0, not the old history's.
        result = api.where(api.full((), True, dtypes.bool_), result, t)
    if (t._data is not None and t._is_view() and _tape.is_grad_enabled()
            and (t._requires_grad or result._requires_grad)):
        # See [In-place through views] in autograd_tape.py.
        raise AutogradError(f"{op_name}: in-place operation on a view (shape {t.shape}) "
                            "while autograd records: its gradient would not reach the tensor "
                            "it views. Use an out-of-place op, or .clone() the view first")
    tracer = _tracing.active()
    if tracer is not None:
        # Tracing: the graph gets a functional update; the tracer remembers that `t`
        # now holds `result` and writes it back after the compiled program runs.
        return tracer.assign(t, result, op_name)
    if result.shape != t.shape:
        raise ShapeError(f"the result has shape {result.shape}, which does not fit the tensor "
                         f"of shape {t.shape} that is modified in place", op=op_name)
    if result.dtype is not t.dtype:
        if result.dtype.category > t.dtype.category:
            raise DTypeError(f"result type {result.dtype.name} can't be cast to the tensor's "
                             f"dtype {t.dtype.name} in place", op=op_name)
        result = api.cast(result, t.dtype)
    if not devices.writeable(t._data):
        raise ShapeError(f"the tensor of shape {t.shape} is a read-only broadcast view; "
                         "clone() it before modifying it in place", op=op_name)
    if result.device != t.device:
        raise GraphjitError(f"the result is on {result.device}, the tensor modified in place "
                            f"(shape {t.shape}) on {t.device}", op=op_name)
    devices.copyto(t._data, result._data)
    t._version.bump()
    if result._grad_fn is not None:
        t._version.history += 1
        result._grad_fn.bind_output(t)
        t._grad_fn = result._grad_fn
        t._output_nr = result._output_nr
        t._requires_grad = True
    return t


def write_items(t, np_key, src) -> None:
    """Eager ``t[key] = value`` outside autograd, with the key and the value already NumPy
    (or Python) objects: written in place, and ``t``'s version bumped."""
    if t.is_cuda:  # assigned on a host copy, written back (one round trip)
        host = devices.to_host(t._data)
        host[np_key] = src
        devices.copyto(t._data, host)
    else:
        t._data[np_key] = src
    t._version.bump()
