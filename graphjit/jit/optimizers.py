"""Optimizers inside a compiled function: hyper-parameters, state made by a trace, guards.

An ``opt.step()`` inside a compiled function is traced like any Python code, with three
exceptions, each with its note here:

- its numeric options are runtime inputs, not constants ([Hyper-parameters]);
- state that a first step creates makes that trace's program a one-shot ([Optimizer state
  created while tracing]);
- what a program assumed of the optimizer is checked at every call, cheaply after the first
  check ([Optimizer guards]).

# NOTE: [Hyper-parameters]
While tracing, ``opt.step()`` computes with a view of each param group whose numeric
options are ``HyperTensor``s: 0-d float64 graph inputs (role "hyper") read from
``param_groups[i]`` at every call, so an LR schedule never recompiles. float64 keeps the
arithmetic on them (``1 - beta1``, ``lr / bias_correction``) what Python does with the
floats in eager mode; 0-d tensors are weak in type promotion, so a float32 update stays
float32. A Python decision on the value itself (``if momentum != 0``, ``float(eps)``) is
taken on the current value and becomes a guard of the program: another value that decides
the same way reuses it, one that decides otherwise traces again.
"""
from __future__ import annotations

import operator

from ..dtypes import float64
from ..shapes import TensorType
from ..tensor import Tensor
from .slot import _Slot
from .tracer_tensor import TracerTensor


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---- tracing: options as runtime inputs ([Hyper-parameters]) ---------------------------------

_COMPARE = {"__eq__": lambda a, b: a == b, "__ne__": lambda a, b: a != b,
            "__lt__": lambda a, b: a < b, "__le__": lambda a, b: a <= b,
            "__gt__": lambda a, b: a > b, "__ge__": lambda a, b: a >= b}


class HyperTensor(TracerTensor):
    """An optimizer hyper-parameter inside a trace: a runtime input that knows its value."""

    __hash__ = TracerTensor.__hash__
    # It stands for the Python float eager mode computes with: type promotion treats it as
    # one (a 0-d float32 parameter times it stays float32), not as a 0-d float64 tensor.
    _weak_scalar = True

    def _decide(self, what: str, other, result):
        self._tracer.hyper_guards.append((self._slot, what, other, result))
        return result

    def __bool__(self):
        return self._decide("bool", None, bool(self._concrete))

    def __float__(self):
        return self._decide("value", None, float(self._concrete))

    def __int__(self):
        return self._decide("value", None, int(self._concrete))

    def __repr__(self):
        return f"HyperTensor({self._slot.name}={self._concrete!r})"


def _comparison(name):
    fn = _COMPARE[name]
    traced = getattr(TracerTensor, name)

    def compare(self, other):
        if isinstance(other, (bool, int, float)):
            return self._decide(name, other, fn(self._concrete, other))
        return traced(self, other)
    return compare


for _name in _COMPARE:
    setattr(HyperTensor, _name, _comparison(_name))


def check_hyper_guard(value, what, other, expected) -> bool:
    """Whether the decision ``what`` recorded on a hyper-parameter holds for ``value``."""
    if what == "bool":
        return bool(value) == expected
    if what == "value":
        return value == expected
    return _COMPARE[what](value, other) == expected


