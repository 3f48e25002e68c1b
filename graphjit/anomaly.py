"""Anomaly mode: which backward op produced NaN or Inf, and where its forward op was called.

The switches (``detect_anomaly``, ``set_detect_anomaly``, ``is_anomaly_enabled``; the
package has them in graphjit.autograd, as ``torch.autograd`` does) and the work behind them.
The state they set lives in the tape (graphjit/autograd_tape.py), which reads it for every
node it makes and calls the work here through the hooks this module installs at import
([The tape under Tensor] there).

# NOTE: [Anomaly mode]
Off, nothing here runs: the tape (per node made), the engine (per backward) and a compiled
call (in ``CompiledFunction.__call__`` and ``_Entry.run``: two tests, about 30 ns each) read
the module flag ``autograd_tape._anomaly_mode`` and go on. On:
- Eager: each backward node records the user's stack (frames outside graphjit, innermost
  first) when it is made (``record``); the engine runs each node through
  ``apply_checked``, which raises ``AnomalyError`` when a gradient the node passes on
  holds NaN or Inf (``Function 'SqrtBackward0' returned nan values in its 0th output.``,
  then the forward stack, ending in the forward op's file:line), and adds that stack as a
  note to any other error the node raises. As in PyTorch only backward outputs are
  checked: a NaN made by a forward op is no error, and neither is a gradient a VJP rule
  computes for an input that needs none (it is not passed on).
- A compiled call goes through ``compiled_call``, which keeps the call's arguments on a
  per-thread stack. A program with backward work (a ``grad`` request in its trace: a
  whole training step) runs with its in-place updates going into private copies, and its
  results (outputs too: the eager re-run decides) are checked before anything is written
  back (``watch``, ``check_results``). Non-finite results abandon the call (``_NonFinite``: nothing was written; a first
  call's trace is rolled back as after any failing first run), and the function runs
  again eagerly, in anomaly mode, inside a ``_Sandbox`` that gives every tensor it can
  reach (arguments, lifted tensors, ``.grad``, optimizer parameters and state, module
  parameters and buffers) a private copy of its data and puts everything back after:
  eager's own check then raises the very error eager mode would. If the eager run finds
  nothing (a NaN loss with finite gradients), the call runs again with the check off and
  writes back as usual (a first call traces again for that: ``explain()`` shows it).
- A compiled forward's ``CompiledBackward`` node records the call's arguments and a copy
  of its inputs' data (``record_compiled``). When its gradients are not finite,
  ``apply_checked`` re-runs the forward eagerly on those copies (arguments replaced by
  leaf copies, lifted tensors by sandboxed copies) and back-propagates the same output
  gradients into the same inputs with capture (no ``.grad`` is written), so the error
  names the op inside the compiled function. If the re-run finds nothing (e.g. ``fastmath``
  changed a value), the error names the compiled node itself.
Unsound corners, said plainly: the eager re-run executes the function's Python code once
more, so Python side effects other than on the tensors, optimizers, modules' ``training``
flags and the random generator listed above (a counter, a print) happen again; and a
sandboxed tensor stops sharing memory with its views for the length of the re-run.
"""
from __future__ import annotations

import functools
import linecache
import os
import sys
import sysconfig
import threading
import warnings

import numpy as np

from . import autograd_engine as _engine
from . import autograd_tape as _tape
from . import devices
from . import random as _random
from .errors import _LIBRARY_DIRS, AutogradError
from .tensor import Tensor


class AnomalyError(AutogradError):
    """A backward node returned NaN or Inf while anomaly mode was on (a ``RuntimeError``).

    ``node``: the node's name (``SqrtBackward0``); ``output``: which of its outputs (the
    gradient of which input of the forward op); ``kind``: ``"nan"`` or ``"inf"``;
    ``where``: the user's file:line of the forward op (None if it was not recorded)."""

    def __init__(self, message, *, node=None, output=None, kind=None, where=None):
        self.node = node
        self.output = output
        self.kind = kind
        super().__init__(message, where=where)


# ---- the switches -------------------------------------------------------------------------------

def is_anomaly_enabled() -> bool:
    """Whether anomaly detection is on (``torch.is_anomaly_enabled``)."""
    return _tape._anomaly_mode


