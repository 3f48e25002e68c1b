"""OpenBLAS's kernels on CPUs with AVX-512 (``graphjit`` runs this before importing NumPy).

# NOTE: [OpenBLAS core type]
OpenBLAS (inside the NumPy and SciPy wheels) picks its kernels by the CPU, unless
``OPENBLAS_CORETYPE`` names a core type. The development VMs set
``OPENBLAS_CORETYPE=Haswell`` in every process's environment (right for their Zen 3
machines, which have no AVX-512), so on the Zen 5 ones OpenBLAS ran its AVX2 kernels:
float32 GEMM 2048^2 at 205-230 GFLOP/s, against 396-415 GFLOP/s with the variable unset
(OpenBLAS then picks "SkylakeX", its AVX-512 kernels) or set to SkylakeX. Compiled
programs' matrix products are SciPy's OpenBLAS (Numba's ``np.dot``), so W2's MLP step lost
a third of its speed to the variable.

So where the CPU has AVX-512 F, BW, DQ and VL (what the SkylakeX kernels use) and
``OPENBLAS_CORETYPE`` names an AVX2-or-older core type, graphjit replaces it with
SkylakeX; ``REPLACED`` keeps the value it had. An unset variable, or one naming any other
core type, is left alone, and ``GRAPHJIT_OPENBLAS_CORETYPE=keep`` leaves it alone always.
OpenBLAS reads the variable once, when the library loads: a NumPy imported before graphjit
keeps its kernels (eager mode's matrix products run on it), and so does SciPy's OpenBLAS
if ``scipy.linalg`` was imported before the first compile.
"""
from __future__ import annotations

import os

_AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
# OpenBLAS x86-64 core types whose kernels use AVX2 at most (lower case).
_BELOW_AVX512 = {"haswell", "zen", "sandybridge", "nehalem", "core2", "penryn", "dunnington",
                 "atom", "barcelona", "bulldozer", "piledriver", "steamroller", "excavator"}

REPLACED = None  # the OPENBLAS_CORETYPE graphjit replaced, if it did


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


def better_coretype(current: str | None, flags: set) -> str | None:
    """The core type to use instead of ``current`` (``OPENBLAS_CORETYPE``, None if unset)
    on a CPU with ``flags``, or None to keep it."""
    if current is not None and current.strip().lower() in _BELOW_AVX512 and _AVX512 <= flags:
        return "SkylakeX"
    return None


def choose_openblas_kernels() -> None:
    """Replace ``OPENBLAS_CORETYPE`` as [OpenBLAS core type] says."""
    global REPLACED
    current = os.environ.get("OPENBLAS_CORETYPE")
    if current is None or os.environ.get("GRAPHJIT_OPENBLAS_CORETYPE", "").lower() == "keep":
        return
    better = better_coretype(current, cpu_flags())
    if better is not None:
        REPLACED = current
        os.environ["OPENBLAS_CORETYPE"] = better
