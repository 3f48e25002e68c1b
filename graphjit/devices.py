"""Devices: ``graphjit.device("cuda")``, and the array helpers that work on either device.

# NOTE: [Devices]
A tensor's data is a NumPy array on the CPU, or a Numba CUDA device array on the GPU
(``numba.cuda``: the ``numba-cuda`` package, the ``graphjit[cuda]`` extra). Either is
C-contiguous and owns its shape, so ``Tensor`` metadata (shape, dtype, ndim, size) reads the
same from both; the device is the array's type. Nothing here imports ``numba.cuda`` until a
CUDA device is asked for (``device("cuda")``, ``graphjit.cuda.is_available()``): CPU-only
users never load it.

There is one CUDA device, ``cuda:0`` (the current one). Where no GPU is present, Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) stands in for it: the same kernels run as Python
threads, slowly, which is what the tests use.

Ops take every tensor input from one device; a 0-d CPU tensor (a Python number made into a
constant) may join a CUDA op, as in PyTorch, and is copied over.
"""
from __future__ import annotations

import numpy as np

from .errors import GraphjitError


class device:  # noqa: N801 - torch.device
    """``device("cpu")``, ``device("cuda")`` / ``device("cuda:0")`` / ``device("cuda", 0)``."""

    __slots__ = ("type", "index")

    def __init__(self, spec, index=None):
        if isinstance(spec, device):
            spec, index = spec.type, spec.index if index is None else index
        if not isinstance(spec, str):
            raise TypeError(f"device(): expected a string such as 'cpu' or 'cuda', got {spec!r}")
        kind, _, number = spec.partition(":")
        if number:
            if index is not None:
                raise ValueError(f"device(): {spec!r} names an index already, and index={index}")
            if not number.isdigit():
                raise ValueError(f"device(): bad device index in {spec!r}")
            index = int(number)
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device(): unknown device type {kind!r} in {spec!r} (graphjit has "
                             "'cpu' and 'cuda')")
        if kind == "cpu" and index not in (None, 0):
            raise ValueError(f"device(): there is one CPU device, not {spec!r}")
        if kind == "cuda":
            index = 0 if index is None else int(index)
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "index", None if kind == "cpu" else index)

    def __setattr__(self, name, value):
        raise AttributeError("device objects are immutable")

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except (TypeError, ValueError):
                return False
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))


CPU = device("cpu")
CUDA = device("cuda", 0)


def as_device(spec) -> device:
    """``spec`` (a string, a ``device`` or None: the CPU) as a device that is available here:
    asking for CUDA where there is none is a clear error."""
    if spec is None:
        return CPU
    dev = spec if isinstance(spec, device) else device(spec)
    if dev.type == "cuda":
        from . import cuda
        if not cuda.is_available():
            raise GraphjitError(f"device {str(dev)!r} is not available: {cuda.why_unavailable()}")
        if dev.index >= cuda.device_count():
            raise GraphjitError(f"device {str(dev)!r} is not available: this machine has "
                                f"{cuda.device_count()} CUDA device(s)")
        if dev.index != 0:  # (rather than putting the data on cuda:0 and calling it cuda:1)
            raise GraphjitError(f"device {str(dev)!r}: graphjit runs on one CUDA device, "
                                "cuda:0 (the current one; choose it with CUDA_VISIBLE_DEVICES)")
    return dev


def of_array(arr) -> device:
    return CPU if type(arr) is np.ndarray else CUDA


def _cuda():
    from numba import cuda
    return cuda


# ---- moving and copying ---------------------------------------------------------------------

def to_host(arr) -> np.ndarray:
    """A NumPy array with ``arr``'s data: ``arr`` itself on the CPU, a copy from the GPU."""
    if type(arr) is np.ndarray:
        return arr
    return arr.copy_to_host()


def to_device(arr, dev: device):
    """``arr`` on ``dev``: the same array when it is there already, else a copy."""
    if dev.type == "cpu":
        return to_host(arr)
    if type(arr) is not np.ndarray:
        return arr
    # (np.ascontiguousarray would make a 0-d array 1-d.)
    return _cuda().to_device(arr if arr.flags.c_contiguous else np.ascontiguousarray(arr))


def copy(arr):
    """A new array on ``arr``'s device with its data."""
    if type(arr) is np.ndarray:
        return np.array(arr, copy=True)
    out = _cuda().device_array(arr.shape, arr.dtype)
    out.copy_to_device(arr)
    return out


def copyto(dst, src) -> None:
    """Write ``src`` (same shape and dtype; on ``dst``'s device, or a NumPy array) into ``dst``."""
    if type(dst) is np.ndarray:
        np.copyto(dst, to_host(src))
        return
    if type(src) is np.ndarray:
        src = np.ascontiguousarray(src)
    dst.copy_to_device(src)


def empty(shape, dtype, dev: device):
    if dev.type == "cpu":
        return np.empty(shape, dtype)
    return _cuda().device_array(tuple(shape), np.dtype(dtype))


def zeros(shape, dtype, dev: device):
    return full(shape, 0, dtype, dev)


def full(shape, value, dtype, dev: device):
    if dev.type == "cpu":
        return np.full(shape, value, dtype)
    from .backend.cuda.runtime import fill
    out = empty(shape, dtype, dev)
    fill(out, value)
    return out


def writeable(arr) -> bool:
    """Whether ``arr`` may be written in place (device arrays always may)."""
    return type(arr) is not np.ndarray or arr.flags.writeable


def is_view(arr) -> bool:
    """Whether the NumPy array ``arr`` views another array's memory. A device array does not
    say: the tensors that view one are marked instead (``Tensor._is_view``)."""
    return type(arr) is np.ndarray and arr.base is not None