def is_anomaly_check_nan_enabled() -> bool:
    """Whether anomaly mode checks backward outputs for NaN/Inf
    (``torch.is_anomaly_check_nan_enabled``)."""
    return _tape._anomaly_check_nan


def _set_anomaly(mode: bool, check_nan: bool) -> None:
    _tape._anomaly_mode = bool(mode)
    _tape._anomaly_check_nan = bool(check_nan)


class detect_anomaly:
    """Anomaly detection for the block or decorated function (``torch.autograd.detect_anomaly``).

    While it is on, every backward node records the user's source line of the forward op
    that made it, and a backward node that returns NaN or Inf raises ``AnomalyError`` (a
    ``RuntimeError``) naming the node and that line: ``Function 'SqrtBackward0' returned
    nan values in its 0th output.`` Other errors raised in backward get a note naming the
    node's forward line. ``check_nan=False`` records lines without checking values.
    Compiled programs check their gradients and re-run eagerly to find the op (see
    [Anomaly mode] above). Leaving the block restores the previous mode.
    Like PyTorch it warns that it slows everything down; it is for debugging.
    """

    def __new__(cls, check_nan=True):
        if callable(check_nan):  # `@detect_anomaly` without parentheses
            return cls()(check_nan)
        return super().__new__(cls)

    def __init__(self, check_nan: bool = True):
        self.check_nan = bool(check_nan)
        self._prev = []  # a stack: the same object may be entered again while it is active
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime "
                      "and should only be enabled for debugging.", stacklevel=2)

    def __enter__(self):
        self._prev.append((_tape._anomaly_mode, _tape._anomaly_check_nan))
        _set_anomaly(True, self.check_nan)
        return self

    def __exit__(self, *exc):
        _set_anomaly(*self._prev.pop())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapper


