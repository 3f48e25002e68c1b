"""``graphjit.cuda``: whether a CUDA device is here, as ``torch.cuda`` says it.

Importing graphjit never imports ``numba.cuda``; these functions do, on first call (see
[Devices] in graphjit/devices.py). With ``NUMBA_ENABLE_CUDASIM=1`` Numba's CUDA simulator
counts as one device (the tests run on it where no GPU is present).
"""
from __future__ import annotations

import functools
import os
import sys
import threading

import numpy as np


@functools.lru_cache(maxsize=None)
def _probe():
    """``(numba.cuda module or None, reason it is unusable or None)``."""
    try:
        from numba import cuda
    except Exception as e:  # noqa: BLE001 - any failure to load means "not available"
        return None, (f"numba.cuda could not be imported ({type(e).__name__}: {e}); install "
                      "graphjit[cuda] (numba-cuda) and an NVIDIA driver")
    try:
        if not cuda.is_available():
            return None, ("numba.cuda finds no usable NVIDIA GPU or driver (set "
                          "NUMBA_ENABLE_CUDASIM=1 to run on Numba's CUDA simulator)")
    except Exception as e:  # noqa: BLE001
        return None, f"numba.cuda failed to look for a GPU ({type(e).__name__}: {e})"
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
        _guard_simulator_shared_arrays()
    return cuda, None


# NOTE: [The simulator's shared arrays]
# Numba's CUDA simulator runs a block's threads as Python threads, and
# ``cuda.shared.array`` finds the block's array by the caller's source line in a dict:
# look up, and if missing make one and store it. Two threads that get there at once can both
# miss and each make its own array, so a thread's writes are invisible to the others and a
# tiled matmul or a block reduction silently computes garbage (seen: one compiled SGD step
# in ~20 with ``sys.setswitchinterval(1e-6)``, NaN once; a real GPU has no such race). The
# lookup-and-store is made one step under a lock (same key, same arrays otherwise). Only
# when the simulator is on, and only if its class still looks as expected.

_shared_lock = threading.Lock()


def _guard_simulator_shared_arrays() -> None:
    try:
        from numba.cuda.simulator import kernelapi
        shared = kernelapi.FakeCUDAShared
    except (ImportError, AttributeError):
        return
    unguarded = shared.array
    if getattr(unguarded, "graphjit_guarded", False):
        return

    def array(self, shape, dtype, alignment=None):
        allocations = getattr(self, "_allocations", None)
        if shape == 0 or alignment is not None or not isinstance(allocations, dict):
            return unguarded(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)  # the simulator's own key
        with _shared_lock:
            found = allocations.get(caller)
            if found is None:
                found = allocations[caller] = np.empty(shape, _np_dtype(dtype))
        return found

    array.graphjit_guarded = True
    shared.array = array


def _np_dtype(dtype):
    """A NumPy dtype for ``cuda.shared.array``'s ``dtype`` (a Numba type or a NumPy one)."""
    from numba.cuda import types
    from numba.cuda.np import numpy_support
    return numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else np.dtype(dtype)


def is_available() -> bool:
    """Whether CUDA tensors can be made here (a GPU, or Numba's simulator)."""
    return _probe()[0] is not None


def why_unavailable() -> str | None:
    """Why ``is_available()`` is False (None when it is True)."""
    return _probe()[1]


def is_simulator() -> bool:
    """Whether the CUDA device is Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return is_available() and os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")


def device_count() -> int:
    cuda = _probe()[0]
    if cuda is None:
        return 0
    if is_simulator():
        return 1
    return len(cuda.gpus)


def get_device_name(index: int = 0) -> str:
    cuda = _probe()[0]
    if cuda is None:
        raise RuntimeError(f"no CUDA device: {why_unavailable()}")
    if is_simulator():
        return "Numba CUDA simulator"
    name = cuda.gpus[index].name
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronize() -> None:
    """Wait for every kernel launched so far to finish (for timing)."""
    cuda = _probe()[0]
    if cuda is not None:
        cuda.synchronize()
