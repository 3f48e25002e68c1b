"""The graphjit benchmark suite: eight float32 workloads against NumPy, PyTorch and JAX.

    python benchmarks/suite.py [--quick] [--only W1,W3] [--check] [--json PATH]
                               [--threads N] [--no-compile-time] [--no-torch-compile]
                               [--openblas-env unset|keep]
    python benchmarks/suite.py --cold-start [--only W2,W5,W7] [--rounds N] [--base PATH]

Per workload (``benchmarks/workloads/``) it prints the median time per step, after warmup,
of graphjit compiled (``@graphjit.compile`` on the whole step), graphjit eager, a
hand-written NumPy version and, when importable, PyTorch eager, ``torch.compile`` and JAX
``jit`` (torch and JAX are never required); each time as a ratio to the best peer (every
implementation that is not graphjit's) of the same run; the other ways users call graphjit
on the same step (``opt.zero_grad()`` or ``p.grad = None`` outside the compiled step, a
compiled loss function or ``compile(model)`` with backward and step outside, see the
workloads' docstrings), each also against the whole step compiled, with its target; the
achieved fraction of this machine's limit, measured by the suite before and after every
workload: memory bandwidth (from the bytes the step must move at least) for bandwidth-bound
workloads, NumPy's float32 GEMM rate for the others; and graphjit's compile time in fresh
processes: cold (empty
``GRAPHJIT_CACHE_DIR`` and ``NUMBA_CACHE_DIR``) and warm (the cache the cold run filled),
timing the first calls after import.

Every implementation is timed in a fresh process of its own (``--in-process``: all in
this one, in turns), so one library's idle thread pool cannot slow the next, and with one
thread per library by default (``--threads``; 0 keeps each library's own default): on a
small shared machine a multi-threaded op waits at its barrier for a core another process
holds, which made PyTorch's and OpenBLAS's steps 10-100x slower and their times random.

``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are unset in the children's environment
(``--openblas-env keep``: as they are), so OpenBLAS runs the kernels it picks for this CPU,
and every child reports the kernels that ran (threadpoolctl, ``pip install -e .[bench]``):
see [OpenBLAS variables in the suite]. Speed beside busy processes is
``benchmarks/load.py``'s.

``--cold-start`` times only the first steps in fresh processes with empty caches, a
compiled-first start against a tiered one (see [Cold start in the suite]).

``--check`` runs no timing: it runs three steps of every implementation from the same
initial state and compares the loss, gradients, parameter updates and optimizer state with
the NumPy version's (rtol 1e-4; W8 in float64, see its docstring); it exits 1 on a
mismatch. ``--quick`` runs few repeats (a smoke test); ``--json PATH`` writes every number
measured.
"""
from __future__ import annotations

import os
import sys
import time

_T_START = time.perf_counter()

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


DEFAULT_THREADS = 1


