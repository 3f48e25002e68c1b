"""The OpenBLAS that compiled programs' matrix products run on: its threads and its kernels.

# NOTE: [OpenBLAS core type]
``import graphjit`` leaves the process environment as it is: ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` are the user's (some machines set them because older OpenBLAS builds
compute wrong results or crash on their CPUs), and a library overriding them is wrong.
graphjit used to replace an AVX2 core type (``Haswell``, ``Zen``) by ``SkylakeX`` on CPUs
with AVX-512, where OpenBLAS's AVX2 kernels reach about half the float32 GEMM rate (205-230
against 396-415 GFLOP/s on the Zen 5 development VMs, whose environment sets
``OPENBLAS_CORETYPE=Haswell``); now it only says so: ``kernel_note`` is a line for
``graphjit dump --profile``, and ``benchmarks/suite.py`` may unset both variables for its own
child processes (and prints the kernels that ran).

# NOTE: [The BLAS of compiled programs]
Numba's ``np.dot`` in the generated kernels calls SciPy's ``scipy.linalg.cython_blas``, so the
library to ask is SciPy's OpenBLAS (the wheels' ``libscipy_openblas``, symbols prefixed
``scipy_``; a conda SciPy links a plain ``libopenblas``), not NumPy's (its own, ILP64, with
``64_`` suffixes: eager mode's matrix products). ``numba_openblas()`` finds it among the
libraries loaded in this process and calls it through ctypes. Elsewhere (MKL, Accelerate, no
OpenBLAS found) it returns None, and nothing here acts.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os

AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}  # what OpenBLAS's SkylakeX kernels use
# OpenBLAS x86-64 core types whose kernels use AVX2 at most (lower case).
BELOW_AVX512 = {"haswell", "zen", "sandybridge", "nehalem", "core2", "penryn", "dunnington",
                "atom", "barcelona", "bulldozer", "piledriver", "steamroller", "excavator",
                "prescott", "opteron", "katmai", "coppermine", "northwood", "banias"}

# OpenBLAS runs a GEMM of at most this many multiply-adds (m * n * k) on the calling thread
# (interface/gemm.c: SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD, 0.3.x): a program whose
# products are all this small never wakes OpenBLAS's threads.
GEMM_SINGLE_THREAD_MAX = 65536 * 4


def cpu_flags(path: str = "/proc/cpuinfo") -> set:
    """The first processor's feature flags (Linux); empty where they cannot be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


class OpenBLAS:
    """One loaded OpenBLAS library: ``get_num_threads()``, ``set_num_threads(n)`` (process
    wide: OpenBLAS built with pthreads has no per-thread setting) and ``corename()``."""

    def __init__(self, path: str, lib, prefix: str):
        self.path = path
        self._get = getattr(lib, f"{prefix}openblas_get_num_threads")
        self._get.restype, self._get.argtypes = ctypes.c_int, []
        self._set = getattr(lib, f"{prefix}openblas_set_num_threads")
        self._set.restype, self._set.argtypes = None, [ctypes.c_int]
        self._core = getattr(lib, f"{prefix}openblas_get_corename", None)
        if self._core is not None:
            self._core.restype, self._core.argtypes = ctypes.c_char_p, []

    def get_num_threads(self) -> int:
        return self._get()

    def set_num_threads(self, n: int) -> None:
        self._set(n)

    def corename(self) -> str | None:
        """The kernels OpenBLAS chose (``Haswell``, ``SkylakeX``, ...), or None."""
        if self._core is None:
            return None
        name = self._core()
        return name.decode("ascii", "replace").strip() if name else None


def _open(path: str) -> OpenBLAS | None:
    try:
        lib = ctypes.CDLL(path)  # loaded already: the same handle, nothing loads twice
    except OSError:
        return None
    for prefix in ("scipy_", ""):  # LP64 names only: cython_blas calls the LP64 interface
        if hasattr(lib, f"{prefix}openblas_get_num_threads") and \
                hasattr(lib, f"{prefix}openblas_set_num_threads"):
            return OpenBLAS(path, lib, prefix)
    return None


def _loaded_openblas_paths() -> list:
    """Files of the OpenBLAS libraries mapped into this process (Linux), SciPy's first."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if line.count(" ") >= 5}
    except (OSError, IndexError):
        return []
    found = sorted(p for p in paths if "openblas" in os.path.basename(p).lower())
    return sorted(found, key=lambda p: "scipy" not in p)


@functools.lru_cache(maxsize=None)
def numba_openblas() -> OpenBLAS | None:
    """The OpenBLAS that Numba's ``np.dot`` calls ([The BLAS of compiled programs]), or None."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)
    except ImportError:
        return None
    base = os.path.dirname(scipy.__file__)
    candidates = []
    for where in (base + ".libs", os.path.join(base, ".libs"), os.path.join(base, ".dylibs")):
        candidates += sorted(glob.glob(os.path.join(where, "*openblas*")))
    candidates += _loaded_openblas_paths()
    for path in candidates:
        lib = _open(path)
        if lib is not None:
            return lib
    return None


def kernel_note(corename: str | None, flags: set, environ=os.environ) -> str | None:
    """A line saying that OpenBLAS runs kernels below this CPU's (AVX2 or older kernels on a
    CPU with the AVX-512 subsets OpenBLAS's SkylakeX kernels use), and why; None if not."""
    if not corename or corename.strip().lower() not in BELOW_AVX512 or not AVX512 <= flags:
        return None
    set_to = environ.get("OPENBLAS_CORETYPE")
    why = (f"OPENBLAS_CORETYPE={set_to} in the environment chose them" if set_to else
           "this OpenBLAS build has no AVX-512 kernels for this CPU, or did not recognise it")
    return (f"note: matrix products run OpenBLAS's {corename} (AVX2) kernels on a CPU with "
            f"AVX-512: about half its float32 GEMM rate ({why}; graphjit leaves the variable "
            "as it is: unset it only where this OpenBLAS is known to work on this CPU)")
