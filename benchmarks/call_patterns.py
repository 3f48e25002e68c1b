"""The ways users call the compiler, timed interleaved in one process (issue 21 point 2).

    python benchmarks/call_patterns.py [--only W1,W2] [--rounds 40] [--steps 5]

For each workload with calling patterns (``Impl(pattern=True)`` in benchmarks/workloads:
``opt.zero_grad()`` or ``p.grad = None`` outside the compiled step, a compiled forward with
an eager backward and step, ``graphjit.compile(model)`` ...) it builds the whole compiled
step and every pattern in this process, then runs ``--rounds`` rounds, each ``--steps``
steps of every one in turn, and prints each pattern's median time per step as a ratio to
the whole compiled step's, with the pattern's target. ``benchmarks/suite.py`` times each
implementation in a process of its own; on a shared machine a busy spell then lands on one
of them only, while here it lands on all of them alike, so the ratios hold still.
One thread per library, as the suite's default (set before NumPy and Numba start).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # (a benchmark script's own process, not library code)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import WORKLOADS  # noqa: E402
from workloads.base import GRAPHJIT_COMPILED  # noqa: E402


def measure(key, rounds, steps):
    w = WORKLOADS[key]
    impls = [w.impl(GRAPHJIT_COMPILED)] + [i for i in w.impls if i.pattern]
    runs = {}
    for impl in impls:
        step, _ = impl.make(w.init())
        for _ in range(3):  # the first calls trace and compile
            step()
        runs[impl.name] = step
    times = {impl.name: [] for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            step = runs[impl.name]
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[impl.name].append((time.perf_counter() - t0) / steps)
    base = float(np.median(times[GRAPHJIT_COMPILED]))
    print(f"\n{key}  {w.title}")
    for impl in impls:
        t = float(np.median(times[impl.name]))
        target = f"  (target {impl.target:g}x: {'met' if t / base <= impl.target else 'MISSED'})" \
            if impl.target else ""
        print(f"  {impl.name:<60} {t * 1e3:8.2f} ms  {t / base:5.2f}x{target}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated workloads (default: all "
                                                   "with calling patterns)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5, help="steps of one way per round")
    args = parser.parse_args(argv)
    keys = [k for k in args.only.split(",") if k] or \
        [k for k, w in WORKLOADS.items() if any(i.pattern for i in w.impls)]
    for key in keys:
        measure(key, args.rounds, args.steps)


if __name__ == "__main__":
    main()
