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
Two OpenBLAS builds live in a process that imports graphjit from the wheels: NumPy's (its own
copy, ILP64: 64-bit integer arguments, symbols ``scipy_..64_``), which eager mode's matrix
products call, and SciPy's (``libscipy_openblas``, LP64, ``scipy_...``), which Numba's
``np.dot`` calls through ``scipy.linalg.cython_blas``. Compiled programs call NumPy's
(``numpy_openblas()``; the kernels call its ``cblas_?gemm`` by a symbol graphjit registers with
LLVM, see backend/cpu/blas.py): the same library and kernels as eager mode (on the same number of
threads a product gives the same bits compiled and eager), and on the skinny products of convolutions (6 or 16 rows,
tens of thousands of columns) NumPy's build (0.3.31) ran 1.5-1.8x faster than SciPy's (0.3.30)
on the 2-core VM. Where NumPy has no such OpenBLAS (MKL, Accelerate, a conda build), programs
call Numba's ``np.dot``, and ``numba_openblas()`` finds SciPy's among the libraries loaded in
this process. ``program_openblas()`` in backend/cpu/blas.py is the one the programs call: the
one whose threads graphjit holds to one for a call ([Threads under load] in
backend/cpu/threads.py) and whose kernels ``graphjit dump --profile`` names. Elsewhere (MKL, no
OpenBLAS found) it is None, and nothing here acts.
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

    def __init__(self, path: str, lib, prefix: str, suffix: str = ""):
        self.path = path
        self.lib, self.prefix, self.suffix = lib, prefix, suffix
        self._get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
        self._get.restype, self._get.argtypes = ctypes.c_int, []
        self._set = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
        self._set.restype, self._set.argtypes = None, [ctypes.c_int]
        self._core = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
        if self._core is not None:
            self._core.restype, self._core.argtypes = ctypes.c_char_p, []

    def address(self, name: str) -> int | None:
        """The address of the library's function ``name`` (``cblas_sgemm``: prefix and
        suffix added), or None."""
        fn = getattr(self.lib, f"{self.prefix}{name}{self.suffix}", None)
        return None if fn is None else ctypes.cast(fn, ctypes.c_void_p).value

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


@functools.lru_cache(maxsize=None)
def numpy_openblas() -> OpenBLAS | None:
    """NumPy's own OpenBLAS when it is an ILP64 build with the ``scipy_`` prefix and ``64_``
    suffix (the NumPy 2 wheels' ``libscipy_openblas64_``) and has both GEMMs, or None
    ([The BLAS of compiled programs])."""
    import numpy as np
    base = os.path.dirname(os.path.dirname(np.__file__))
    candidates = sorted(glob.glob(os.path.join(base, "numpy.libs", "*openblas64_*")))
    candidates += sorted(glob.glob(os.path.join(base, "numpy", ".dylibs", "*openblas64_*")))
    candidates += [p for p in _loaded_openblas_paths() if "openblas64_" in os.path.basename(p)]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)  # NumPy loaded it already: the same handle
        except OSError:
            continue
        names = ("openblas_get_num_threads", "openblas_set_num_threads", "cblas_sgemm",
                 "cblas_dgemm")
        if all(hasattr(lib, f"scipy_{n}64_") for n in names):
            return OpenBLAS(path, lib, "scipy_", "64_")
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