class set_detect_anomaly:
    """``set_detect_anomaly(True)`` turns anomaly mode on at once, or for a ``with`` block
    (the previous mode comes back at its end), as ``torch.autograd.set_detect_anomaly``."""

    def __init__(self, mode: bool, check_nan: bool = True):
        self._prev = (_tape._anomaly_mode, _tape._anomaly_check_nan)
        _set_anomaly(mode, check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set_anomaly(*self._prev)
        return False


# ---- recording the forward stack ----------------------------------------------------------------

_TRACE_DEPTH = 8  # user frames kept per node
_PATHS = sysconfig.get_paths()
_STDLIB = tuple({os.path.join(os.path.abspath(_PATHS[k]), "") for k in ("stdlib", "platstdlib")})
_SITE = tuple({os.path.join(os.path.abspath(_PATHS[k]), "") for k in ("purelib", "platlib")})
_kinds: dict = {}  # co_filename -> 0 library, 1 the user's, 2 an installed package


def _kind(filename: str) -> int:
    """0 for what ``errors.user_frame`` skips (graphjit, NumPy, the standard library), 2 for
    installed packages (a test runner), 1 for the user's own files."""
    kind = _kinds.get(filename)
    if kind is None:
        path = os.path.abspath(filename)
        if path.startswith(_SITE):
            kind = 2 if not path.startswith(_LIBRARY_DIRS) else 0
        elif filename.startswith("<frozen") or path.startswith(_LIBRARY_DIRS + _STDLIB):
            kind = 0
        else:
            kind = 1
        _kinds[filename] = kind
    return kind


def _user_frames() -> tuple:
    """``(file, line, function)`` of the user's frames, innermost first: from the first frame
    outside graphjit (``errors.user_frame``'s) up to the first of an installed package (a
    test runner), at most ``_TRACE_DEPTH``."""
    frames = []
    f = sys._getframe(2)
    while f is not None and len(frames) < _TRACE_DEPTH:
        code = f.f_code
        if code is _localise_backward.__code__:
            # A compiled forward re-run at backward time: its callers are the backward
            # call's; the forward was called where the compiled node was made.
            frames.extend(_local.outer[-1][:_TRACE_DEPTH - len(frames)])
            break
        kind = _kind(code.co_filename)
        if kind == 2 and frames:
            break
        if kind:
            frames.append((code.co_filename, f.f_lineno, code.co_name))
        f = f.f_back
    return tuple(frames)


class _Forward:
    """What a node remembers of its forward call: the user's frames, and for a compiled
    forward's node the call (function, arguments, entry, copies of the inputs' data)."""
    __slots__ = ("frames", "call")

    def __init__(self, frames, call=None):
        self.frames = frames
        self.call = call

    @property
    def where(self):
        return f"{self.frames[0][0]}:{self.frames[0][1]}" if self.frames else None

    def describe(self, lead: str) -> str:
        lines = [f"{lead} (most recent call last):"]
        for filename, lineno, name in reversed(self.frames):
            lines.append(f'  File "{filename}", line {lineno}, in {name}')
            text = linecache.getline(filename, lineno).strip()
            if text:
                lines.append(f"    {text}")
        return "\n".join(lines)


def record(node) -> None:
    """Remember on ``node`` where the user called the forward op that made it."""
    node._anomaly = _Forward(_user_frames())


# ---- checking backward outputs ------------------------------------------------------------------

def _nonfinite(arr):
    """``"nan"``, ``"inf"`` or None for an array (NaN wins when it has both)."""
    if type(arr) is not np.ndarray:
        arr = devices.to_host(arr)
    if arr.dtype.kind != "f":
        return None
    with np.errstate(all="ignore"):
        if np.isfinite(arr.sum()):  # no allocation; any NaN or Inf makes the sum non-finite
            return None
    if np.isfinite(arr).all():  # the sum overflowed
        return None
    return "nan" if np.isnan(arr).any() else "inf"


def _error(node, output, kind, extra=""):
    fwd = getattr(node, "_anomaly", None)
    message = f"Function '{node.name()}' returned {kind} values in its {output}th output."
    if fwd is not None and fwd.frames:
        message += "\n" + fwd.describe("The forward call that created it")
        where = fwd.where
    else:
        message += ("\nIts forward call was not recorded: the node was made while anomaly mode "
                    "was off. Turn it on before the forward pass to see that line.")
        where = None
    if extra:
        message += "\n" + extra
    message += ("\nLook at what that op gets there (sqrt or log of 0, a division by 0, an "
                "overflow); graphjit.autograd.set_detect_anomaly(False) turns this check off.")
    return AnomalyError(message, node=node.name(), output=output, kind=kind, where=where)


def apply_checked(node, slots, needed):
    """``node.apply(slots)`` in anomaly mode (the engine's call; ``needed``: its set of nodes
    that lead to a captured input, or None)."""
    try:
        grads = node.apply(slots)
        passed_on = []  # output positions whose gradient goes on (what eager mode computes)
        for i, (edge, g) in enumerate(zip(node.next_functions, grads)):
            if g is None or edge[0] is None or (needed is not None and edge[0] not in needed):
                continue
            if type(g) is _tape._Stale:  # the engine would raise this when g reaches edge[0]
                raise AutogradError(g.error)
            passed_on.append(i)
    except AnomalyError:
        raise
    except Exception as e:
        fwd = getattr(node, "_anomaly", None)
        note = (fwd.describe(f"Error detected in {node.name()}. The forward call that created it")
                if fwd is not None and fwd.frames else f"Error detected in {node.name()}.")
        _add_note(e, note)
        raise
    if not _tape._anomaly_check_nan:
        return grads
    bad = None
    for i in passed_on:
        kind = _nonfinite(grads[i]._data)
        if kind is not None:
            bad = (i, kind)
            break
    if bad is None:
        return grads
    fwd = getattr(node, "_anomaly", None)
    extra = ""
    if fwd is not None and fwd.call is not None:  # a compiled forward: find the op inside it
        cause = _localise_backward(node, slots, fwd.call, passed_on)
        if cause is not None and not isinstance(cause, str):
            cause = repr(cause)
        extra = ("Its compiled backward program computed them; re-running the function eagerly "
                 "did not reproduce them" + (f" ({cause})." if cause else "."))
    raise _error(node, bad[0], bad[1], extra)


# ---- compiled calls -----------------------------------------------------------------------------

class _Call:
    """One compiled call in anomaly mode (``compiled_call``)."""
    __slots__ = ("cf", "args", "kwargs", "entered", "check", "snapshot")

    def __init__(self, cf, args, kwargs):
        self.cf = cf
        self.args = args
        self.kwargs = kwargs
        self.entered = False  # CompiledFunction.__call__ is running it
        self.check = True     # False: the eager re-run found nothing; run as usual
        self.snapshot = None  # a compiled forward's inputs, for record_compiled


class _NonFinite(Exception):
    """Internal: the program of ``call`` computed NaN/Inf; nothing was written back."""

    def __init__(self, entry, call):
        super().__init__("anomaly mode: non-finite results (internal; caught by compiled_call)")
        self.entry = entry
        self.call = call


_local = threading.local()


def _calls() -> list:
    calls = getattr(_local, "calls", None)
    if calls is None:
        calls = _local.calls = []
    return calls


def wants_call(cf) -> bool:
    """Whether ``CompiledFunction.__call__`` should hand this call to ``compiled_call`` (it
    should not when it is ``compiled_call``'s own call of ``cf``)."""
    calls = _calls()
    if calls:
        top = calls[-1]
        if top.cf is cf and not top.entered:
            top.entered = True
            return False
    return True


def compiled_call(cf, args, kwargs):
    """``cf(*args, **kwargs)`` in anomaly mode (see [Anomaly mode])."""
    call = _Call(cf, args, kwargs)
    calls = _calls()
    calls.append(call)
    try:
        try:
            return cf(*args, **kwargs)
        except _NonFinite as found:
            if found.call is not call:
                raise
            entry = found.entry
        _localise_call(call, entry)  # raises eager mode's AnomalyError if it finds the op
        call.entered, call.check = False, False
        return cf(*args, **kwargs)
    finally:
        calls.pop()


def _has_backward(entry) -> bool:
    found = entry.__dict__.get("_anomaly_backward")
    if found is None:
        if getattr(entry, "backward_graph", None) is not None:
            # A compiled forward: its own backward is checked when it runs; its forward
            # program has backward work only if the function called backward() inside.
            found = any(entry.slots[i].kind == "grad" for i in entry.update_slots)
        else:
            found = any(name == "trace" and " = grad(" in text for name, text in entry.snapshots)
        entry._anomaly_backward = found
    return found


def watch(entry, flat_args) -> bool:
    """Called by ``_Entry.run`` in anomaly mode before the program runs: whether to run it on
    private copies and check its results. Keeps a compiled forward's inputs for its node."""
    calls = _calls()
    if not calls or not _tape._anomaly_check_nan:
        return False
    call = calls[-1]
    if not call.entered or not call.check:
        return False
    if getattr(entry, "backward_graph", None) is not None and _tape.is_grad_enabled():
        snap = []  # (only a forward run with grad mode on gets a CompiledBackward node)
        for s in entry.slots:
            if s.kind in ("arg", "tensor", "grad"):
                t = s.resolve(flat_args)
                snap.append((s.kind, t, None if t is None else devices.copy(t._data)))
            else:
                snap.append((s.kind, None, None))
        call.snapshot = snap
    return _has_backward(entry)


def check_results(entry, results, driver_args, private) -> None:
    """Raise ``_NonFinite`` if the program's outputs or in-place updates hold NaN/Inf."""
    # (A program whose only effects are in-place updates returns a placeholder 0.)
    if (any(_nonfinite(r) for r in results if not isinstance(r, int))
            or any(_nonfinite(driver_args[i]) for i in private)):
        raise _NonFinite(entry, _calls()[-1])


def record_compiled(node) -> None:
    """``record`` for a compiled forward's ``CompiledBackward``: also the call to re-run."""
    fwd = _Forward(_user_frames())
    calls = _calls()
    if calls and calls[-1].entered and calls[-1].snapshot is not None:
        call = calls[-1]
        fwd.call = (call.cf, call.args, call.kwargs, node.entry, call.snapshot)
        call.snapshot = None
    node._anomaly = fwd


# ---- eager re-runs ------------------------------------------------------------------------------

class _Sandbox:
    """Gives tensors private copies of their data (or of ``data[id(t)]``) for a re-run and puts
    back everything the re-run may change: data, version counters, ``.grad``, ``grad_fn``,
    ``requires_grad``, optimizer param groups and state, ``training`` flags, the random
    generator, the contents of NumPy arrays."""

    def __init__(self, tensors, optimizers=(), modules=(), arrays=(), data=None):
        found = {}
        for t in tensors:
            if t is None or not hasattr(t, "_data"):
                continue
            found.setdefault(id(t), t)
            if t._grad is not None:
                found.setdefault(id(t._grad), t._grad)
        for opt in optimizers:
            for g in opt.param_groups:
                for p in g["params"]:
                    for t in (p, p._grad):
                        if t is not None:
                            found.setdefault(id(t), t)
            for st in opt.state.values():
                for v in st.values():
                    if hasattr(v, "_data"):
                        found.setdefault(id(v), v)
        for m in modules:
            for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
                for u in (t, t._grad):
                    if u is not None:
                        found.setdefault(id(u), u)
        self.tensors = list(found.values())
        self.optimizers = list({id(o): o for o in optimizers}.values())
        self.modules = list(modules)
        self.arrays = [a for a in arrays if isinstance(a, np.ndarray) and a.flags.writeable]
        self.data = data or {}

    def __enter__(self):
        self.saved = [(t, t._data, (t._version.value, t._version.history), t._grad,
                       t._grad_fn, t._output_nr, t._requires_grad) for t in self.tensors]
        self.saved_arrays = [(a, a.copy()) for a in self.arrays]
        self.saved_opts = [(opt, opt.param_groups, [(g, dict(g)) for g in opt.param_groups],
                            opt.state, {p: (st, dict(st)) for p, st in opt.state.items()})
                           for opt in self.optimizers]
        self.saved_training = [(m, m.training) for m in self.modules]
        self.saved_rng = _random.get_rng_state()
        for t in self.tensors:
            t._data = devices.copy(self.data.get(id(t), t._data))
        return self

    def __exit__(self, *exc):
        for t, data, version, grad, grad_fn, output_nr, requires_grad in self.saved:
            t._data = data
            t._version.value, t._version.history = version
            t._grad = grad
            t._grad_fn = grad_fn
            t._output_nr = output_nr
            t._requires_grad = requires_grad
        for a, copy in self.saved_arrays:
            if a.tobytes() != copy.tobytes():
                np.copyto(a, copy)
        for opt, groups, group_items, state, state_items in self.saved_opts:
            if opt.param_groups is not groups:
                opt.param_groups = groups
            for g, items in group_items:
                if not _same_items(g, items):
                    g.clear()
                    g.update(items)
            if opt.state is not state:
                opt.state = state
            for p in [p for p in state if p not in state_items]:
                del state[p]
            for p, (st, items) in state_items.items():
                if state.get(p) is not st:
                    state[p] = st
                if not _same_items(st, items):
                    st.clear()
                    st.update(items)
        for m, training in self.saved_training:
            m.training = training
        _random.set_rng_state(self.saved_rng)
        return False


def _same_items(d, items) -> bool:
    return d.keys() == items.keys() and all(d[k] is v for k, v in items.items())


def _tensors_in(obj, out):
    if hasattr(obj, "_data") and hasattr(obj, "_grad_fn"):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            _tensors_in(v, out)
    elif isinstance(obj, dict):
        for v in obj.values():
            _tensors_in(v, out)
    return out


def _replace(obj, fn):
    """``obj`` with each tensor ``t`` in its tuples, lists and dicts replaced by ``fn(t)``."""
    if hasattr(obj, "_data") and hasattr(obj, "_grad_fn"):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*[_replace(v, fn) for v in obj])
    if isinstance(obj, (tuple, list)):
        return type(obj)(_replace(v, fn) for v in obj)
    if isinstance(obj, dict):
        return {k: _replace(v, fn) for k, v in obj.items()}
    return obj


