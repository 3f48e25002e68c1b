"""Compiled training steps on a loaded machine: W2 and W3 idle and beside busy processes.

    python benchmarks/load.py [--only W2,W3] [--busy N] [--rounds R] [--budget S]
                              [--configs default,single] [--config NAME:VAR=VALUE,...]
                              [--graphjit PATH] [--compare-with PATH] [--json PATH]

Each configuration of each workload runs in a process of its own that stays alive for the
whole run (compiled once, while the machine is idle). Then, for ``--rounds`` rounds, the
machine is idle for one phase and loaded for the other (the order alternates between
rounds): loaded means ``--busy`` processes spinning in ``while True: pass`` (default: one
per usable core, so every core has a competitor). In each phase every process times its
compiled step in turn, for ``--budget`` seconds each (at least 5 calls), with a pause
between processes so that the previous one's idle threads have gone to sleep. The table
gives, per workload and configuration, the median step idle and loaded (over every call of
every round), the ratio loaded/idle, and the loaded step against the single-thread
configuration's loaded step: every ratio comes from this one run, its phases interleaved.

Configurations (``--configs``, each a fresh process with its own environment):

- ``default``: the environment as it is (each library's default threads).
- ``single``: one thread everywhere, ``OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
  GRAPHJIT_PARALLEL_MIN=0``: the reference a loaded machine should not do worse than.
- ``--config NAME:VAR=VALUE,VAR=VALUE``: more (``VAR=`` unsets ``VAR``), e.g. ``--config
  fixed:GRAPHJIT_ADAPTIVE_THREADS=0`` (the libraries' threads on every call, see [Threads
  under load] in graphjit/backend/cpu/threads.py) or ``--config spin:GOMP_SPINCOUNT=1000``.
- ``--graphjit PATH``: the configurations import graphjit from this checkout (default: the
  one this script is in); ``--compare-with PATH``: ``default`` and ``single`` once more with
  graphjit from another one (``git archive <commit> graphjit passes | tar -x -C
  /tmp/before``), to measure a change before and after in the same run.

Every process reports where its graphjit came from, Numba's threading layer and threads,
and the OpenBLAS libraries loaded (threadpoolctl's ``threadpool_info()``: the kernel
``architecture`` and thread count; ``pip install -e .[bench]``). This script's own process
imports neither NumPy nor graphjit, so it holds no threads of its own. At the end each
process lists the ways its programs chose to run ([Threads under load]). "Idle" is idle of
this script's busy loops only: on a shared machine the load averages printed at the start
and the end say what else ran.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SINGLE = {"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "GRAPHJIT_PARALLEL_MIN": "0"}
BUSY_LOOP = "while True: pass"
# Seconds between two processes' timings: an OpenBLAS worker spins for up to 2**28 cycles
# (about 0.1 s) after its last job before it sleeps, libgomp's for a few milliseconds.
SETTLE_S = 0.3


# ---------------------------------------------------------------- the timing process

def child(key: str) -> None:
    """Build ``key``'s compiled step, then serve commands from stdin, one JSON line each:
    ``["time", budget_s, min_calls]`` -> the calls' times; ``["info"]`` -> a description."""
    sys.path.insert(0, HERE)
    from workloads import WORKLOADS
    from workloads.base import GRAPHJIT_COMPILED

    w = WORKLOADS[key]
    step, _ = w.impl(GRAPHJIT_COMPILED).make(w.init())
    for _ in range(5):  # compile (the first programs), then settle into the steady state
        step()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd[0] == "time":
            budget, min_calls = cmd[1], cmd[2]
            times, start = [], time.perf_counter()
            while len(times) < min_calls or time.perf_counter() - start < budget:
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            out = {"times": times}
        elif cmd[0] == "info":
            out = _info()
        elif cmd[0] == "threads":
            out = {"threads": _thread_choices()}
        else:
            out = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(out), flush=True)


def _info() -> dict:
    import numba
    from common import blas_kernels, fmt_blas_kernels

    import graphjit
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run
        layer = "no"
    return {"graphjit": os.path.dirname(os.path.dirname(os.path.abspath(graphjit.__file__))),
            "threading_layer": layer, "numba_threads": numba.get_num_threads(),
            "blas": blas_kernels(), "blas_text": fmt_blas_kernels(blas_kernels())}


def _thread_choices() -> list:
    """What each compiled program in this process runs on threads now, and how its calls
    went ([Threads under load] in graphjit/backend/cpu/threads.py), where graphjit has it."""
    import gc
    try:
        from graphjit.backend.cpu.program import CompiledProgram
    except ImportError:
        return []
    return [f"{o.name}: {o.threads.describe()}" for o in gc.get_objects()
            if isinstance(o, CompiledProgram) and getattr(o, "threads", None) is not None]


# ---------------------------------------------------------------- the parent

