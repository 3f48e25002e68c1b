"""Where a tensor's data lives and how it leaves: ``device``, ``to``/``cuda``/``cpu`` (moves
between devices, differentiable), and the reads that copy the data out to NumPy or Python
(``numpy()``, ``item()``, ``tolist()``, ``float(t)``, ``if t:`` ...). The device rules
themselves are [Devices] in graphjit/devices.py.

``TensorDevices`` is a base class of ``Tensor`` (graphjit/tensor.py) rather than a set of
functions that Tensor's methods call: these are some twenty small methods, and stubs that
only forward would be as long as the methods. tensor.py imports this module, so nothing here
imports tensor.py: ``isinstance(x, TensorDevices)`` stands for ``isinstance(x, Tensor)``
(Tensor is the one class built on it), and ``t._plain(arr)`` is Tensor's way to make a
plain Tensor (never a subclass such as Parameter).
"""
from __future__ import annotations

import numpy as np

from . import _tracing
from . import autograd_tape as _tape
from . import devices, dtypes
from .dtypes import DType
from .errors import AutogradError, GraphjitError, ShapeError
from .ops import api


class TensorDevices:
    """Tensor's methods about its device and about reading its data out (see above)."""

    __slots__ = ()

    @property
    def device(self) -> devices.device:
        """``device(type='cpu')`` or ``device(type='cuda', index=0)`` (see [Devices])."""
        return devices.CPU if type(self._data) is np.ndarray else devices.CUDA

    @property
    def is_cuda(self) -> bool:
        return type(self._data) is not np.ndarray

    def _read(self, what: str) -> None:
        """Reading the data in Python: refused while tracing ([Reading data while tracing])."""
        tracer = _tracing.active()
        if tracer is not None:
            tracer.refuse_read(self, what)

    def numpy(self) -> np.ndarray:
        self._read(".numpy()")
        if self._requires_grad:
            raise AutogradError("can't call numpy() on a tensor that requires grad; use "
                                "tensor.detach().numpy()")
        _tape.check_copied_view(self, "numpy")
        return devices.to_host(self._data)  # a copy from the GPU (see [Devices])

    def __array__(self, dtype=None, copy=None):
        self._read("converting to a NumPy array")
        if self._requires_grad:
            raise AutogradError("can't convert a tensor that requires grad to a NumPy array; use "
                                "tensor.detach().numpy()")
        _tape.check_copied_view(self, "__array__")
        arr = devices.to_host(self._data)
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        return np.array(arr, copy=True) if copy else arr

    def item(self):
        self._read(".item()")
        if self._data.size != 1:
            raise ShapeError(f"a tensor with {self._data.size} elements (shape {self.shape}) cannot "
                             "be converted to a Python scalar", op="item")
        _tape.check_copied_view(self, "item")
        return devices.to_host(self._data).reshape(()).item()

    def tolist(self):
        self._read(".tolist()")
        _tape.check_copied_view(self, "tolist")
        return devices.to_host(self._data).tolist()

    def __float__(self):
        self._read("float()")
        return float(self.item())

    def __int__(self):
        self._read("int()")
        return int(self.item())

    def __index__(self):
        self._read("using a tensor as a Python int (an index, range(), ...)")
        if self.dtype is not dtypes.int64 or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def __bool__(self):
        self._read("Python control flow (if/while/and/or, bool()) on a tensor")
        if self._data.size != 1:
            raise ShapeError(f"the truth value of a tensor with {self._data.size} elements is "
                             "ambiguous; use .any() or .all()", op="bool")
        return bool(self.item())

    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to("cuda")``, ``to(device, dtype)`` or ``to(other)`` (other's
        dtype and device) like PyTorch. Moving copies the data; the result is a new tensor
        whose gradient flows back to this one."""
        dtype, device, copy = parse_to_args("to", args, kwargs)
        out = self if dtype is None or dtype is self.dtype else api.cast(self, dtype)
        if device is not None:
            target = devices.as_device(device)
            if target != out.device:
                return move(out, target)
        return out.clone() if copy and out is self else out

    def cuda(self, device=None):
        return self.to(devices.CUDA if device is None else
                       devices.device("cuda", device) if isinstance(device, int) else device)

    def cpu(self):
        return self.to(devices.CPU)

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def long(self):
        return self.to(dtypes.int64)

    def bool(self):
        return self.to(dtypes.bool_)


def parse_to_args(who: str, args, kwargs):
    """``(dtype, device, copy)`` from the arguments of ``Tensor.to`` / ``Module.to``."""
    kwargs = dict(kwargs)
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    kwargs.pop("non_blocking", None)
    copy = kwargs.pop("copy", False)
    if kwargs:
        raise TypeError(f"{who}(): unexpected arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, DType):
            dtype = a
        elif isinstance(a, TensorDevices):  # a Tensor (Tensor is built on this class)
            dtype, device = a.dtype, a.device
        elif isinstance(a, (str, devices.device)):
            device = a
        else:
            raise TypeError(f"{who}(): unexpected argument {a!r}")
    return dtype, (None if device is None else devices.as_device(device)), copy


def move(t, target):
    """``t`` copied to ``target``, as a differentiable op would be (its gradient moves back):
    a plain Tensor, even when ``t`` is a Parameter."""
    tracer = _tracing.active()
    if tracer is not None:
        tracer.refuse(f"moving a tensor ({t.dtype.name}{list(t.shape)}) from {t.device} to "
                      f"{target}", "a compiled program runs on one device; move its inputs "
                      "before calling it")
    if t._data is None:
        raise GraphjitError(f"moving a tensor ({t.dtype.name}{list(t.shape)}) from {t.device} to "
                            f"{target} inside a compiled function: a compiled program runs on "
                            "one device; move its inputs before calling it", op="to")
    _tape.check_copied_view(t, "to")
    out = t._plain(devices.to_device(t._data, target))
    if t._requires_grad and _tape.is_grad_enabled():
        _tape.record_move(t, out)
    return out
