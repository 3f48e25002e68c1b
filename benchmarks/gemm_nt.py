"""``a @ b.T`` on the shapes of weight gradients: OpenBLAS against graphjit's dot-product
kernel (graphjit/backend/cpu/gemm_nt.py, [Dot-product GEMM]), one thread, float32.

    python benchmarks/gemm_nt.py [--quick]

Prints, per shape ``a[m, k] @ b[n, k].T``, the median time of each over many runs, the
ratio, and what ``use_dots`` picks; a row where the pick is the slower one by more than 10%
is marked ``<-``. Both are checked against a float64 product first.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from graphjit.backend.cpu.gemm_nt import gemm_nt, use_dots  # noqa: E402

SHAPES = [  # (m, n, k): W7's and W8's convolutions' weight gradients, linear layers, others
    (6, 75, 50176), (16, 150, 6400), (6, 75, 4096), (16, 150, 1024),
    (64, 27, 65536), (64, 576, 65536), (128, 576, 16384), (256, 1152, 4096),
    (10, 84, 64), (120, 400, 64), (84, 120, 64), (512, 784, 256),
    (8, 8, 100000), (32, 32, 8192), (32, 300, 8192), (64, 64, 2048), (4, 1000, 5000),
]


def median_time(f, budget_s):
    f()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less time per shape")
    args = parser.parse_args()
    budget = 0.2 if args.quick else 1.0
    rng = np.random.default_rng(0)
    print(f"{'m':>5} {'n':>5} {'k':>7} {'OpenBLAS':>10} {'gemm_nt':>10} {'ratio':>6}  picks")
    for m, n, k in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k), dtype=np.float32)
        out = np.empty(m * n, np.float32)
        ref = a.astype(np.float64) @ b.astype(np.float64).T
        dots = lambda: gemm_nt(a.ravel(), b.ravel(), out, 0, 0, 0, m, n, k, k, k)  # noqa: E731
        dots()
        scale = np.sqrt(k) * 4
        assert np.abs(out.reshape(m, n) - ref).max() <= 1e-6 * scale * 10, (m, n, k)
        t_blas = median_time(lambda: a @ b.T, budget)
        t_dots = median_time(dots, budget)
        pick = use_dots(m, n, k)
        wrong = (t_dots > 1.1 * t_blas) if pick else (t_blas > 1.1 * t_dots)
        print(f"{m:>5} {n:>5} {k:>7} {t_blas * 1e3:>8.3f}ms {t_dots * 1e3:>8.3f}ms "
              f"{t_blas / t_dots:>6.2f}  {'gemm_nt' if pick else 'OpenBLAS'}{'  <-' if wrong else ''}")


if __name__ == "__main__":
    main()
