"""Restarts: the first calls of a compiled training step in a new process whose compile
cache an earlier process filled (issue 22: at most 0.2 s beyond ``import graphjit``).

    python benchmarks/restart.py [--only W2,W7] [--rounds 5] [--base PATH] [--impl NAME]

Per workload of the suite (``benchmarks/workloads``): one process fills a fresh cache
(``GRAPHJIT_TIERED=0``: every program the step makes is compiled before it runs, the first
step's included), then ``--rounds`` new processes each import graphjit, build the step and
time its first two calls (the second is the steady-state step's program: the first
created the optimizer's state). Nothing else differs from a user's restart: the default
tiered start, the lowering cache on. With ``--base PATH`` (another checkout of graphjit,
e.g. a worktree of the commit before a change) its restarts are timed too, on a cache of
their own, the rounds interleaved (the order reversed every other round) so a noisy spell
of the machine lands on both; medians, and the ratio to the base. ``--impl``: another way of
calling the compiler the workload has (e.g. "graphjit compile(model)" of W2 and W3: a
compiled forward, backward and step outside), instead of the whole step compiled.

The first call includes everything ``import graphjit`` did not do: Numba's import
(0.1-0.15 s on the 2-core VM), the trace, the lowering cache's entry, loading the machine
code, and the step itself. Both checkouts are byte-compiled first, as a wheel install does
(this machine class sets PYTHONDONTWRITEBYTECODE=1). Children run one thread per library,
with ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` unset, as the suite's do.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "RESTART-RESULT "
FILL_CALLS = 4  # the fill process's steps: the first-step program and the steady one


def child(key: str, calls: int, impl: str) -> None:
    """In a new process: import graphjit, build ``key``'s step ``impl``, time ``calls``."""
    start = time.perf_counter()
    import graphjit  # noqa: F401
    imported = time.perf_counter() - start
    sys.path.insert(0, HERE)
    from workloads import WORKLOADS
    w = WORKLOADS[key]
    step, _ = w.impl(impl).make(w.init())
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(MARK + json.dumps({"import_s": imported, "calls_s": times}), flush=True)


def _env(checkout: str, cache: str, **extra) -> dict:
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=os.path.join(cache, "graphjit"),
               NUMBA_CACHE_DIR=os.path.join(cache, "numba"), **extra)
    env["PYTHONPATH"] = checkout + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GRAPHJIT_DUMP"):
        env.pop(var, None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = "1"
    return env


def _run(key: str, calls: int, impl: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", key,
                          "--calls", str(calls), "--impl", impl], env=env,
                         capture_output=True, text=True, timeout=1800)
    for line in out.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"{key}: exit code {out.returncode}: {out.stderr.strip()[-2000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", help="another checkout of graphjit to time beside this one")
    parser.add_argument("--impl", default="graphjit compiled",
                        help='the implementation timed (default "graphjit compiled")')
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        child(args._child, args.calls, args.impl)
        return 0
    sys.path.insert(0, HERE)
    from workloads import WORKLOADS
    keys = [k.strip() for k in args.only.split(",") if k.strip()] or [
        k for k, w in WORKLOADS.items() if any(i.name == args.impl for i in w.impls)]
    checkouts = {"this": os.path.dirname(HERE)}
    if args.base:
        checkouts = {"base": os.path.abspath(args.base), **checkouts}
    for root in checkouts.values():
        for package in ("graphjit", "passes"):
            compileall.compile_dir(os.path.join(root, package), quiet=2)
    tmp = tempfile.mkdtemp(prefix="graphjit-restart-")
    results = {}
    try:
        for key in keys:
            runs = {name: [] for name in checkouts}
            for name, root in checkouts.items():
                cache = os.path.join(tmp, f"{key}-{name}")
                _run(key, FILL_CALLS, args.impl, _env(root, cache, GRAPHJIT_TIERED="0"))
            for r in range(args.rounds):
                order = list(checkouts.items())
                for name, root in (order if r % 2 == 0 else order[::-1]):
                    runs[name].append(_run(key, 2, args.impl,
                                           _env(root, os.path.join(tmp, f"{key}-{name}"))))
            results[key] = runs
            line = f"{key:<4}"
            for name, rs in runs.items():
                first = statistics.median(r["calls_s"][0] for r in rs)
                second = statistics.median(r["calls_s"][1] for r in rs)
                imported = statistics.median(r["import_s"] for r in rs)
                line += (f"  {name}: import {imported * 1e3:4.0f} ms, 1st call "
                         f"{first * 1e3:5.0f} ms, 2nd {second * 1e3:5.1f} ms")
            if args.base:
                ratio = (statistics.median(r["calls_s"][0] for r in runs["this"])
                         / statistics.median(r["calls_s"][0] for r in runs["base"]))
                line += f"  (1st call {ratio:.2f}x the base)"
            print(line, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