def _early_threads(argv):
    """``--threads N`` must act before NumPy, Numba, torch or JAX start their thread pools."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return DEFAULT_THREADS


_THREADS = _early_threads(sys.argv[1:])
if _THREADS > 0:
    for _var in THREAD_VARS:
        os.environ[_var] = str(_THREADS)
    os.environ["GRAPHJIT_SUITE_THREADS"] = str(_THREADS)  # torch.set_num_threads (workloads.base)
    if _THREADS == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                                   "=false intra_op_parallelism_threads=1").strip()



# NOTE: [OpenBLAS variables in the suite]
# The development VMs' environment sets OPENBLAS_CORETYPE=Haswell (right for their Zen 3
# machines), which on the Zen 5 ones holds OpenBLAS to its AVX2 kernels, about half the GEMM
# rate. graphjit leaves the variable alone ([OpenBLAS core type] in graphjit/_blas.py); the
# suite unsets it, with OPENBLAS_L2_SIZE (the two go together), in the environment of its own
# child processes, where every implementation is timed, so that they run the kernels
# OpenBLAS picks for this CPU: the numbers are the machine's. ``--openblas-env keep`` times
# them with the environment as it is. Every child says which kernels ran (threadpoolctl);
# this process's own environment is not changed (--check and --in-process run here).
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _early_openblas_env(argv):
    for i, a in enumerate(argv):
        if a == "--openblas-env" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--openblas-env="):
            return a.split("=", 1)[1]
    return "unset"


_OPENBLAS_ENV = _early_openblas_env(sys.argv[1:])


def child_env(**extra):
    """The environment of the suite's child processes (see [OpenBLAS variables in the
    suite]), with ``extra`` on top."""
    env = dict(os.environ)
    if _OPENBLAS_ENV == "unset":
        for var in OPENBLAS_VARS:
            env.pop(var, None)
    env.update(extra)
    return env


import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from common import (blas_kernels, fmt_blas_kernels, fmt_seconds, gemm_rate,  # noqa: E402
                    machine_info, stream_bandwidths, time_interleaved, warm_up)
from workloads import WORKLOADS  # noqa: E402
from workloads.base import GRAPHJIT_COMPILED, NUMPY, TORCH_COMPILE, Unavailable  # noqa: E402

FULL = {"budget_s": 1.0, "min_repeats": 10, "max_repeats": 200, "warmup": 4, "rounds": 5}
PASSES = 2  # fresh processes per implementation in a full run
QUICK = {"budget_s": 0.2, "min_repeats": 3, "max_repeats": 10, "warmup": 1, "rounds": 1}
PROBE_CALLS = 3
PROBE_STEPS = 10  # the cold-start probe times at least this many steps ("10 steps")
PROBE_LIMIT_S = 600  # ... and goes on until native code runs them, or this long


# ---------------------------------------------------------------- compile time, in a new process

def probe(key):
    """Run in a fresh process: import graphjit, build the compiled step, time its first calls
    until native code runs them (a tiered start runs the first ones on NumPy while Numba
    compiles: graphjit/jit/tiers.py), then the steady state."""
    import graphjit  # noqa: F401
    import_s = time.perf_counter() - _T_START  # the suite's own imports (NumPy) count too

    def interpreted_calls():
        # Read without importing the backend, whose import (Numba's) is the first call's
        # to pay: a checkout from before tiered execution (--base) has no such module.
        tiered = sys.modules.get("graphjit.backend.cpu.tiered")
        return getattr(tiered, "interpreted_calls", 0)

    w = WORKLOADS[key]
    init = w.init()
    step, _ = w.impl(GRAPHJIT_COMPILED).make(init)
    numba_before = "numba" in sys.modules
    calls, native = [], []
    start = time.perf_counter()
    while len(calls) < max(PROBE_CALLS, PROBE_STEPS) or not native[-1]:
        before = interpreted_calls()
        t0 = time.perf_counter()
        step()
        calls.append(time.perf_counter() - t0)
        native.append(interpreted_calls() == before)
        if time.perf_counter() - start > PROBE_LIMIT_S:
            break
    steady = []
    for _ in range(5):
        t0 = time.perf_counter()
        step()
        steady.append(time.perf_counter() - t0)
    # The first call from which every call ran native code (1-based), if one did.
    first_native = next((k + 1 for k in range(len(native)) if all(native[k:])), None)
    # A program run once (the first optimizer step) is compiled in the background for the
    # next process ([Tiered execution] in graphjit/backend/cpu/tiered.py), and a process
    # that exits sooner kills that compile. A user's training run lasts long enough for it;
    # the probe, which ends after a few steps, waits for it (after its timings), so that the
    # warm run starts from the cache a user's next run would find.
    tiered = sys.modules.get("graphjit.backend.cpu.tiered")
    try:
        tiered.wait_background(timeout=PROBE_LIMIT_S, fills=True)
    except (AttributeError, TypeError):  # a checkout from before tiered start or fills (--base)
        pass
    _emit({"import_s": import_s, "numba_imported_before_first_call": numba_before,
           "calls_s": calls, "native": native,
           "first_native_call": first_native, "steady_s": float(np.median(steady)),
           "tiered": os.environ.get("GRAPHJIT_TIERED", ""), "blas": blas_kernels()})


RESULT_MARK = "SUITE-RESULT "


def _emit(obj):
    """A child process's result: one marked JSON line on stdout."""
    print(RESULT_MARK + json.dumps(obj), flush=True)


def run_child(child_args, env=None, timeout=900):
    """Run this script with ``child_args`` in a fresh process; its marked result, or an error."""
    try:
        # The child must run with the parent's --threads: without it, it would set up its
        # libraries with the default (1 thread), whatever the parent was asked for.
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *child_args,
                               "--threads", str(_THREADS), "--openblas-env", _OPENBLAS_ENV],
                              env=env if env is not None else child_env(),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    where = [ln for ln in lines if ln.startswith("File ")]
    at = f" (at {where[-1]})" if where else ""
    return {"error": f"exit code {proc.returncode}: {lines[-1] if lines else 'no output'}{at}",
            "stderr_tail": lines[-30:]}


_BYTE_COMPILED = set()


def byte_compile(checkout=None):
    """Compile the Python files of the graphjit the children import (``checkout``'s, or this
    process's) to ``__pycache__``, once, as ``pip install`` of a wheel does at install time.
    Without it, where ``PYTHONDONTWRITEBYTECODE`` is set (this machine class sets it) or an
    editable checkout was never imported, every child would compile graphjit's sources
    again: 0.1-0.3 s of each first call that no installed graphjit pays. ``compileall``
    writes the files whatever that variable says; Python then reads them."""
    import compileall
    import importlib.util
    root = os.path.abspath(checkout) if checkout else os.path.dirname(
        os.path.dirname(importlib.util.find_spec("graphjit").origin))
    if root in _BYTE_COMPILED:
        return
    _BYTE_COMPILED.add(root)
    for package in ("graphjit", "passes"):
        if os.path.isdir(os.path.join(root, package)):
            compileall.compile_dir(os.path.join(root, package), quiet=2)


