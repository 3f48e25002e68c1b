"""Where Numba's compile time goes, per kernel of a workload's compiled step (issue 22).

    python benchmarks/compile_profile.py [W2] [--top 10]

Runs the step (``benchmarks/workloads``) in a fresh process with empty caches, every kernel
compiled in that process (``GRAPHJIT_COMPILE_WORKERS=0``, ``GRAPHJIT_TIERED=0``), then reads
what Numba recorded for each kernel and each driver (``dispatcher.get_metadata``): its
compiler passes' times (``pipeline_times``: type inference, parfor passes, lowering to
LLVM IR ...) and the time spent in LLVM (``timers["llvm_lock"]``: optimising and emitting
machine code, under Numba's LLVM lock). Prints the totals by phase and the dearest kernels.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Numba's passes, grouped: what graphjit's choices (kernel size, parallel loops, flags) move.
PHASES = {
    "typing": ("nopython_type_inference", "partial_type_inference", "nopython_rewrites",
               "annotate_types", "nopython_supported_feature_validation"),
    "parfors": ("pre_parfor_pass", "parfor_pass", "parfor_fusion_pass",
                "parfor_preferred_fusion_pass", "inline_overloads"),
    "lowering": ("native_lowering", "native_parfor_lowering"),
}


def child(key):
    sys.path.insert(0, HERE)
    import graphjit  # noqa: F401
    from numba.core.dispatcher import Dispatcher
    from workloads import WORKLOADS
    from workloads.base import GRAPHJIT_COMPILED

    w = WORKLOADS[key]
    step, _ = w.impl(GRAPHJIT_COMPILED).make(w.init())
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    wall = time.perf_counter() - t0
    rows, seen = [], set()
    import gc
    for obj in gc.get_objects():
        if type(obj).__name__ != "CompiledProgram":
            continue
        for name, d in obj.dispatcher.py_func.__globals__.items():
            if isinstance(d, Dispatcher) and id(d) not in seen:
                seen.add(id(d))
                for sig in d.signatures:
                    md = d.get_metadata(sig)
                    times = {}
                    for stage in md.get("pipeline_times", {}).values():
                        for pass_name, t in stage.items():
                            short = pass_name.split("_", 1)[1] if pass_name[0].isdigit() else pass_name
                            times[short] = times.get(short, 0.0) + t.init + t.run + t.finalize
                    timers = md.get("timers", {})
                    rows.append({"name": name, "total": timers.get("compiler_lock", 0.0),
                                 "llvm": timers.get("llvm_lock", 0.0), "passes": times})
    print("PROFILE " + json.dumps({"wall": wall, "rows": rows}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key", nargs="?", default="W2")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        return child(args.key)
    tmp = tempfile.mkdtemp(prefix="graphjit-compile-profile-")
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=os.path.join(tmp, "g"),
               NUMBA_CACHE_DIR=os.path.join(tmp, "n"), GRAPHJIT_COMPILE_WORKERS="0",
               GRAPHJIT_TIERED="0", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, args.key, "--_child"], env=env,
                         capture_output=True, text=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("PROFILE ")]
    if not line:
        print(out.stderr[-3000:])
        return 1
    data = json.loads(line[-1][len("PROFILE "):])
    rows = data["rows"]

    def phase(r, names):
        return sum(r["passes"].get(n, 0.0) for n in names)
    total = sum(r["total"] for r in rows)
    llvm = sum(r["llvm"] for r in rows)
    print(f"{args.key}: {len(rows)} compiled functions (kernels and drivers), first 3 calls "
          f"{data['wall']:.2f} s, Numba {total:.2f} s in all")
    for label, names in PHASES.items():
        t = sum(phase(r, names) for r in rows)
        print(f"  {label:<10} {t:7.2f} s  {t / total:6.1%}   ({', '.join(names[:3])}...)")
    print(f"  {'LLVM':<10} {llvm:7.2f} s  {llvm / total:6.1%}   (optimisation and machine code, "
          "under Numba's LLVM lock; part of it inside lowering)")
    print(f"\n  dearest {args.top}:  total   typing  lowering  LLVM")
    for r in sorted(rows, key=lambda r: -r["total"])[:args.top]:
        print(f"  {r['name']:<24} {r['total']:6.2f} {phase(r, PHASES['typing']):7.2f} "
              f"{phase(r, PHASES['lowering']):8.2f} {r['llvm']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
