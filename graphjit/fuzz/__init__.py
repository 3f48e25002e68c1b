"""Differential fuzzing: random programs, run eagerly and compiled, compared.

``graphjit fuzz [--graphs N] [--seed S] [--device cpu|cuda]`` (``python -m graphjit fuzz``)
generates N random programs from graphjit's ops (draw.py, generator.py, specs/), runs
each one eagerly and under ``graphjit.compile`` (the whole step, and a compiled forward with
an eager backward and optimizer step), compares values, gradients, parameters and optimizer state
after every call (runner.py, and the harness in program.py), and shrinks each mismatch to a
small standalone script that shows it (shrink.py). The last line of its output is
``N graphs, K mismatches``; the exit status is 1 when K > 0. A given seed always makes the
same programs.

Layering: this package sits with the CLI at the top (it uses graphjit's public API, jit and
optim); nothing in graphjit imports it.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from .draw import generate
from .program import Program, render
from .runner import Outcome, _category, check
from .shrink import shrink
from .specs import FEATURE_HELP, FEATURES, INTERNAL, SPECS

__all__ = ["fuzz", "FuzzResult", "generate", "check", "shrink", "render", "FEATURES", "SPECS",
           "INTERNAL", "main"]

ATTEMPTS = 5  # a program whose eager run gives NaN/inf is replaced by the next attempt


@dataclass
class FuzzResult:
    graphs: int = 0
    mismatches: list = field(default_factory=list)   # (program, outcome, shrunk program)
    # (graph index, mode, kind, specs of the shrunk program) per mismatch, also of the
    # chunks a long run ran in child processes
    records: list = field(default_factory=list)
    refused: int = 0
    refused_by: dict = field(default_factory=dict)   # mode -> count
    invalid: int = 0                                  # regenerated attempts
    eager_errors: int = 0                             # programs eager rejects (both agreed)
    eps: dict = field(default_factory=dict)           # dtype -> largest difference, in eps
    seconds: float = 0.0

    def classes(self) -> dict:
        """Mismatches grouped by (mode, kind, the specs of the shrunk program): a rough
        guess at which are the same bug."""
        out: dict = {}
        for index, mode, kind, specs in self.records:
            out.setdefault((mode, kind, specs), []).append(index)
        return out

    def add(self, other: dict) -> None:
        """Fold in a child process's summary (``to_json``)."""
        self.graphs += other["graphs"]
        self.records += [tuple(r) for r in other["records"]]
        self.refused += other["refused"]
        for m, n in other["refused_by"].items():
            self.refused_by[m] = self.refused_by.get(m, 0) + n
        self.invalid += other["invalid"]
        self.eager_errors += other["eager_errors"]
        for dt, r in other["eps"].items():
            self.eps[dt] = max(self.eps.get(dt, 0.0), r)

    def to_json(self) -> dict:
        return dict(graphs=self.graphs, records=self.records, refused=self.refused,
                    refused_by=self.refused_by, invalid=self.invalid,
                    eager_errors=self.eager_errors, eps=self.eps)


def program_for(seed: int, index: int, device: str = "cpu", features=None,
                modes=None) -> tuple[Program, Outcome, int]:
    """Graph ``index`` of a run: the first of its attempts whose eager run is finite, checked.
    Returns (program, outcome, attempts that were regenerated)."""
    for attempt in range(ATTEMPTS):
        p = generate(seed, index, device, features, attempt=attempt)
        if modes:
            p.modes = tuple(modes)
        outcome = check(p)
        if outcome.status != "invalid":
            return p, outcome, attempt
    return p, outcome, ATTEMPTS


def reproducer(p: Program, o: Outcome) -> str:
    """The standalone script of a (shrunk) mismatch, with what differs in its docstring."""
    note = (f"MISMATCH ({o.kind}): mode '{o.mode}' differs from eager mode.\n"
            f"Expected (eager) vs got ({o.mode}):\n{o.text}")
    return render(p, modes=("eager", o.mode), note=note)


