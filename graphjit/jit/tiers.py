"""Which tier a compiled function's CPU programs start on, and what they ran on since.

``graphjit.compile(fn, tiered=...)``, or the environment variable ``GRAPHJIT_TIERED`` when
``tiered`` is None (the default):

- ``True`` / ``GRAPHJIT_TIERED=1`` (the default): a new program's first calls run its
  optimised graph on NumPy while Numba compiles it in the background; the native program
  takes over at a call boundary once ready ([Tiered execution] in
  graphjit/backend/cpu/tiered.py). ``CompiledFunction.wait_compiled()`` waits for that.
- ``False`` / ``GRAPHJIT_TIERED=0``: the program is compiled before its first call returns.
- ``"interpret"`` / ``GRAPHJIT_TIERED=interpret``: NumPy only, never compiled (tests and
  debugging of the first tier).

A program that runs once only (the first step of an optimizer, which creates its state:
[Optimizer state created while tracing] in optimizers.py) is not compiled for its call when
tiered: its native code would arrive after the call it was for. It is interpreted, and
compiled in the background later, once nothing else compiles, for the next process; if an
earlier process left all its code in the cache, it is loaded instead (tier "once").
"""
from __future__ import annotations

import os

_NAMES = {"1": "tiered", "on": "tiered", "true": "tiered", "yes": "tiered", "tiered": "tiered",
          "0": "native", "off": "native", "false": "native", "no": "native", "native": "native",
          "interpret": "interpret"}


def tier_mode(option) -> str:
    """"tiered", "native" or "interpret" for ``compile``'s ``tiered`` option (None: the
    environment's ``GRAPHJIT_TIERED``, default tiered)."""
    if option is None:
        text = os.environ.get("GRAPHJIT_TIERED", "").strip().lower()
        if not text:
            return "tiered"
        if text not in _NAMES:
            raise ValueError(f"GRAPHJIT_TIERED must be 1, 0 or interpret, got {text!r}")
        return _NAMES[text]
    if option is True:
        return "tiered"
    if option is False:
        return "native"
    if option == "interpret":
        return "interpret"
    raise ValueError(f"tiered must be True, False, 'interpret' or None, got {option!r}")


def program_tier(mode: str, one_shot: bool) -> str:
    """The tier one program is built with: a program that runs once is not worth compiling
    when tiered, but its code is worth loading when an earlier process compiled it."""
    return "once" if mode == "tiered" and one_shot else mode


def programs_of(entry) -> list:
    """``(label, program)`` of an entry's programs built so far ("program", or a compiled
    forward's "forward" and, once a backward ran, "backward")."""
    backward = getattr(entry, "backward_graph", None)
    if backward is None:
        return [("program", entry.program)]
    found = [("forward", entry.program)]
    if getattr(entry, "_bw_program", None) is not None:
        found.append(("backward", entry._bw_program))
    return found


def tier_lines(entry) -> list:
    """One line per program of ``entry``: ``"<label> <name>: <the tier it ran on>"`` (see
    TierStatus.describe); programs compiled before their first call (tier "native") have
    nothing to say."""
    lines = []
    for label, program in programs_of(entry):
        status = getattr(program, "tier", None)
        if status is not None and status.mode != "native":
            lines.append(f"{label} {program.name}: {status.describe()}")
    return lines


def tier_note(entry) -> str:
    """``tier_lines`` as a suffix of the entry's line in ``explain()`` ("" when empty)."""
    lines = tier_lines(entry)
    return f"; ran on: {'; '.join(lines)}" if lines else ""


def wait_native(entries, timeout=None) -> bool:
    """Wait until every tiered program of ``entries`` runs natively (True), or ``timeout``
    seconds pass (False); programs that only interpret are skipped. Raises the error of a
    native program that could not be built."""
    import time
    deadline = None if timeout is None else time.perf_counter() + timeout
    for entry in entries:
        for _, program in programs_of(entry):
            wait = getattr(program, "wait", None)
            status = getattr(program, "tier", None)
            if wait is None or status is None or status.mode != "tiered":
                continue
            left = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
            if wait(left) is None:
                return False
    return True
