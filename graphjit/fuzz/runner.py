"""Run a fuzz program eagerly and compiled, and classify what happened.

The program runs as the text of its script (see [One text] in graphjit/fuzz/program.py).
Outcomes:

- ``ok``: every mode gave eager's results (within the harness's tolerances) or raised the
  same error class at the same call;
- ``refused``: some mode raised graphjit's ``TraceError`` (something the tracer explicitly
  does not support, such as ``.item()`` of a traced value) and no other mode mismatched; or
  eager mode on CUDA refused an in-place change through a view it had to copy ([Copied
  views] in graphjit/autograd_tape.py: an eager limit of its own, stated in its error) where the
  compiled program, which copies nothing, does what the CPU does (runs it, or raises what
  the CPU raises later on);
- ``invalid``: eager mode produced a NaN or an infinity (the generator keeps values in
  range, so this is rare; such programs are regenerated, never compared);
- ``mismatch``: a difference: ``kind`` is "error" (one mode raised and the other did not,
  or another class), "structure" (None where a tensor was, other shapes or dtypes) or
  "values" (numbers beyond the tolerance). A silent difference in numbers is always one.
"""
from __future__ import annotations

import linecache
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .program import Program, render

TRACE_ERROR = "TraceError"


@dataclass
class Outcome:
    status: str                       # "ok", "refused", "invalid", "mismatch"
    mode: str | None = None           # the mode that mismatched / refused
    kind: str | None = None           # mismatch kind
    text: str = ""
    eager_error: str | None = None    # class name when eager raised
    times: dict = field(default_factory=dict)
    refused: list = field(default_factory=list)
    # the largest |other - eager| / (|eager| + max|eager|) seen, in machine epsilons of the
    # dtype, over every floating value the modes agreed on
    eps: dict = field(default_factory=dict)

    @property
    def signature(self):
        """What the shrinker keeps while it makes the program smaller: the mode and kind of
        the difference and, for errors, which classes were raised, else what kind of value
        differs (a result, a parameter or buffer, a .grad, optimizer state, an argument), so
        that shrinking does not slip from one bug to another one it meets on the way."""
        if self.status != "mismatch":
            return None
        if self.kind == "error":
            return (self.mode, self.kind, self.error_classes)
        return (self.mode, self.kind, _category(self.text))

    error_classes: tuple = ()


def _category(text: str) -> str:
    """"call 1: p0.grad (element ..." -> "grad" (see Outcome.signature)."""
    key = text.split("\n")[0].split(": ", 1)[-1].split(" (element")[0].split(":")[0]
    if key.startswith("result"):
        return "result"
    if key.startswith("opt."):
        return "optimizer"
    if key.endswith(".grad"):
        return "grad"
    if key.startswith("arg "):
        return "argument"
    return "state"


def load(program: Program, modes=None) -> dict:
    """Execute the program's script (its harness included) and return its namespace."""
    src = render(program, modes)
    filename = f"<graphjit-fuzz seed={program.seed} graph={program.index}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns = {"__name__": "graphjit_fuzz_program", "__file__": filename}
    exec(compile(src, filename, "exec"), ns)  # noqa: S102 - our own generated text
    return ns


def _nonfinite(snaps) -> bool:
    for snap in snaps:
        if isinstance(snap, tuple):
            continue
        for v in snap.values():
            if v is not None and isinstance(v[2], np.ndarray) and v[2].dtype.kind == "f" \
                    and not np.isfinite(v[2]).all():
                return True
    return False


def _closeness(expected, got, eps: dict, precision: str) -> None:
    """Record in ``eps`` how close two agreeing runs were (see Outcome.eps), keyed by the
    program's precision (see program.precision)."""
    for e, g in zip(expected, got):
        if isinstance(e, tuple) or isinstance(g, tuple):
            continue
        for key, ev in e.items():
            gv = g.get(key)
            if ev is None or gv is None or ev[0] not in ("float32", "float64"):
                continue
            a, b = ev[2].astype(np.float64), gv[2].astype(np.float64)
            fin = np.isfinite(a) & np.isfinite(b)
            a, b = a[fin], b[fin]
            if not a.size:
                continue
            scale = float(np.max(np.abs(a)))
            dt = "float32" if "float32" in (ev[0], precision) else "float64"
            r = float(np.max(np.abs(a - b) / (np.abs(a) + scale + 1.0))) / float(np.finfo(dt).eps)
            eps[dt] = max(eps.get(dt, 0.0), r)


def _error_of(snaps):
    last = snaps[-1] if snaps else None
    return last[1] if isinstance(last, tuple) and last[0] == "error" else None


def _eager_copied_view_refusal(snaps) -> bool:
    """Whether eager mode ended in CUDA's copied-view refusal (``CopiedViewError``)."""
    return _error_of(snaps) == "CopiedViewError"


def check(program: Program, modes=None, eager_must_pass: bool = False) -> Outcome:
    """Run ``program`` in eager mode and in each other mode, and compare. With
    ``eager_must_pass``, a program eager mode rejects is not compiled at all (status
    "eager_error": the shrinker's cheap way out of broken candidates)."""
    import graphjit as gj
    modes = tuple(modes or program.modes)
    grad_mode, default_dtype = gj.is_grad_enabled(), gj.get_default_dtype()
    times = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ns = load(program, modes)
            t0 = time.perf_counter()
            try:
                eager = ns["run"]("eager")
            except Exception as e:  # noqa: BLE001 - build() or a snapshot failed: a generator bug
                return Outcome("invalid", text=f"eager run failed outside the calls: "
                                                f"{type(e).__name__}: {e}", times=times)
            times["eager"] = time.perf_counter() - t0
            if _nonfinite(eager):
                return Outcome("invalid", text="eager mode produced NaN or infinity", times=times)
            eager_error = _error_of(eager)
            if eager_error and eager_must_pass:
                return Outcome("eager_error", eager_error=eager_error, times=times)
            refused = []
            eps: dict = {}
            for mode in modes:
                if mode == "eager":
                    continue
                t0 = time.perf_counter()
                try:
                    other = ns["run"](mode)
                except Exception as e:  # noqa: BLE001 - outside the calls: compared as an error
                    other = [("error", type(e).__name__, f"outside the calls: {e}")]
                times[mode] = time.perf_counter() - t0
                if _error_of(other) == TRACE_ERROR or _eager_copied_view_refusal(eager):
                    refused.append(mode)
                    continue
                diff = ns["compare"](eager, other)
                if diff is None:
                    _closeness(eager, other, eps, ns["PRECISION"])
                if diff is not None:
                    out = Outcome("mismatch", mode, diff[0], diff[1].replace("other", mode),
                                  eager_error=eager_error, times=times)
                    out.error_classes = (eager_error, _error_of(other))
                    return out
            if refused:
                return Outcome("refused", refused[0], text=f"{', '.join(refused)} refused",
                               eager_error=eager_error, times=times, refused=refused, eps=eps)
            return Outcome("ok", eager_error=eager_error, times=times, eps=eps)
    finally:
        gj.set_grad_enabled(grad_mode)
        gj.set_default_dtype(default_dtype)