class TracerOptimizers:
    """The methods of ``Tracer`` (trace.py) that optimizers call through ``graphjit._tracing``."""

    def note_optimizer(self, opt) -> None:
        if all(o is not opt for o in self.optimizers):
            self.optimizers.append(opt)
            # What its state was: the program is only valid for that state (its Python
            # branches, e.g. "no momentum buffer yet", were taken on it), and it is put back
            # if this trace fails (see ``Tracer.rollback``).
            before = {p: dict(st) for p, st in opt.state.items()}
            self.optimizer_states[id(opt)] = before
            # The per-parameter dicts themselves are put back (with their contents): they
            # are the optimizer's own containers ([Optimizer change counts]).
            self._undo.append(("opt", opt, [(p, st, before[p]) for p, st in opt.state.items()]))

    def hyper_group(self, opt, index: int, group: dict) -> dict:
        """``group`` with its numeric options replaced by hyper-parameter inputs."""
        self.note_optimizer(opt)
        key = (id(opt), index)
        if key not in self._hyper_views:
            base = self._names.get(("opt", id(opt)), "opt")
            view = {}
            for name, value in group.items():
                if _is_number(value):
                    view[name] = self._hyper(opt, index, name, None, value, f"{base}.{name}")
                elif isinstance(value, tuple) and value and all(_is_number(v) for v in value):
                    view[name] = tuple(self._hyper(opt, index, name, j, v, f"{base}.{name}{j}")
                                       for j, v in enumerate(value))
                else:
                    view[name] = value
            self._hyper_views[key] = view
        return self._hyper_views[key]

    def _hyper(self, opt, index, key, element, value, name):
        v = self.graph.add_input(TensorType((), float64), self._unique(name), "hyper")
        slot = _Slot("hyper", v, v.name, owner=(opt, index, key, element))
        self.slots.append(slot)
        t = HyperTensor._make(v, self, False)
        t._slot = slot
        t._concrete = value
        return t


def _created_state(tracer):
    """``(opt, param, key, tensor)`` for each optimizer state entry the trace created.

    # NOTE: [Optimizer state created while tracing]
    A first ``opt.step()`` creates state (Adam's moments, SGD's momentum buffer) as a Python
    side effect, on a branch ("no state yet") that later steps do not take. The program of
    that trace is therefore only right for an optimizer without that state: it runs once
    (``_Entry.one_shot``) and the next call traces the steady-state step. State the trace
    made as a traced value (``buf = g.clone()``) is a program output, installed in
    ``opt.state`` as a real tensor after the run.
    """
    created = []
    for opt in tracer.optimizers:
        before = tracer.optimizer_states[id(opt)]
        for p, st in opt.state.items():
            for k, v in st.items():
                if isinstance(v, Tensor) and before.get(p, {}).get(k) is not v:
                    created.append((opt, p, k, v))
    return created


# ---- calls: what a program assumed of an optimizer ([Optimizer guards]) -------------------------

def _opt_option(value, is_input: bool):
    if is_input and (_is_number(value) or (isinstance(value, tuple) and value
                                           and all(_is_number(v) for v in value))):
        # A runtime input ([Hyper-parameters]): only its kind is assumed.
        return ("input", len(value) if isinstance(value, tuple) else None)
    return repr(value)


def _opt_snapshot(opt, state=None, hyper_groups=()):
    """What a program assumed of ``opt``: its options (by value, except those that are runtime
    inputs: the groups in ``hyper_groups`` went through ``hyper_group``), the parameters of
    each group, and which tensors its state held (``(param, key, tensor)``); parameters and
    tensors are compared by identity (so they are held here: an id is never reused)."""
    groups, params = [], []
    for i, g in enumerate(opt.param_groups):
        groups.append(tuple(sorted((k, _opt_option(v, i in hyper_groups))
                                   for k, v in g.items() if k != "params")))
        params.append(tuple(g.get("params", ())))
    state = opt.state if state is None else state
    tensors = tuple((p, k, v) for p, st in state.items()
                    for k, v in sorted(st.items()) if isinstance(v, Tensor))
    return tuple(groups), params, tensors


def _same_objects(a, b) -> bool:
    """Whether two sequences hold the same objects (``is``; ``==`` on tensors is an op)."""
    return len(a) == len(b) and all(map(operator.is_, a, b))


def _snapshot_changes(opt, snap, now) -> list[str]:
    if now[0] != snap[0]:
        return [f"optimizer {type(opt).__name__} options changed: {snap[0]} -> {now[0]}"]
    if len(now[1]) != len(snap[1]) or not all(map(_same_objects, now[1], snap[1])):
        return [f"optimizer {type(opt).__name__}: the parameters of a param group changed"]
    if len(now[2]) != len(snap[2]) or not all(
            p is q and k == j and v is w for (p, k, v), (q, j, w) in zip(now[2], snap[2])):
        return [f"optimizer {type(opt).__name__} state tensors were replaced"]
    return []


def _immutable(value) -> bool:
    if isinstance(value, tuple):
        return all(map(_immutable, value))
    return isinstance(value, (int, float, complex, str, bytes, type(None)))


