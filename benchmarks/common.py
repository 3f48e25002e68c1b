"""Helpers shared by the benchmarks: timing, this machine's limits, its description, checks.

Nothing here imports torch or jax: they are optional peers, imported only where used.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np


def call_times(fn, repeats, warmup):
    """Wall times of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, repeats, warmup=2):
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    return float(np.median(call_times(fn, repeats, warmup)))


def warm_up(fn, warmup):
    """Time the first call of ``fn`` (a JIT peer compiles there), then run ``warmup`` more.
    Returns (first_s, fastest warmup call in s)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    fastest = first
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - t0)
    return first, fastest


def time_interleaved(fns, estimates, *, budget_s, min_repeats, max_repeats, rounds):
    """Time several step functions in turns, so a noisy neighbour slows all of them alike.

    ``fns`` and ``estimates`` (seconds per call) are dicts by name. Each function gets
    between ``min_repeats`` and ``max_repeats`` timed calls (as many as fit in ``budget_s``),
    spread over ``rounds`` rounds; every round runs the functions in a rotated order.
    Returns per name: median_s, min_s, p25_s, p75_s, repeats.
    """
    names = list(fns)
    per_round = {n: max(1, -(-int(min(max_repeats, max(min_repeats, budget_s / max(estimates[n], 1e-7))))
                         // rounds)) for n in names}
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[n]
            for _ in range(per_round[n]):
                t0 = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - t0)
    out = {}
    for n in names:
        t = np.asarray(times[n])
        out[n] = {"median_s": float(np.median(t)), "min_s": float(t.min()),
                  "p25_s": float(np.percentile(t, 25)), "p75_s": float(np.percentile(t, 75)),
                  "repeats": int(t.size)}
    return out


def best_and_median(fn, repeats):
    """(fastest, median) wall time of ``fn()`` over ``repeats`` calls after one untimed call."""
    times = call_times(fn, repeats, warmup=1)
    return float(np.min(times)), float(np.median(times))


def copy_bandwidth(n, repeats=10, best=False):
    """GB/s of ``np.copyto`` over ``n`` float32 values, counting bytes read plus written
    (from the median time; from the fastest with ``best``)."""
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    fastest, median = best_and_median(lambda: np.copyto(dst, src), repeats)
    return 2 * n * 4 / (fastest if best else median) / 1e9


def stream_bandwidths(n, repeats=8):
    """GB/s (from the fastest repeat) of three NumPy streams over ``n`` float32 values:
    ``copy`` (np.copyto; read + write bytes, and its destination costs a hidden read on most
    CPUs), ``scale in place`` (np.multiply(a, s, out=a): read + write of one array, as an
    in-place optimizer update does) and ``add`` (np.add(a, b, out=a): two reads, one write)."""
    a, b = np.ones(n, np.float32), np.empty(n, np.float32)
    b.fill(0.0)
    one = np.float32(1.0)
    cases = {"copy": (lambda: np.copyto(b, a), 8), "scale in place": (lambda: np.multiply(a, one, out=a), 8),
             "add": (lambda: np.add(a, b, out=a), 12)}
    return {k: bytes_per * n / best_and_median(f, repeats)[0] / 1e9 for k, (f, bytes_per) in cases.items()}


def gemm_rate(n=2048, repeats=5, best=False):
    """GFLOP/s of NumPy's float32 ``a @ b`` for n x n matrices (2 n^3 FLOPs), from the median
    time (from the fastest with ``best``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    fastest, median = best_and_median(lambda: np.matmul(a, b, out=out), repeats)
    return 2 * n ** 3 / (fastest if best else median) / 1e9


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - old NumPy: no dict mode
        return "?"


def package_version(name):
    """The installed version of a distribution, or None, without importing it (importing
    torch or JAX would start their thread pools in this process)."""
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info():
    """A dict describing this machine and the software measured."""
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_name(),
        "numba": package_version("numba"),
        "graphjit": package_version("graphjit"),
        "torch": package_version("torch"),
        "jax": package_version("jax"),
        "jaxlib": package_version("jaxlib"),
        "scipy": package_version("scipy"),
    }


def blas_kernels():
    """Per BLAS library loaded in this process: its file, kernel architecture (OpenBLAS's
    core type, e.g. Haswell or SkylakeX) and threads, from threadpoolctl's
    ``threadpool_info()``; or one entry with a ``note`` where threadpoolctl is missing
    (``pip install -e .[bench]``)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl is not installed (pip install -e .[bench]): the "
                         "OpenBLAS kernels that ran are unknown"}]
    return [{"file": os.path.basename(m.get("filepath") or "?"),
             "architecture": m.get("architecture"), "num_threads": m.get("num_threads"),
             "version": m.get("version")}
            for m in threadpool_info() if m.get("user_api") == "blas"]


def fmt_blas_kernels(libs):
    """``blas_kernels()`` as one line."""
    return "; ".join(b["note"] if "note" in b else
                     f"{b['file']}: {b['architecture']} kernels, {b['num_threads']} threads"
                     for b in libs) or "no BLAS loaded"


def fmt_seconds(s):
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"
