"""Copies and pickles of tensors: what ``copy.deepcopy(t)`` and ``pickle.dumps(t)`` do.

``Tensor.__deepcopy__`` and ``Tensor.__reduce_ex__`` (graphjit/tensor.py) call these. The
function that rebuilds a pickled tensor, ``graphjit.tensor._unpickle``, stays in tensor.py:
pickles (checkpoints saved with ``pickle_module=`` among them) name it there.
"""
from __future__ import annotations

import copy

from . import _tracing, devices
from .errors import AutogradError, GraphjitError

# NOTE: [Copies of tensors]
# ``copy.deepcopy`` and ``pickle`` copy the data on either device; a copy never shares
# memory or autograd state with the original. (A Numba device array can be neither
# deep-copied nor pickled itself, so the default protocol cannot be used: on a GPU it
# raised, on the simulator it brought the copy back to the CPU.) As in PyTorch: only
# leaves deep-copy (a copy has no graph), keeping ``requires_grad``, a deep copy of
# ``.grad`` and the attributes set on the tensor; a pickle holds the data as a NumPy
# array and the device it was on (unpickled there: CUDA must be available), with
# ``requires_grad`` and those attributes, not the graph or ``.grad``. graphjit's own
# per-tensor markers (``COPY_SKIPS``) describe the original's memory and are dropped,
# and so are its hooks (they belong to whoever registered them, DDP say).
COPY_SKIPS = ("_device_view", "_copy_of", "_made_here", "_view_of",
              "_post_accumulate_grad_hooks")


def attributes(t) -> dict:
    """The attributes set on ``t`` that its copies keep (not graphjit's ``COPY_SKIPS``)."""
    return {k: v for k, v in t.__dict__.items() if k not in COPY_SKIPS}


def deepcopy(t, memo):
    """``copy.deepcopy(t)``: a new leaf of ``t``'s class (see [Copies of tensors])."""
    refuse_while_tracing("copy.deepcopy")
    if t._data is None:
        raise GraphjitError("a tensor being traced by @graphjit.compile can't be deep-copied "
                            "(copy it outside the compiled function, or use .clone())")
    if t._grad_fn is not None:
        raise AutogradError("only leaf tensors (made by you, not computed from tensors that "
                            "require grad) can be deep-copied, as in PyTorch; deep-copy "
                            "t.detach() instead")
    new = type(t)._wrap(devices.copy(t._data))
    memo[id(t)] = new
    new._requires_grad = t._requires_grad
    if t._grad is not None:
        new._grad = copy.deepcopy(t._grad, memo)
    for key, value in attributes(t).items():
        new.__dict__[key] = copy.deepcopy(value, memo)
    return new


def pickle_args(t) -> tuple:
    """The arguments ``graphjit.tensor._unpickle`` rebuilds ``t`` from: the data as a NumPy
    array, the device's name, ``requires_grad`` and the attributes (see [Copies of tensors])."""
    refuse_while_tracing("pickling")
    if t._data is None:
        raise GraphjitError("a tensor being traced by @graphjit.compile can't be pickled")
    return devices.to_host(t._data), str(t.device), t._requires_grad, attributes(t)


def refuse_while_tracing(what: str) -> None:
    tracer = _tracing.active()
    if tracer is not None:
        tracer.refuse(f"{what} of a tensor", "copy or save it outside the compiled function "
                      "(inside, t.clone() copies a tensor)")
