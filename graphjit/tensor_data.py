"""Python and NumPy values as tensor data: sizes given as ``*size`` or one sequence
(``shape_args``), nested lists, scalars and arrays copied into an array of a graphjit dtype
with PyTorch's inference rules (``to_array``), and index keys for NumPy (``numpy_index``).

graphjit/tensor.py and the creation functions call these. tensor.py imports this module, so
nothing here imports tensor.py: as in graphjit/tensor_device.py, ``isinstance(x,
TensorDevices)`` stands for ``isinstance(x, Tensor)`` (Tensor is the one class built on it).
"""
from __future__ import annotations

import numbers

import numpy as np

from . import devices, dtypes
from .dtypes import DType
from .errors import DTypeError
from .tensor_device import TensorDevices


def shape_args(size) -> tuple:
    """The sizes of ``zeros(2, 3)`` or ``zeros((2, 3))`` (``size``: the ``*size`` tuple)."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def to_array(data, dtype: DType | None) -> np.ndarray:
    """Copy Python/NumPy data into an array of a graphjit dtype (PyTorch's inference rules)."""
    if isinstance(data, TensorDevices):
        arr = devices.to_host(data._data)
    elif isinstance(data, (list, tuple)):
        arr = np.array([to_array(d, None) if isinstance(d, TensorDevices) else d for d in data]) \
            if any(isinstance(d, TensorDevices) for d in data) else np.array(data)
    else:
        arr = np.array(data)
    if arr.dtype == object:
        raise DTypeError(f"cannot make a tensor from {type(data).__name__} data")
    if dtype is None:
        known = arr.dtype in (d.np for d in dtypes.ALL)
        if isinstance(data, (np.ndarray, TensorDevices)) and known:
            dtype = dtypes.from_numpy(arr.dtype)
        elif isinstance(data, numbers.Number) and isinstance(data, np.generic) and known:
            dtype = dtypes.from_numpy(arr.dtype)
        elif arr.dtype.kind == "f":
            dtype = dtypes.get_default_dtype()  # Python floats -> the default dtype
        else:
            dtype = dtypes.from_numpy(arr.dtype, convert=True)
    return np.array(arr, dtype=dtype.np, copy=True)


def numpy_index(key):
    """An index key with its tensors replaced by their data, on the host."""
    items = key if isinstance(key, tuple) else (key,)
    out = tuple(devices.to_host(k._data) if isinstance(k, TensorDevices) else k for k in items)
    return out if isinstance(key, tuple) else out[0]