def compile_times(key, tiered=None, checkout=None):
    """Cold and warm compile of ``key``'s graphjit compiled step, each in a fresh process
    (``tiered``: the child's GRAPHJIT_TIERED, None: as in this process's environment;
    ``checkout``: the graphjit to import instead of this one, a repository's root). The
    checkout is byte-compiled first (``byte_compile``)."""
    byte_compile(checkout)
    tmp = tempfile.mkdtemp(prefix="graphjit-suite-")
    env = child_env(GRAPHJIT_CACHE_DIR=os.path.join(tmp, "graphjit"),
                    NUMBA_CACHE_DIR=os.path.join(tmp, "numba"))
    env.pop("GRAPHJIT_DUMP", None)
    if tiered is not None:
        env["GRAPHJIT_TIERED"] = tiered
    if checkout is not None:
        env["PYTHONPATH"] = os.path.abspath(checkout) + os.pathsep + env.get("PYTHONPATH", "")
    out = {}
    try:
        for phase in ("cold", "warm"):
            t0 = time.perf_counter()
            out[phase] = run_child(["--_probe", key], env=env)
            out[phase]["process_wall_s"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def native_after(r):
    """Seconds from the first call's start to the end of the first natively run call (None
    if none ran natively)."""
    k = r.get("first_native_call")
    return None if k is None else sum(r["calls_s"][:k])


# NOTE: [Cold start in the suite]
# ``--cold-start`` measures what issue 22 asks about: the first training steps in a fresh
# process with empty caches, graphjit's two ways of starting side by side in the same run:
# GRAPHJIT_TIERED=0 (compile, then run) and GRAPHJIT_TIERED=1 (run on NumPy at once while
# Numba compiles in the background), or with ``--base`` another checkout, each in fresh
# processes, rounds interleaved (the order reversed every other round) so a noisy
# spell of the machine lands on both. Per run: the first call (trace, passes and, natively,
# the compile), the first 3 and 10 calls, the call from which native code runs every step
# and when that call ended, the steady state after that; and the warm start (the cache
# the cold run filled). Medians over the rounds.
# ``--base PATH`` times another checkout of graphjit (the commit before a change), imported
# by the children instead of this one, in place of GRAPHJIT_TIERED=0.
COLD_MODES = {"native": "0", "tiered": "1"}


def cold_start(keys, rounds, base=None):
    modes = [(mode, value, None) for mode, value in COLD_MODES.items()]
    if base:  # the checkout before: it compiles first, as GRAPHJIT_TIERED=0 does here
        modes = [("base", None, base)] + [m for m in modes if m[0] != "native"]
    results = {}
    for key in keys:
        runs = {mode: [] for mode, _, _ in modes}
        for r in range(rounds):
            for mode, value, checkout in (modes if r % 2 == 0 else modes[::-1]):
                print(f"{key} round {r + 1} {mode} ...", end="", flush=True)
                t0 = time.perf_counter()
                runs[mode].append(compile_times(key, tiered=value, checkout=checkout))
                print(f" {time.perf_counter() - t0:.0f} s", flush=True)
        results[key] = runs
    print_cold_start(results)
    return results


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def print_cold_start(results):
    print("\ncold start: fresh processes with empty caches (warm: the cache that run filled);"
          "\n  medians over the rounds; 1st call: trace, passes, and natively the compile;"
          "\n  native from: the call from which native code ran every step, and when it ended;"
          "\n  steady: median step after that")
    head = (f"  {'':<4} {'start':<7} {'import':>7} {'1st call':>9} {'3 calls':>9} "
            f"{'10 calls':>9} {'native from':>17} {'steady':>9} {'warm 1st':>9}")
    print(head)
    for key, runs in results.items():
        for mode, rs in runs.items():
            cold = [r["cold"] for r in rs if "calls_s" in r.get("cold", {})]
            warm = [r["warm"] for r in rs if "calls_s" in r.get("warm", {})]
            if not cold:
                errors = [r["cold"].get("error") for r in rs]
                print(f"  {key:<4} {mode:<7} failed: {errors[0]}")
                continue

            def med(f, runs=cold):
                return _median([f(r) for r in runs])
            call = med(lambda r: r["first_native_call"])
            at = med(native_after)
            native = f"call {call:.0f}, {fmt_seconds(at)}" if call is not None else "never"
            print(f"  {key:<4} {mode:<7} {fmt_seconds(med(lambda r: r['import_s'])):>7} "
                  f"{fmt_seconds(med(lambda r: r['calls_s'][0])):>9} "
                  f"{fmt_seconds(med(lambda r: sum(r['calls_s'][:3]))):>9} "
                  f"{fmt_seconds(med(lambda r: sum(r['calls_s'][:10]))):>9} {native:>17} "
                  f"{fmt_seconds(med(lambda r: r['steady_s'])):>9} "
                  f"{fmt_seconds(med(lambda r: r['calls_s'][0], warm)):>9}")


def _fmt_compile(res):
    parts = []
    for phase in ("cold", "warm"):
        r = res.get(phase)
        if r is None:
            continue
        if "error" in r:
            parts.append(f"{phase}: failed ({r['error']})")
            continue
        calls = r["calls_s"][:PROBE_CALLS]
        beyond = sum(calls) - len(calls) * r["steady_s"]
        k = r.get("first_native_call")
        native = (f", native from call {k} ({fmt_seconds(native_after(r))})" if k and k > 1
                  else "")
        parts.append(f"{phase} first call {fmt_seconds(calls[0])} "
                     f"(first {len(calls)} calls {fmt_seconds(sum(calls))}, "
                     f"{fmt_seconds(max(beyond, 0.0))} beyond steady state{native})")
    imp = res.get("warm", res.get("cold", {})).get("import_s")
    tail = f"; import {fmt_seconds(imp)}" if imp is not None else ""
    return "; ".join(parts) + tail


# ---------------------------------------------------------------- timing

def _selected_impls(w, args):
    for impl in w.impls:
        if args.no_torch_compile and impl.name.startswith(TORCH_COMPILE):
            continue
        yield impl


def _error_text(e):
    """The exception's type, first line and innermost frame (file:line), for the table."""
    msg = str(e).strip().splitlines()
    tb = traceback.extract_tb(e.__traceback__)
    at = f" (at {os.path.relpath(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {msg[0] if msg else ''}{at}"


def time_one(key, name, quick, verbose=False):
    """Run in a fresh process: time one implementation of one workload."""
    timing = dict(QUICK if quick else FULL)
    warmup = timing.pop("warmup")
    w = WORKLOADS[key]
    try:
        step, _ = w.impl(name).make(w.init())
        first, fastest = warm_up(step, warmup)
        if w.impl(name).graphjit:
            fastest = _settle(step, warmup)
        res = time_interleaved({name: step}, {name: fastest}, **timing)[name]
    except Unavailable as e:
        return _emit({"unavailable": str(e)})
    except Exception as e:  # noqa: BLE001 - reported in the table
        if verbose:
            traceback.print_exc()
        return _emit({"error": _error_text(e)})
    _emit({"first_s": first, **res, "blas": blas_kernels()})


def _settle(step, warmup):
    """The steady state of a graphjit step: programs that started on NumPy while Numba
    compiled them (graphjit/jit/tiers.py) run native code from the next call on. Returns the
    fastest of ``warmup`` more calls."""
    try:
        from graphjit.backend.cpu import tiered
    except ImportError:  # a checkout from before tiered execution (--base)
        return warm_up(step, max(warmup, 1))[1]
    tiered.wait_background()
    return warm_up(step, max(warmup, 1))[1]


def _bench_in_process(w, args, timing):
    """Every implementation in this process, timed in turns (``--in-process``)."""
    warmup = timing.pop("warmup")
    init = w.init()
    rows, steps, estimates = {}, {}, {}
    for impl in _selected_impls(w, args):
        try:
            step, _ = impl.make(init)
            first, fastest = warm_up(step, warmup)
            if impl.graphjit:
                fastest = _settle(step, warmup)
        except Unavailable as e:
            rows[impl.name] = {"unavailable": str(e)}
            continue
        except Exception as e:  # noqa: BLE001 - one failing implementation must not end the suite
            rows[impl.name] = {"error": _error_text(e)}
            if args.verbose:
                traceback.print_exc()
            step = None
            gc.collect()
            continue
        rows[impl.name] = {"first_s": first}
        steps[impl.name], estimates[impl.name] = step, fastest
    try:
        measured = time_interleaved(steps, estimates, **timing)
    finally:
        steps.clear()
        gc.collect()
    for name, res in measured.items():
        rows[name].update(res)
    return rows


def bench_workload(w, args):
    timing = dict(QUICK if args.quick else FULL)
    if args.in_process:
        results = _bench_in_process(w, args, timing)
    else:
        # PASSES fresh processes per implementation, the order reversed every pass, so a
        # noisy spell of the machine does not land on one implementation only; the faster
        # pass counts (its per-pass medians are kept as passes_median_s)
        impls = list(_selected_impls(w, args))
        passes = 1 if args.quick else PASSES
        runs = {impl.name: [] for impl in impls}
        for p in range(passes):
            for impl in (impls if p % 2 == 0 else impls[::-1]):
                if runs[impl.name] and "median_s" not in runs[impl.name][0]:
                    continue  # unavailable or failed: once is enough
                child = ["--_time", w.key, impl.name] + (["--quick"] if args.quick else [])
                runs[impl.name].append(run_child(child + (["--verbose"] if args.verbose else [])))
        results = {}
        for name, rs in runs.items():
            ok = [r for r in rs if "median_s" in r]
            if not ok:
                results[name] = rs[0]
                continue
            res = dict(min(ok, key=lambda r: r["median_s"]))
            res["first_s"] = rs[0].get("first_s", res["first_s"])
            res["passes_median_s"] = [r.get("median_s") for r in rs]
            results[name] = res
    rows, skipped = {}, []
    for impl in _selected_impls(w, args):
        res = results[impl.name]
        if "unavailable" in res:
            skipped.append({"name": impl.name, "why": res["unavailable"]})
            continue
        rows[impl.name] = {"name": impl.name, "graphjit": impl.graphjit, **res}
        if impl.pattern:
            rows[impl.name].update(pattern=True, target=impl.target)
    rows = list(rows.values())
    timed = [r for r in rows if "median_s" in r]
    peers = [r for r in timed if not r["graphjit"]]
    best = min(peers, key=lambda r: r["median_s"]) if peers else None
    whole = next((r for r in timed if r["name"] == GRAPHJIT_COMPILED), None)
    for r in timed:
        r["vs_best_peer"] = r["median_s"] / best["median_s"] if best else None
        if r.get("pattern") and whole is not None:
            r["vs_compiled"] = r["median_s"] / whole["median_s"]
    return {"key": w.key, "title": w.title, "bound": w.bound, "min_bytes": w.min_bytes,
            "flops": w.flops, "limit_note": w.limit_note, "notes": w.notes, "rows": rows,
            "skipped": skipped, "best_peer": best["name"] if best else None}


def add_fractions(res, limits):
    """Achieved rate of every timed row, and its fraction of this machine's limit."""
    for r in res["rows"]:
        if "median_s" not in r:
            continue
        t = r["median_s"]
        if res["bound"] == "bandwidth":
            r["gb_per_s"] = res["min_bytes"] / t / 1e9
            r["of_limit"] = r["gb_per_s"] / limits["bandwidth_gb_s"]
        else:
            r["gflop_per_s"] = res["flops"] / t / 1e9
            r["of_limit"] = r["gflop_per_s"] / limits["gemm_gflop_s"]


def print_workload(res, limits):
    bound = res["bound"]
    print(f"\n{res['key']}  {res['title']}")
    if bound == "bandwidth":
        print(f"    bandwidth-bound: at least {res['min_bytes'] / 2**20:.1f} MiB per step "
              f"({res['limit_note']}); limit {limits['bandwidth_gb_s']:.1f} GB/s")
        unit, lim = "GB/s", "of bw"
    else:
        what = "matrix-bound" if bound == "gemm" else "overhead-bound"
        print(f"    {what}: {res['flops'] / 1e6:,.1f} MFLOP per step ({res['limit_note']}); "
              f"limit {limits['gemm_gflop_s']:.0f} GFLOP/s")
        unit, lim = "GFLOP/s", "of GEMM"
    for note in res["notes"]:
        print(f"    note: {note}")
    print(f"    {'implementation':<46} {'median':>10} {'IQR':>21} {'1st call':>10} "
          f"{'vs best peer':>12} {unit:>8} {lim:>8}")
    for r in res["rows"]:
        mark = "*" if r["name"] == res["best_peer"] else " "
        if "error" in r:
            print(f"  {mark} {r['name']:<46} failed: {r['error']}")
            continue
        rate = r.get("gb_per_s", r.get("gflop_per_s"))
        ratio = f"{r['vs_best_peer']:.2f}x" if r["vs_best_peer"] is not None else "-"
        iqr = f"{fmt_seconds(r['p25_s'])}-{fmt_seconds(r['p75_s'])}"
        print(f"  {mark} {r['name']:<46} {fmt_seconds(r['median_s']):>10} {iqr:>21} "
              f"{fmt_seconds(r['first_s']):>10} {ratio:>12} {rate:>8.2f} {r['of_limit']:>8.1%}")
    patterns = [r for r in res["rows"] if "vs_compiled" in r]
    if patterns:
        print(f"    other ways of calling graphjit, against {GRAPHJIT_COMPILED} (the whole step "
              "compiled):")
        for r in patterns:
            target = (f" (target {r['target']:.1f}x: "
                      f"{'met' if r['vs_compiled'] <= r['target'] else 'MISSED'})"
                      if r["target"] else "")
            print(f"      {r['name']:<60} {r['vs_compiled']:.2f}x{target}")
    kernels = sorted({f"{b['architecture']} ({b['file']})" for r in res["rows"]
                      for b in r.get("blas", []) if "architecture" in b})
    if kernels:
        print(f"    OpenBLAS kernels that ran in these processes: {', '.join(kernels)}")
    if res.get("compile"):
        print(f"    graphjit compiled, fresh process: {_fmt_compile(res['compile'])}")


def print_summary(results):
    print("\nsummary: graphjit compiled against the best peer of each workload")
    print(f"  {'':<4} {'graphjit compiled':>17} {'best peer':>38} {'ratio':>7} {'of limit':>9} "
          f"{'cold compile':>13} {'warm compile':>13}")
    for res in results:
        rows = {r["name"]: r for r in res["rows"]}
        gj = rows.get(GRAPHJIT_COMPILED, {})
        best = rows.get(res["best_peer"], {})
        comp = res.get("compile", {})

        def first(phase):
            r = comp.get(phase, {})
            return fmt_seconds(r["calls_s"][0]) if "calls_s" in r else "-"
        gj_t = fmt_seconds(gj.get("median_s")) if "median_s" in gj else "failed"
        peer = f"{res['best_peer']} {fmt_seconds(best.get('median_s'))}" if best else "-"
        ratio = f"{gj['vs_best_peer']:.2f}x" if gj.get("vs_best_peer") else "-"
        frac = f"{gj['of_limit']:.1%}" if "of_limit" in gj else "-"
        print(f"  {res['key']:<4} {gj_t:>17} {peer:>38} {ratio:>7} {frac:>9} "
              f"{first('cold'):>13} {first('warm'):>13}")


# ---------------------------------------------------------------- --check

def _compare(ref_vals, vals, ref_prev, prev, params, rtol, noisy_grad_below=0.0, update_rtol=0.0):
    """Compare one step's values with the reference's.

    A parameter (a name in ``params``: values the initial state holds too) is compared as this step's update,
    its value minus its value before the step in the same implementation, with two float32
    ulps of the parameter as extra slack (p - u rounds to the parameter's ulps).
    """
    worst, bad = {"values": 0.0, "updates": 0.0}, []
    for name, e in ref_vals.items():
        kind = "values"
        if name not in vals:
            continue
        if vals[name] is None:
            bad.append(f"{name}: missing")
            continue
        a, e = np.asarray(vals[name], np.float64), np.asarray(e, np.float64)
        slack, tol = 0.0, rtol
        if name in params:
            tol, kind = update_rtol or rtol, "updates"
            before = np.asarray(prev[name], np.float64)
            a, e = a - before, e - np.asarray(ref_prev[name], np.float64)
            slack = 2 * np.spacing(np.abs(before).astype(np.float32)).astype(np.float64)
            grad = ref_vals.get(name + ".grad")
            if noisy_grad_below and grad is not None:
                keep = np.abs(grad) >= noisy_grad_below
                a, e, slack = a[keep], e[keep], slack[keep]
            name = f"update of {name}"
        if a.shape != e.shape or not np.all(np.isfinite(a)):
            bad.append(f"{name}: shape {a.shape} or non-finite values (expected {e.shape})")
            continue
        if a.size == 0:
            continue
        scale = float(np.max(np.abs(e)))
        diff = np.abs(a - e)
        ok = bool(np.all(diff <= tol * np.abs(e) + tol * scale + slack + 1e-30))
        err = float(diff.max() / scale) if scale > 0 else float(diff.max())
        worst[kind] = max(worst[kind], err)
        if not ok:
            bad.append(f"{name}: worst error {err:.2e} of its largest value")
    return worst, bad


def check_workload(w, args):
    init = w.init()
    if w.check_dtype != np.float32:
        init = {k: v.astype(w.check_dtype) if v.dtype == np.float32 else v
                for k, v in init.items()}
    ref_impl = w.impl(NUMPY)
    step, values = ref_impl.make(init)
    ref = []
    for _ in range(w.check_steps):
        step()
        ref.append(values())
    out = []
    params = [k for k in ref[0] if k in init]
    others = [k for k in ref[0] if k not in init]
    print(f"\n{w.key}  {w.title}\n    reference: {NUMPY}, {w.check_steps} steps, rtol {w.rtol:g} "
          "(errors are relative to the largest element)")
    if w.check_dtype != np.float32:
        print(f"    every implementation in {np.dtype(w.check_dtype).name} (see the workload's "
              "docstring)")
    print(f"    values: {', '.join(others)}")
    if params:
        print(f"    parameter updates (value after the step - value before): {', '.join(params)}")
    if w.noisy_grad_below:
        print(f"    Adam: updates skipped where |gradient| < {w.noisy_grad_below:g} (Adam turns "
              "float32 noise there into updates of up to lr)")
    if w.update_rtol:
        print(f"    Adam: updates compared with rtol {w.update_rtol:g} (each element's update is "
              "about lr, carrying its gradient's own relative error)")
    for impl in _selected_impls(w, args):
        if impl.name == NUMPY:
            continue
        try:
            step, values = impl.make(init)
            worst, bad, prev = {"values": 0.0, "updates": 0.0}, [], init
            for k in range(w.check_steps):
                step()
                vals = values()
                wk, bk = _compare(ref[k], vals, ref[k - 1] if k else init, prev, params, w.rtol,
                                  w.noisy_grad_below, w.update_rtol)
                prev = vals
                worst = {key: max(worst[key], wk[key]) for key in worst}
                bad += [f"step {k + 1}: {b}" for b in bk]
        except Unavailable:
            continue
        except Exception as e:  # noqa: BLE001
            out.append({"name": impl.name, "ok": False, "error": f"{type(e).__name__}: {e}"})
            print(f"    {impl.name:<46} FAILED {type(e).__name__}: {e}")
            if args.verbose:
                traceback.print_exc()
            continue
        finally:
            step = values = None
            gc.collect()
        out.append({"name": impl.name, "ok": not bad, "worst": worst, "mismatches": bad})
        status = "ok" if not bad else "MISMATCH"
        upd = f", updates {worst['updates']:.1e}" if params else ""
        print(f"    {impl.name:<46} {status:<8} worst error: values {worst['values']:.1e}{upd}")
        for b in bad[:6]:
            print(f"        {b}")
    return out


# ---------------------------------------------------------------- main

def _print_machine(info, limits, blas, here=False):
    """``blas``: the BLAS libraries of the processes that ran (``blas_kernels()``); ``here``:
    they ran in this process, whose environment the suite leaves as it is."""
    print("machine:")
    print(f"  CPU: {info['cpu']}, {info['logical_cores']} logical cores "
          f"({info['usable_cores']} usable)")
    set_here = ", ".join(f"{v}={os.environ[v]}" for v in OPENBLAS_VARS if v in os.environ)
    if _OPENBLAS_ENV == "unset" and not here:
        how = (f"{set_here} in the environment, unset for the suite's processes"
               if set_here else "OPENBLAS_CORETYPE unset")
    else:
        how = f"the environment as it is ({set_here or 'OPENBLAS_CORETYPE unset'})"
    print(f"  OpenBLAS: {how}; kernels that ran: "
          f"{fmt_blas_kernels(blas)}")
    versions = [f"python {info['python']}", f"numpy {info['numpy']} ({info['blas']})",
                f"numba {info['numba']}",
                f"torch {info['torch']}" if info["torch"] else "torch: not installed",
                f"jax {info['jax']}" if info["jax"] else "jax: not installed"]
    print("  " + ", ".join(versions))
    if limits:
        print(f"  memory bandwidth {limits['bandwidth_gb_s']:.1f} GB/s ({limits['bandwidth_note']})")
        print(f"  float32 GEMM {limits['gemm_gflop_s']:.1f} GFLOP/s ({limits['gemm_note']})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke test)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument("--check", action="store_true",
                        help="verify every implementation against NumPy; no timing")
    parser.add_argument("--json", metavar="PATH", help="write all results as JSON")
    parser.add_argument("--no-compile-time", action="store_true",
                        help="skip the fresh-process compile-time measurements")
    parser.add_argument("--no-torch-compile", action="store_true",
                        help="skip torch.compile (its compiling dominates the suite's run time)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="threads of every library (BLAS, OpenMP, Numba, so graphjit's "
                             "parallel loops, torch; 1 also makes XLA single-threaded); "
                             "0: each library's default. Default 1: on a small shared machine "
                             "a busy core stalls every multi-threaded op at its barrier")
    parser.add_argument("--openblas-env", choices=("unset", "keep"), default="unset",
                        help="unset (default): OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are "
                             "unset in the suite's child processes, so OpenBLAS picks the "
                             "kernels for this CPU; keep: the environment as it is. Each "
                             "child reports the kernels that ran")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    parser.add_argument("--in-process", action="store_true",
                        help="time every implementation in this one process, in turns, instead "
                             "of each in a fresh process (their thread pools then interfere)")
    parser.add_argument("--cold-start", action="store_true",
                        help="only the cold start: the first steps in fresh processes with "
                             "empty caches, compiled first (GRAPHJIT_TIERED=0) against tiered "
                             "(GRAPHJIT_TIERED=1), in interleaved rounds")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of --cold-start (default 3)")
    parser.add_argument("--base", metavar="PATH",
                        help="with --cold-start: also time the checkout of graphjit at PATH "
                             "(a repository root, e.g. a worktree of the commit before a change)")
    parser.add_argument("--_probe", help=argparse.SUPPRESS)
    parser.add_argument("--_time", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_limits", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._limits:
        measure_limits(*args._limits)
        return 0
    if args._probe:
        probe(args._probe)
        return 0
    if args._time:
        time_one(*args._time, args.quick, args.verbose)
        return 0
    keys = [k.strip().upper() for k in args.only.split(",") if k.strip()] or list(WORKLOADS)
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    t_suite = time.perf_counter()
    if args.cold_start:
        print(f"threads: {_thread_note(args.threads)}; load average at start "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        report = {"cold_start": cold_start(keys, args.rounds, args.base), "threads": args.threads,
                  "load_average_end": os.getloadavg()}
        print(f"\nload average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
              f"{time.perf_counter() - t_suite:.0f} s")
        _write_json(args.json, report)
        return 0
    info = machine_info()
    report = {"machine": info, "mode": "check" if args.check else ("quick" if args.quick else "full")}

    report["threads"] = args.threads
    if args.check:
        _print_machine(info, None, blas_kernels(), here=True)  # --check runs here
        print(f"  threads: {_thread_note(args.threads)}")
        report["check"] = {k: check_workload(WORKLOADS[k], args) for k in keys}
        failed = [f"{k} {r['name']}" for k, rs in report["check"].items() for r in rs if not r["ok"]]
        print(f"\ncheck: {'all implementations agree' if not failed else 'MISMATCH in ' + ', '.join(failed)}"
              f" ({time.perf_counter() - t_suite:.0f} s)")
        _write_json(args.json, report)
        return 1 if failed else 0

    limits = Limits(args.quick)
    limits.measure()
    _print_machine(info, None, limits.blas)
    print(f"threads: {_thread_note(args.threads)}; load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    results = []
    for k in keys:
        w = WORKLOADS[k]
        t0 = time.perf_counter()
        print(f"{k}: timing ...", end="", flush=True)
        res = bench_workload(w, args)
        print(f" {time.perf_counter() - t0:.0f} s", end="", flush=True)
        if not args.no_compile_time:
            t0 = time.perf_counter()
            res["compile"] = compile_times(k)
            print(f"; compile times in fresh processes {time.perf_counter() - t0:.0f} s", end="")
        print(flush=True)
        limits.measure()
        results.append(res)
    report["limits"] = limits.summary()
    report["load_average_end"] = os.getloadavg()
    print()
    _print_machine(info, report["limits"], limits.blas)
    print(f"  threads: {_thread_note(args.threads)}; load average (1, 5, 15 min) at the end "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    where = ("all in this process, timed in turns" if args.in_process
             else "each implementation in a fresh process of its own, twice (the order\n"
                  "  reversed the second time), the faster process counts" if not args.quick
             else "each implementation in a fresh process of its own")
    print(f"  times: median per step after warmup ({where}); IQR: 25th-75th\n"
          "  percentile; 1st call: the first call in its process (JIT peers compile there, with\n"
          "  whatever on-disk caches exist); * = best peer (every implementation not graphjit's);\n"
          "  vs best peer = time / best peer's time (below 1: faster than every peer); the limits\n"
          "  are the best of their measurements before and after each workload")
    for res in results:
        add_fractions(res, report["limits"])
        print_workload(res, report["limits"])
    print_summary(results)
    report["workloads"] = {r["key"]: r for r in results}
    report["total_s"] = time.perf_counter() - t_suite
    print(f"\nsuite ran {report['total_s']:.0f} s")
    _write_json(args.json, report)
    return 0


def _thread_note(n):
    if n > 0:
        return f"{n} per library (--threads {n}: {', '.join(THREAD_VARS)}, torch.set_num_threads" + \
            (", XLA single-threaded)" if n == 1 else ")")
    return "each library's default (--threads 0)"


class Limits:
    """This machine's memory bandwidth and GEMM rate, measured at the start and after every
    workload (the fastest repeat each time); the best measurement is the limit. The
    bandwidth is the best of three NumPy streams (``common.stream_bandwidths``): a plain copy
    alone (what graphjit's profiler and optimizer_update.py use) understates what in-place
    updates reach, since its destination costs a hidden read."""

    def __init__(self, quick):
        self.n = 1 << 24 if quick else 1 << 25
        self.repeats = 3 if quick else 8
        self.streams, self.gemm, self.blas = [], [], []

    def measure(self):
        # In a process of its own: a process that has run an OpenBLAS GEMM keeps threads
        # that slow other processes down while it lives (the W3 child: 79 us beside an idle
        # process that only imported NumPy, 122 us beside one that had run one GEMM), and
        # this one lives as long as the suite.
        res = run_child(["--_limits", str(self.n), str(self.repeats)])
        if "error" in res:
            raise RuntimeError(f"measuring the machine's limits failed: {res['error']}")
        self.streams.append(res["streams"])
        self.gemm.append(res["gemm"])
        self.blas = res.get("blas", [])


    def summary(self):
        kinds = list(self.streams[0])
        best = {k: max(m[k] for m in self.streams) for k in kinds}
        low = min(max(m.values()) for m in self.streams)
        return {"bandwidth_gb_s": max(best.values()), "gemm_gflop_s": max(self.gemm),
                "blas": self.blas,
                "bandwidth_by_stream_gb_s": best, "bandwidth_measurements": self.streams,
                "gemm_measurements_gflop_s": self.gemm,
                "bandwidth_note": f"best NumPy stream over {self.n * 4 >> 20} MiB float32 arrays, "
                                  + ", ".join(f"{k} {v:.1f}" for k, v in best.items())
                                  + f"; best of {len(self.streams)} measurements, lowest {low:.1f}",
                "gemm_note": f"np.matmul 2048x2048 @ 2048x2048, best of {len(self.gemm)} "
                             f"measurements, lowest {min(self.gemm):.0f}"}


def measure_limits(n, repeats):
    """The child of ``Limits.measure``."""
    _emit({"streams": stream_bandwidths(n, repeats),
           "gemm": gemm_rate(2048, max(2, repeats // 2), best=True), "blas": blas_kernels()})


def _write_json(path, report):
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1, default=float)
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