class _OptimizerGuard:
    """What one program assumed of one optimizer: its snapshot and the decisions taken on
    its hyper-parameters ([Hyper-parameters]).

    # NOTE: [Optimizer guards]
    The full check builds the snapshot again (sorted options, reprs, every state tensor)
    and replays the hyper-parameter decisions: tens of microseconds, more with more
    parameters. The optimizer's containers count their own changes ([Optimizer change
    counts] in graphjit/optim/optimizer.py), so after a full check passed ``holds`` keeps
    the counts and the containers it saw, and while ``param_groups`` and ``state`` are the
    same objects with the same counts, nothing the snapshot or a decision reads can
    differ. A number replaced by a number (``opt.param_groups[0]["lr"] = 0.01``, an LR
    scheduler) changes only ``values``: the option is a runtime input, so only the
    decisions are replayed (``momentum`` set to 0 fails one and traces again). The counts
    are used only when ``_change_counter`` vouches for every container and every option
    value is immutable (numbers, strings, None, tuples of those): a list or tensor option
    could change in place, uncounted, so then every call makes the full check.
    """
    __slots__ = ("opt", "snapshot", "viewed", "all_viewed", "hyper_guards", "seen")

    def __init__(self, opt, snapshot, viewed, hyper_guards):
        self.opt = opt
        self.snapshot = snapshot
        self.viewed = viewed
        # Every group's numbers are runtime inputs (a number for a number leaves the snapshot).
        self.all_viewed = viewed == set(range(len(opt.param_groups)))
        self.hyper_guards = hyper_guards  # (slot, decision, operand, result), no repeats
        self.seen = None  # (changes, structure count, values count, param_groups, state)

    def _decision_failures(self, flat_args) -> list[str]:
        bad = []
        for s, what, other, expected in self.hyper_guards:
            value = s.resolve(flat_args)
            if not check_hyper_guard(value, what, other, expected):
                test = "its value" if what in ("bool", "value") else f"{what} {other!r}"
                bad.append(f"optimizer option {s.name}: {value!r} decides {test} "
                           f"differently than the traced value did")
        return bad

    def failures(self, flat_args, with_decisions=True) -> list[str]:
        bad = _snapshot_changes(self.opt, self.snapshot,
                                _opt_snapshot(self.opt, hyper_groups=self.viewed))
        if bad or not with_decisions:
            return bad
        return self._decision_failures(flat_args)

    def holds(self, flat_args) -> bool:
        opt = self.opt
        seen = self.seen
        if seen is not None:
            changes, structure, values, groups, state = seen
            if (changes.structure == structure and opt.param_groups is groups
                    and opt.state is state):
                if changes.values == values:
                    return True
                if self.all_viewed:
                    values = changes.values
                    if self._decision_failures(flat_args):
                        return False
                    self.seen = (changes, structure, values, groups, state)
                    return True
        counter = getattr(opt, "_change_counter", None)
        changes = counter() if counter is not None else None
        if changes is not None:  # read before the check: a change during it is not missed
            seen = (changes, changes.structure, changes.values, opt.param_groups, opt.state)
        if self.failures(flat_args):
            return False
        if changes is not None and all(_immutable(v) for g in opt.param_groups
                                       for k, v in g.items() if k != "params"):
            self.seen = seen
        return True


def optimizer_guards(tracer) -> tuple[list, list]:
    """The guards of a new program on the optimizers its trace used: one
    ``_OptimizerGuard`` per optimizer, and every hyper-parameter decision of the trace
    ``(slot, decision, operand, result)``, each once."""
    hyper_guards = list(dict.fromkeys(  # the same decision taken again is one guard
        (s, what, other, expected) for s, what, other, expected in tracer.hyper_guards))
    guards = []
    for opt in tracer.optimizers:
        viewed = {i for (o, i) in tracer._hyper_views if o == id(opt)}
        snapshot = _opt_snapshot(opt, tracer.optimizer_states[id(opt)], viewed)
        guards.append(_OptimizerGuard(
            opt, snapshot, viewed, [g for g in hyper_guards if g[0].owner[0] is opt]))
    return guards, hyper_guards