def _add_note(e, note: str) -> None:
    if hasattr(e, "add_note"):  # Python >= 3.11
        e.add_note(note)
    else:  # what PyTorch does in every version
        warnings.warn(note, stacklevel=3)


def _found_by(e, what: str):
    _add_note(e, f"(graphjit.compile in anomaly mode: {what}; re-running it eagerly, on copies "
                 "of its inputs and with nothing written back, found the op above)")
    return e


def _localise_call(call, entry) -> None:
    """The eager re-run of a compiled call whose program computed NaN/Inf (see [Anomaly mode])."""
    name = getattr(call.cf, "__name__", "the function")
    flat = _tensors_in((call.args, call.kwargs), [])
    # (The owner of a .grad passed as an argument, jit/slot.py's ArgOwner, is in flat.)
    tensors = flat + [s.tensor if s.kind == "tensor" else s.owner for s in entry.slots
                      if s.kind == "tensor" or s.kind == "grad" and hasattr(s.owner, "_data")]
    arrays = [s.tensor for s in entry.slots if s.kind == "array"]
    sandbox = _Sandbox(tensors, [g.opt for g in entry.optimizers], entry.modules, arrays)
    try:
        with sandbox:
            call.cf.fn(*call.args, **call.kwargs)
    except AnomalyError as e:
        raise _found_by(e, f"the compiled program of {name} computed NaN or Inf") from None
    except Exception as e:  # noqa: BLE001 - the compiled results stand; say why we could not look
        warnings.warn(f"anomaly mode: the compiled program of {name} computed NaN or Inf and "
                      f"re-running it eagerly to find the op failed: {e!r}", stacklevel=4)