def fuzz(graphs: int = 100, seed: int = 0, device: str = "cpu", features=None, *,
         modes=("eager", "compiled", "forward"), shrink_mismatches: bool = True,
         shrink_seconds: float = 180.0, out=None, save_dir: str | None = None,
         progress_every: float = 10.0, start: int = 0,
         seconds: float | None = None, min_graphs: int = 1) -> FuzzResult:
    """Run the fuzzer on graphs ``start .. start + graphs - 1`` of ``seed``; print progress,
    each mismatch's reproducer, and the summary (its last line: ``N graphs, K
    mismatches``). ``seconds``: start no new graph after that long, once ``min_graphs`` ran."""
    out = out or (lambda s: print(s, flush=True))
    modes = tuple(m for m in ("eager",) + tuple(modes) if m in ("eager", "compiled", "forward"))
    modes = tuple(dict.fromkeys(modes))
    res = FuzzResult()
    t_start = last = time.monotonic()
    for index in range(start, start + graphs):
        if seconds is not None and res.graphs >= min_graphs and \
                time.monotonic() - t_start > seconds:
            break
        p, o, regenerated = program_for(seed, index, device, features, modes)
        res.graphs += 1
        res.invalid += regenerated
        for dt, r in o.eps.items():
            res.eps[dt] = max(res.eps.get(dt, 0.0), r)
        if o.eager_error:
            res.eager_errors += 1
        if o.status == "refused":
            res.refused += 1
            for m in o.refused:
                res.refused_by[m] = res.refused_by.get(m, 0) + 1
        elif o.status == "mismatch":
            _report(p, o, seed, index, res, out, shrink_mismatches, shrink_seconds, save_dir)
        now = time.monotonic()
        if progress_every and now - last >= progress_every:
            last = now
            out(f"[{res.graphs}/{graphs}] {now - t_start:.0f} s, "
                f"{res.graphs / (now - t_start):.2f} graphs/s, {len(res.mismatches)} mismatches, "
                f"{res.refused} refused")
    res.seconds = time.monotonic() - t_start
    _summary(res, out)
    return res