class Child:
    def __init__(self, key, config, env):
        self.key, self.config = key, config
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_child", key],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.times = {"idle": [], "loaded": []}
        self.info = None
        self.threads = []

    def ask(self, *cmd):
        self.proc.stdin.write(json.dumps(list(cmd)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.key} {self.config}: the timing process ended "
                               f"(exit code {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Load:
    """``n`` busy-loop processes while entered."""

    def __init__(self, n):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(self.n)]
        time.sleep(0.5)  # let them start and take their cores
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []
        time.sleep(0.3)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configs(args) -> dict:
    """Name -> the environment of that configuration's processes."""
    base = dict(os.environ)
    rest = [base["PYTHONPATH"]] if base.get("PYTHONPATH") else []
    path = [os.path.abspath(args.graphjit)] + rest
    out = {}
    chosen = {"default": {}, "single": SINGLE}
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name not in chosen:
            raise SystemExit(f"unknown configuration {name!r}: default or single "
                             "(others with --config NAME:VAR=VALUE,...)")
        out[name] = dict(base, PYTHONPATH=os.pathsep.join(path), **chosen[name])
    for spec in args.config:
        name, _, assignments = spec.partition(":")
        env = dict(base, PYTHONPATH=os.pathsep.join(path))
        for a in filter(None, assignments.split(",")):
            var, eq, value = a.partition("=")
            if not eq:
                raise SystemExit(f"--config {spec!r}: expected VAR=VALUE, got {a!r}")
            if value:
                env[var] = value
            else:
                env.pop(var, None)  # VAR= unsets VAR
        out[name] = env
    if args.compare_with:
        other = os.path.abspath(args.compare_with)
        for name, extra in chosen.items():
            out[f"{name} @{os.path.basename(other.rstrip(os.sep))}"] = dict(
                base, PYTHONPATH=os.pathsep.join([other] + rest), **extra)
    return out


def fmt(s):
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} us"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="W2,W3", help="workloads, e.g. W2 (default W2,W3)")
    parser.add_argument("--busy", type=int, default=0,
                        help="busy-loop processes while loaded (default: one per usable core)")
    parser.add_argument("--rounds", type=int, default=4, help="idle/loaded rounds (default 4)")
    parser.add_argument("--budget", type=float, default=0.5,
                        help="seconds of timed calls per process and phase per round")
    parser.add_argument("--configs", default="default,single")
    parser.add_argument("--config", action="append", default=[], metavar="NAME:VAR=VALUE,...")
    parser.add_argument("--compare-with", metavar="PATH",
                        help="also run default and single with graphjit from this checkout")
    parser.add_argument("--graphjit", metavar="PATH", default=REPO,
                        help="the checkout whose graphjit the configurations import (default: "
                             "this one)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        child(args._child)
        return 0
    keys = [k.strip().upper() for k in args.only.split(",") if k.strip()]
    busy = args.busy or usable_cores()
    envs = configs(args)
    print(f"{usable_cores()} usable cores; loaded = {busy} busy-loop processes; {args.rounds} "
          f"rounds of {args.budget:g} s per process and phase; load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    children = []
    try:
        for key in keys:  # one at a time: each compiles on every core
            for name, env in envs.items():
                c = Child(key, name, env)
                children.append(c)
                c.info = c.ask("info")
                print(f"  {key} {name}: graphjit from {c.info['graphjit']}, Numba "
                      f"{c.info['threading_layer']} layer, {c.info['numba_threads']} threads; "
                      + c.info["blas_text"], flush=True)
        t0 = time.perf_counter()
        for r in range(args.rounds):
            for phase in (("idle", "loaded") if r % 2 == 0 else ("loaded", "idle")):
                order = children[r % len(children):] + children[:r % len(children)]
                with Load(busy if phase == "loaded" else 0):
                    for c in order:
                        time.sleep(SETTLE_S)
                        c.times[phase] += c.ask("time", args.budget, 5)["times"]
            print(f"  round {r + 1}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        for c in children:
            c.threads = c.ask("threads")["threads"]
    finally:
        for c in children:
            c.close()
    report = summarize(children)
    print_report(report, busy)
    print(f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    choices = [(c, t) for c in children for t in c.threads]
    if choices:
        print("\nthreads chosen by each program at the end (graphjit/backend/cpu/threads.py):")
        for c, t in choices:
            print(f"  {c.key} {c.config}: {t}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"busy": busy, "rows": report,
                       "info": {f"{c.key} {c.config}": dict(c.info, threads=c.threads)
                                for c in children}}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


def summarize(children) -> list:
    rows = []
    single = {c.key: statistics.median(c.times["loaded"]) for c in children
              if c.config == "single"}
    for c in children:
        idle, loaded = statistics.median(c.times["idle"]), statistics.median(c.times["loaded"])
        rows.append({"workload": c.key, "config": c.config, "idle_s": idle, "loaded_s": loaded,
                     "ratio": loaded / idle, "calls": {k: len(v) for k, v in c.times.items()},
                     "vs_single_loaded": loaded / single[c.key] if c.key in single else None})
    return rows


def print_report(rows, busy):
    print(f"\nmedian per compiled step; loaded = {busy} busy-loop processes beside it")
    print(f"  {'':<4} {'configuration':<24} {'idle':>10} {'loaded':>10} {'loaded/idle':>12} "
          f"{'vs single, loaded':>18} {'calls idle/loaded':>18}")
    for r in rows:
        vs = f"{r['vs_single_loaded']:.2f}x" if r["vs_single_loaded"] else "-"
        print(f"  {r['workload']:<4} {r['config']:<24} {fmt(r['idle_s']):>10} "
              f"{fmt(r['loaded_s']):>10} {r['ratio']:>11.2f}x {vs:>18} "
              f"{r['calls']['idle']:>8}/{r['calls']['loaded']:<8}")


if __name__ == "__main__":
    sys.exit(main())