def _localise_backward(node, grads, call, passed_on):
    """Re-run a compiled forward eagerly and back-propagate ``grads`` (the compiled backward's
    output positions ``passed_on``) with capture: raises eager mode's AnomalyError if that
    finds the op; otherwise returns what went wrong, or None."""
    cf, args, kwargs, entry, snapshot = call
    name = getattr(cf, "__name__", "the function")
    leaves = {}

    def leaf(t):  # an argument: a leaf with a copy of its data at the call (no outer graph)
        kept = next((d for k, u, d in snapshot if k == "arg" and u is t), None)
        if kept is None:
            return t
        if id(t) not in leaves:
            copy = Tensor._wrap(devices.copy(kept))
            copy._requires_grad = t._requires_grad
            leaves[id(t)] = copy
        return leaves[id(t)]

    new_args, new_kwargs = _replace((args, kwargs), leaf)
    lifted = [t for k, t, _ in snapshot if k != "arg" and t is not None]
    data = {id(t): d for k, t, d in snapshot if k != "arg" and t is not None}
    sandbox = _Sandbox(lifted, [g.opt for g in entry.optimizers], entry.modules, data=data)
    outer = getattr(_local, "outer", None)
    if outer is None:
        outer = _local.outer = []
    outer.append(node._anomaly.frames)  # read by _user_frames
    try:
        with sandbox:
            with _tape.enable_grad():
                result = cf.fn(*new_args, **new_kwargs)
            outs = {}
            _pair(entry.output_tree, result, outs)
            roots, seeds = [], []
            for j, g in enumerate(grads):
                if g is None:
                    continue
                t = outs.get(id(entry.graph_outputs[entry.differentiable[j]]))
                if t is None or not t._requires_grad:
                    return "its result does not match the compiled program's"
                roots.append(t)
                seeds.append(g)
            edges = []
            for i in passed_on:
                kind, t, _ = snapshot[entry.wrt[i]]
                edge = _engine._edge(leaf(t) if kind == "arg" else t)
                if edge is not None:
                    edges.append(edge)
            _engine.run_backward(roots, seeds, retain_graph=True, create_graph=False,
                                 capture=edges)
    except AnomalyError as e:
        raise _found_by(e, f"the compiled backward of {name} computed NaN or Inf") from None
    except Exception as e:  # noqa: BLE001 - reported in the error about the compiled node
        return e
    finally:
        outer.pop()
    return None


def _pair(traced, eager, out) -> None:
    """Map ``id(value)`` of each traced output to the tensor at its place in the eager result.
    (A traced output is a tracer tensor: the one kind of leaf here with an IR ``_value``.)"""
    if hasattr(traced, "_value"):
        out.setdefault(id(traced._value), eager)
    elif isinstance(traced, (tuple, list)) and isinstance(eager, (tuple, list)):
        for a, b in zip(traced, eager):
            _pair(a, b, out)
    elif isinstance(traced, dict) and isinstance(eager, dict):
        for k in traced:
            if k in eager:
                _pair(traced[k], eager[k], out)


_tape.set_anomaly_hooks(record, apply_checked)