def _report(p, o, seed, index, res, out, shrink_mismatches, shrink_seconds, save_dir):
    out(f"graph {index}: MISMATCH: {o.mode} differs from eager ({o.kind}): "
        + o.text.split("\n")[0])
    small = p
    if shrink_mismatches:
        sig = o.signature
        t0 = time.monotonic()

        def fails(cand, sig=sig, mode=o.mode, strict=o.eager_error is None):
            got = check(cand, modes=("eager", mode), eager_must_pass=strict)
            return got.status == "mismatch" and got.signature == sig
        small, checks = shrink(p, fails, budget_s=shrink_seconds)
        small_o = check(small, modes=("eager", o.mode))
        if small_o.status == "mismatch":
            o = small_o
        else:  # only if graphjit is not deterministic: keep the original
            small = p
        out(f"graph {index}: shrunk from {_size(p)} to {_size(small)} statements in {checks} "
            f"checks ({time.monotonic() - t0:.0f} s)")
    script = reproducer(small, o)
    res.mismatches.append((p, o, small))
    if shrink_mismatches:
        specs = ", ".join(sorted({s.spec for s in small.statements()} - {"loss", "backward"}))
    else:  # an unshrunk program's statements say little: group by what differs
        specs = "not shrunk; " + (o.error_classes[1] or o.error_classes[0] or "?"
                                  if o.kind == "error" else _category(o.text))
    res.records.append((index, o.mode, o.kind, specs))
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        path = os.path.join(save_dir, f"fuzz_seed{seed}_graph{index}.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(script)
        out(f"graph {index}: reproducer written to {path}")
    out(f"---- reproducer: seed {seed}, graph {index} ----")
    out(script.rstrip("\n"))
    out("---- end of reproducer ----")


def _summary(res: FuzzResult, out) -> None:
    classes = res.classes()
    if classes:
        out(f"mismatch classes (mode, kind, specs of the shrunk program): {len(classes)}")
        # (a guess: one bug can show in several classes, two bugs can share one)
        for (mode, kind, specs), graphs in sorted(classes.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(map(str, graphs[:8])) + (" ..." if len(graphs) > 8 else "")
            out(f"  {len(graphs):4d}  {mode}/{kind}: [{specs}]  graphs {shown}")
    by = ", ".join(f"{m}: {n}" for m, n in sorted(res.refused_by.items()))
    eps = ", ".join(f"{dt} {r:.1f}" for dt, r in sorted(res.eps.items())) or "none"
    out(f"refused: {res.refused} graphs (a clean TraceError from the tracer; {by or 'none'}); "
        f"eager errors matched: {res.eager_errors}; regenerated (NaN/inf in eager mode, or a broken "
        f"program): "
        f"{res.invalid}; largest difference where the modes agreed, in eps: {eps}; "
        f"{res.seconds:.0f} s, {res.graphs / max(res.seconds, 1e-9):.2f} graphs/s")
    out(f"{res.graphs} graphs, {len(res.records)} mismatches")


def _size(p: Program) -> int:
    return sum(1 for s in p.statements() if not s.block)


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(
        prog="graphjit fuzz",
        description="Differential fuzzer: random programs run eagerly and compiled, compared; "
                    "each mismatch is shrunk to a standalone reproducer script.",
        epilog="features (--without): " + "; ".join(f"{k}: {v}" for k, v in FEATURE_HELP.items()))
    parser.add_argument("--graphs", type=int, default=100, help="how many programs (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--start", type=int, default=0,
                        help="first graph index (to resume or split a run)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--modes", default="compiled,forward",
                        help="what eager mode is compared with: compiled (the whole step "
                             "compiled), forward (a compiled forward, eager backward and "
                             "optimizer step); default both")
    parser.add_argument("--seconds", type=float, default=None,
                        help="start no new graph after this many seconds")
    parser.add_argument("--without", default="",
                        help="comma-separated features to leave out (see below)")
    parser.add_argument("--no-shrink", action="store_true", help="print mismatches unshrunk")
    parser.add_argument("--shrink-seconds", type=float, default=180.0,
                        help="time budget per mismatch for shrinking (default 180)")
    parser.add_argument("--save", metavar="DIR", help="also write each reproducer to DIR")
    parser.add_argument("--chunk", type=int, default=CHUNK,
                        help=f"graphs per child process in long runs (default {CHUNK}; Numba "
                             "keeps every compiled kernel, ~2-10 MB a graph); 0: one process")
    parser.add_argument("--summary-json", help=argparse.SUPPRESS)  # a chunk's summary, for its parent
    args = parser.parse_args(argv)
    without = {f for f in args.without.split(",") if f}
    unknown = without - set(FEATURES)
    if unknown:
        print(f"graphjit fuzz: unknown feature(s) {', '.join(sorted(unknown))}; features are "
              f"{', '.join(FEATURES)}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        import graphjit as gj
        if not gj.cuda.is_available():
            print("graphjit fuzz: --device cuda needs a CUDA device (or NUMBA_ENABLE_CUDASIM=1)",
                  file=sys.stderr)
            return 2
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"compiled", "forward"}:
        print(f"graphjit fuzz: --modes takes compiled and/or forward, got {args.modes!r}",
              file=sys.stderr)
        return 2
    if args.chunk and args.graphs > args.chunk:
        return _chunked(args, argv if argv is not None else sys.argv[1:])
    out = None
    if args.summary_json:
        out = _ChildOut()
    res = fuzz(args.graphs, args.seed, args.device, [f for f in FEATURES if f not in without],
               modes=modes, shrink_mismatches=not args.no_shrink,
               shrink_seconds=args.shrink_seconds, save_dir=args.save, start=args.start,
               seconds=args.seconds, out=out)
    if args.summary_json:
        import json
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(res.to_json(), f)
    return 1 if res.records else 0


CHUNK = 200


class _ChildOut:
    """A chunk's output: everything but its own summary, which its parent prints."""

    def __init__(self):
        self.in_summary = False

    def __call__(self, line: str) -> None:
        if line.startswith("mismatch classes (") or line.startswith("refused: "):
            self.in_summary = True
        if not self.in_summary:
            print(line, flush=True)


def _chunked(args, argv) -> int:
    """Run ``--graphs`` in child processes of ``--chunk`` graphs each; one summary."""
    import json
    import subprocess
    import tempfile
    res = FuzzResult()
    t0 = time.monotonic()
    keep = []
    skip = {"--graphs", "--start", "--chunk", "--seconds", "--summary-json"}
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=")[0]
        if name in skip:
            i += 1 if "=" in a else 2
            continue
        keep.append(a)
        i += 1
    with tempfile.TemporaryDirectory(prefix="graphjit-fuzz-") as tmp:
        for first in range(args.start, args.start + args.graphs, args.chunk):
            n = min(args.chunk, args.start + args.graphs - first)
            cmd = [sys.executable, "-m", "graphjit", "fuzz", *keep, "--start", str(first),
                   "--graphs", str(n), "--chunk", "0", "--summary-json",
                   os.path.join(tmp, "summary.json")]
            if args.seconds is not None:
                left = args.seconds - (time.monotonic() - t0)
                if left <= 0 and res.graphs:
                    break
                cmd += ["--seconds", str(max(left, 0.0))]
            summary = os.path.join(tmp, "summary.json")
            if os.path.exists(summary):
                os.remove(summary)
            rc = subprocess.run(cmd, check=False).returncode
            if not os.path.exists(summary):
                # the child died (a crash in compiled code is a bug too): counted as a mismatch
                print(f"graph {first}..{first + n - 1}: CRASH: the process running them exited "
                      f"with status {rc}; rerun with --start {first} --graphs {n} --chunk 0",
                      flush=True)
                res.graphs += n
                res.records.append((first, "process", "crash", f"exit status {rc}"))
                continue
            with open(summary, encoding="utf-8") as f:
                res.add(json.load(f))
            print(f"[{res.graphs}/{args.graphs}] {time.monotonic() - t0:.0f} s, "
                  f"{len(res.records)} mismatches, {res.refused} refused", flush=True)
    res.seconds = time.monotonic() - t0
    _summary(res, lambda s: print(s, flush=True))
    return 1 if res.records else 0
