"""``graphjit.cuda``: whether a CUDA device is here, as ``torch.cuda`` says it.

Importing graphjit never imports ``numba.cuda``; these functions do, on first call (see
[Devices] in graphjit/devices.py). With ``NUMBA_ENABLE_CUDASIM=1`` Numba's CUDA simulator
counts as one device (the tests run on it where no GPU is present).
"""
from __future__ import annotations

import functools
import os


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
    return cuda, None


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
