"""``@graphjit.compile``: per-signature cache of traced, optimised, Numba-compiled programs.

A call flattens its arguments, looks for a cached program whose guards hold (argument
shapes/dtypes/requires_grad, grad mode, the lifted tensors' shapes and flags, whether each
``.grad`` the function looked at exists, the ``training`` flag of the modules it reaches,
optimizer options, parameters and state), and runs it; otherwise it traces the function
again (``explain()`` says what changed). Running a program is one call into generated
code, then the write-back of the graph's updates into the tensors' buffers, done only
after the program succeeded, so a failing call changes nothing. A call like the previous
one takes a planned path that does the same checks cheaply ([Steady-state calls]).
"""
from __future__ import annotations

import functools
import inspect
import operator
import warnings

import numpy as np

from .. import autograd, devices
from .._gc import paused_gc
from ..errors import GraphjitError
from ..shapes import numel
from ..tensor import Tensor
from . import guards
from .trace import TracerTensor, _is_number, check_hyper_guard, trace

RECOMPILE_WARN_LIMIT = 8


class GraphjitWarning(UserWarning):
    pass


# ---- argument flattening ----------------------------------------------------------------------

def _flatten(obj, path, leaves, names):
    """Flatten nested tuples/lists/dicts; returns a hashable tree description."""
    if isinstance(obj, Tensor):
        leaves.append(obj)
        names.append(path)
        return ("T",)
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__,) + tuple(_flatten(v, f"{path}.{i}", leaves, names)
                                             for i, v in enumerate(obj))
    if isinstance(obj, dict):
        return ("dict",) + tuple((k, _flatten(obj[k], f"{path}.{k}", leaves, names))
                                 for k in sorted(obj, key=repr))
    if isinstance(obj, (bool, int, float, str, type(None))):
        return ("S", type(obj).__name__, obj)  # a static value: part of the key
    return ("O", id(obj))  # modules, optimizers, functions: by identity


def _tensor_sig(t: Tensor):
    return (tuple(t.shape), t.dtype.name, t.requires_grad, t._grad_fn is None, str(t.device))


def _describe_sig_change(old, new, names) -> list[str]:
    out = []
    for name, a, b in zip(names, old, new):
        if a[0] != b[0]:
            dims = [f"dim {i}: {x} -> {y}" for i, (x, y) in enumerate(zip(a[0], b[0])) if x != y]
            what = ", ".join(dims) if len(a[0]) == len(b[0]) else f"shape {a[0]} -> {b[0]}"
            out.append(f"argument {name}: {what}")
        if a[1] != b[1]:
            out.append(f"argument {name}: dtype {a[1]} -> {b[1]}")
        if a[2] != b[2]:
            out.append(f"argument {name}: requires_grad {a[2]} -> {b[2]}")
        if a[4:] != b[4:]:
            out.append(f"argument {name}: device {a[4]} -> {b[4]}")
    return out


# ---- names for lifted tensors -------------------------------------------------------------------

def _reachable(fn, args, kwargs) -> dict:
    """The objects the function names: its globals and closure cells, ``self``, arguments."""
    found = {}
    target = getattr(fn, "__func__", fn)
    if getattr(fn, "__self__", None) is not None:
        found["self"] = fn.__self__
    code = getattr(target, "__code__", None)
    if code is not None:
        glb = getattr(target, "__globals__", {})
        for n in code.co_names:
            if n in glb:
                found.setdefault(n, glb[n])
        for n, cell in zip(code.co_freevars, getattr(target, "__closure__", None) or ()):
            try:
                found.setdefault(n, cell.cell_contents)
            except ValueError:
                pass
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        found.update(bound.arguments)
    except (TypeError, ValueError):
        pass
    return found


def _bound_arguments(fn, args, kwargs) -> list:
    try:
        return list(inspect.signature(fn).bind(*args, **kwargs).arguments.items())
    except (TypeError, ValueError):
        return [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())


def _reachable_modules(found) -> list:
    """``(name, module)`` for every module reachable from the objects in ``found``."""
    from ..nn import Module
    out, seen = [], set()
    for base, obj in found.items():
        if isinstance(obj, Module):
            for n, m in obj.named_modules():
                if id(m) not in seen:
                    seen.add(id(m))
                    out.append((f"{base}.{n}" if n else base, m))
    return out


def _scan_names(found) -> dict:
    """Readable names (``model.0.weight``) for tensors reachable from the function."""
    from ..nn import Module
    from ..optim import Optimizer
    names = {}
    for base, obj in found.items():
        if isinstance(obj, Module):
            for n, p in obj.named_parameters():
                names.setdefault(id(p), f"{base}.{n}")
            for n, b in obj.named_buffers():
                names.setdefault(id(b), f"{base}.{n}")
        elif isinstance(obj, Tensor):
            names.setdefault(id(obj), base)
    for base, obj in found.items():
        if isinstance(obj, Optimizer):
            names[("opt", id(obj))] = base
            # Parameters no module named: by their index in the optimizer (its state_dict's).
            params = [p for g in obj.param_groups for p in g["params"]]
            for i, p in enumerate(params):
                names.setdefault(id(p), f"{base}.params.{i}")
    return names


def _arg_names(fn, args, kwargs, count) -> list[str]:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        leaves, names = [], []
        for k, v in bound.arguments.items():
            _flatten(v, k, leaves, names)
        if len(names) == count:
            return names
    except (TypeError, ValueError):
        pass
    return [f"arg{i}" for i in range(count)]


# ---- a compiled program and its guards ----------------------------------------------------------

def _opt_option(value, is_input: bool):
    if is_input and (_is_number(value) or (isinstance(value, tuple) and value
                                           and all(_is_number(v) for v in value))):
        # A runtime input (see [Hyper-parameters] in trace.py): only its kind is assumed.
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
    its hyper-parameters ([Hyper-parameters] in trace.py).

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


# NOTE: [Steady-state calls]
# A training step calls the same program thousands of times with the same tensors, so the
# per-call Python work is planned once per program and kept to what can change:
# - ``CompiledFunction`` remembers the program of its last call and, for plain positional
#   tensor arguments, compares each argument's type, shape, NumPy dtype, requires_grad and
#   leafness directly (what ``_key`` would put in the cache key) instead of building the key.
# - ``guards_hold`` checks the same facts as ``guard_failures`` (which words the reasons
#   for ``explain()``) without formatting anything; the optimizer part is [Optimizer guards].
# - The input arrays: each slot's current array (a tensor's ``_data``, a ``.grad``'s, a
#   NumPy array, an option's value) is compared by identity with the previous call's. The
#   same objects as last time mean the same driver arguments: the list of flat views built
#   then is passed again, through ``program.run_trusted`` ([Trusted program calls] in
#   backend/cpu/program.py). A new object goes through ``program.flat_input``, which checks
#   its dtype and shape and returns a flat view, or a copy for a non-contiguous or read-only
#   array; a copy (and a ``.grad`` still to be created) is never reused, since the tensor
#   may change before the next call. A flat view stays right for as long as we hold it: it
#   keeps the buffer alive (NumPy refuses to resize an array that has views), and its own
#   dtype, shape and flags are ours; a change to the tensor itself (a new ``_data``, or
#   its shape or dtype set in place) is a new object or a failing guard. (So the previous
#   call's arrays, a batch included, stay alive until the next call replaces them.)
# - Updates computed in place went into the tensor's buffer through its flat view (nothing
#   to copy); others are copied into the flat view, or into the tensor when its input was a
#   copy. The program's ``update_plan`` says which is which, so nothing is compared.

_FRESH = object()  # in the kept sources: an input made for one call only (never `is` anything)


class _Entry:
    """One traced and compiled program with what it assumed."""

    def __init__(self, tracer, result, program, graph, snapshots):
        self.slots = tracer.slots
        self.program = program
        self.graph = graph
        self.snapshots = snapshots
        self.slot_meta = [None] * len(self.slots)
        for i, s in enumerate(self.slots):
            if s.kind == "tensor":
                t = s.tensor
                self.slot_meta[i] = (tuple(t.shape), t.dtype, t._requires_grad)
        self.grad_seen = list(tracer.grad_seen.values())
        self.optimizers = []
        hyper_guards = list(dict.fromkeys(  # the same decision taken again is one guard
            (s, what, other, expected) for s, what, other, expected in tracer.hyper_guards))
        for opt in tracer.optimizers:
            viewed = {i for (o, i) in tracer._hyper_views if o == id(opt)}
            snapshot = _opt_snapshot(opt, tracer.optimizer_states[id(opt)], viewed)
            self.optimizers.append(_OptimizerGuard(
                opt, snapshot, viewed, [g for g in hyper_guards if g[0].owner[0] is opt]))
        self.hyper_guards = hyper_guards
        # What guards_hold compares, per slot kind ([Steady-state calls]).
        self._tensor_checks = [(s.tensor, tuple(s.tensor.shape), s.tensor._data.dtype,
                                s.tensor._requires_grad, type(s.tensor._data))
                               for s in self.slots if s.kind == "tensor"]
        self.device = tracer.device  # where the program runs (see [Devices])
        self._array_checks = [(s.tensor, tuple(s.value.shape), s.value.dtype.np)
                              for s in self.slots if s.kind == "array"]
        self._grad_owners = [owner for owner, _ in self.grad_seen]
        self._grad_absent = [not existed for _, existed in self.grad_seen]
        self._plan = None  # built by the first run (a lowered entry never runs)
        self.modules, self.module_names, self.training = [], [], []  # set by _compile
        self.one_shot = False      # see [Optimizer state created while tracing]
        self.new_state = []        # (opt, param, key, index into the program's outputs)
        self.freed = set()         # output positions whose graph backward() used up
        self.pass_stats = []       # (pass name, stats) of the pipeline run
        self.residuals = []        # values a compiled forward saves for its backward
        self.trace_number = 0
        self.update_slots = [tracer_slot_index(self.slots, target) for target, _ in graph.updates]
        self.output_tree = result
        self.graph_outputs = []  # the traced output values, by position in graph.outputs
        self.python_guards = None  # guards.PythonGuards, set by _compile

    # ---- guards ---------------------------------------------------------------------------

    def guards_hold(self, flat_args) -> bool:
        """Whether this program is right for the current situation (``guard_failures``
        would be empty), checked without words; see [Steady-state calls]."""
        for t, shape, dtype, requires_grad, kind in self._tensor_checks:
            d = t._data
            if (d.shape != shape or d.dtype != dtype or t._requires_grad != requires_grad
                    or type(d) is not kind):
                return False
        for a, shape, dtype in self._array_checks:
            if a.shape != shape or a.dtype != dtype:
                return False
        if self._grad_owners and [o._grad is None for o in self._grad_owners] != self._grad_absent:
            return False
        if self.modules and [m.training for m in self.modules] != self.training:
            return False
        for guard in self.optimizers:
            if not guard.holds(flat_args):
                return False
        if self.python_guards is not None and not self.python_guards.holds():
            return False
        return True

    def guard_failures(self, flat_args) -> list[str]:
        bad = []
        for s, meta in zip(self.slots, self.slot_meta):
            if s.kind == "array" and (s.tensor.shape != tuple(s.value.shape)
                                      or s.tensor.dtype != s.value.dtype.np):
                bad.append(f"array {s.name}: {s.value.type} -> {s.tensor.dtype}{list(s.tensor.shape)}")
            if meta is not None:
                t = s.tensor
                now = (tuple(t.shape), t.dtype, t._requires_grad)
                if now != meta:
                    bad.append(f"tensor {s.name}: shape/dtype/requires_grad {meta[0]}/{meta[1].name}/"
                               f"{meta[2]} -> {now[0]}/{now[1].name}/{now[2]}")
                if t.device != self.device:
                    bad.append(f"tensor {s.name}: device {self.device} -> {t.device}")
        for owner, existed in self.grad_seen:
            if (owner._grad is not None) != existed:
                name = next((s.name for s in self.slots if s.kind == "tensor" and s.tensor is owner),
                            "a tensor")
                bad.append(f"{name}.grad: {'exists' if existed else 'None'} -> "
                           f"{'None' if existed else 'exists'}")
        for name, m, was in zip(self.module_names, self.modules, self.training):
            if m.training != was:
                bad.append(f"module {name}: training {was} -> {m.training}")
        for guard in self.optimizers:
            bad += guard.failures(flat_args, with_decisions=False)
        if self.python_guards is not None:
            bad += self.python_guards.failures()
        if not bad:
            for guard in self.optimizers:
                bad += guard._decision_failures(flat_args)
        return bad

    # ---- running --------------------------------------------------------------------------

    def make_output(self, i, arr):
        # The program's result arrays are pooled and reused, unless it says an output is
        # fresh (allocated by this call, shared with nothing: [Fresh outputs] in
        # backend/cuda/program.py).
        fresh = getattr(self.program, "fresh_outputs", None)
        t = Tensor._wrap(arr if fresh and fresh[i] else devices.copy(arr))
        if i in self.freed:
            t._grad_fn = _UsedUp()
            t._requires_grad = True
        return t

    def finish(self, outputs):
        """The function's result, with the program's outputs in place of traced tensors."""
        tree = self.output_tree
        if isinstance(tree, TracerTensor):
            i = self._single_output
            if i is None:
                i = self._single_output = next(i for i, v in enumerate(self.graph_outputs)
                                               if v is tree._value)
            return self.make_output(i, outputs[i])
        return _rebuild(tree, outputs, self.graph_outputs, self.make_output)

    _single_output = None

    def input_arrays(self, tensors) -> list:
        """The program's input arrays, from each slot's current tensor (``resolve``)."""
        arrays = []
        for s, t in zip(self.slots, tensors):
            if t is None:  # a .grad this program creates (eager semantics: first backward)
                arrays.append(devices.zeros(s.value.shape, s.value.dtype.np, self.device))
            elif s.kind == "array":
                arrays.append(t)
            elif s.kind == "hyper":
                arrays.append(np.array(t, dtype=np.float64))
            else:
                arrays.append(t._data)
        return arrays

    def _build_plan(self):
        kinds = ("arg", "tensor", "grad", "array", "hyper")
        by_kind = {kind: [i for i, s in enumerate(self.slots) if s.kind == kind] for kind in kinds}
        p = _RunPlan()
        p.arg_index = [self.slots[i].index for i in by_kind["arg"]]
        p.tensors = [self.slots[i].tensor for i in by_kind["tensor"]]
        p.grad_owners = [self.slots[i].owner for i in by_kind["grad"]]
        p.arrays = [self.slots[i].tensor for i in by_kind["array"]]
        p.hypers = [self.slots[i].owner for i in by_kind["hyper"]]
        # Sources are gathered kind by kind; `order` maps their positions to slot positions.
        p.order = [i for kind in kinds for i in by_kind[kind]]
        p.kept = ([_FRESH] * len(self.slots), [None] * len(self.slots), [True] * len(self.slots))
        plan = self.program.update_plan
        p.updates = []
        for j, i in enumerate(self.update_slots):
            s = self.slots[i]
            where, k = plan[j]
            if where == "input" and k != i:
                raise GraphjitError(f"program {self.program.name}: update {j} of %{s.name} is "
                                    "computed in place into another input")
            ref = s.index if s.kind == "arg" else s.owner if s.kind == "grad" else s.tensor
            p.updates.append((i, s.kind, ref, where == "input", k, tuple(s.value.shape)))
        # Without copies: updates written in place into a fixed tensor need only its
        # version bumped; the others need their target found at each call.
        p.fixed_in_place = [u[2] for u in p.updates if u[3] and u[1] == "tensor"]
        p.other_updates = [u for u in p.updates if not (u[3] and u[1] == "tensor")]
        return p

    def _driver_args(self, flat_args):
        """The program's flat input arrays for this call, and which are copies (see
        [Steady-state calls])."""
        p = self._plan
        # (A comprehension costs a call even when empty: only the kinds there are.)
        sources = [flat_args[i]._data for i in p.arg_index]
        if p.tensors:
            sources += [t._data for t in p.tensors]
        if p.grad_owners:
            sources += [None if g is None else g._data for g in [o._grad for o in p.grad_owners]]
        if p.arrays:
            sources += p.arrays
        if p.hypers:
            sources += [opt.param_groups[index][key] if element is None
                        else opt.param_groups[index][key][element]
                        for opt, index, key, element in p.hypers]
        kept_sources, kept_args, kept_copied = p.kept
        if all(map(operator.is_, sources, kept_sources)):
            return kept_args, kept_copied
        # Sources are in `p.order` (kind by kind), driver arguments in slot order.
        kept_sources, driver_args, copied = list(kept_sources), list(kept_args), list(kept_copied)
        program = self.program
        for q, (src, i) in enumerate(zip(sources, p.order)):
            if src is kept_sources[q]:
                continue
            s = self.slots[i]
            if s.kind == "hyper":
                flat, fresh = np.array(src, dtype=np.float64).reshape(1), False
            elif src is None:  # a .grad this program creates (eager semantics: first backward)
                flat, fresh = devices.zeros(numel(s.value.shape), s.value.dtype.np, self.device), True
            else:
                flat, fresh = program.flat_input(i, src)
            driver_args[i], copied[i] = flat, fresh
            kept_sources[q] = _FRESH if fresh else src
        p.kept = (kept_sources, driver_args, copied)
        return driver_args, copied

    def run(self, flat_args):
        if self._plan is None:
            self._plan = self._build_plan()
        p = self._plan
        driver_args, copied = self._driver_args(flat_args)
        # Off, anomaly mode costs this one flag test; on, a program with backward work runs
        # with its in-place updates in private copies and its results are checked before
        # anything is written back ([Anomaly mode] in graphjit/anomaly.py).
        anomaly = autograd._anomaly_mode and autograd._anomaly.watch(self, flat_args)
        if anomaly:
            driver_args, copied, private = _private_updates(p, driver_args, copied)
        results = self.program.run_trusted(driver_args)
        if anomaly:
            autograd._anomaly.check_results(self, results, driver_args, private)
        outputs = [r.reshape(shape) for r, shape in zip(results, self.program.output_shapes)]
        # Write back only now: a failing program leaves every tensor as it was.
        if not any(copied):
            for t in p.fixed_in_place:
                t._version.value += 1
            updates = p.other_updates
        else:
            updates = p.updates
        for i, kind, ref, in_place, k, shape in updates:
            t = flat_args[ref] if kind == "arg" else ref._grad if kind == "grad" else ref
            if t is None:  # the .grad this program computed
                ref._grad = Tensor._wrap(devices.copy(
                    (driver_args[i] if in_place else results[k]).reshape(shape)))
                continue
            if not in_place:
                if copied[i]:
                    devices.copyto(t._data, results[k].reshape(shape))
                elif self.device.type == "cpu":  # into the flat view of t's array
                    driver_args[i][...] = results[k]
                else:
                    devices.copyto(driver_args[i], results[k])
            elif copied[i]:  # computed into a copy of the tensor's array
                devices.copyto(t._data, driver_args[i].reshape(shape))
            t._version.value += 1
        for opt, param, key, i in self.new_state:
            opt.state[param][key] = Tensor._wrap(devices.copy(outputs[i]))
        return outputs


def _private_updates(plan, driver_args, copied):
    """Anomaly mode: the driver arguments with every input updated in place replaced by a
    private copy (marked copied, so the write-back copies it into the tensor), and the
    positions of those copies."""
    driver_args, copied, private = list(driver_args), list(copied), []
    for i, _, _, in_place, _, _ in plan.updates:
        if in_place:
            if not copied[i]:
                driver_args[i], copied[i] = devices.copy(driver_args[i]), True
            private.append(i)
    return driver_args, copied, private


class _RunPlan:
    """Per program: where each slot's array comes from and where each update goes.

    ``kept``: the previous call's sources (in ``order``: kind by kind), driver arguments and
    which of those are copies (both in slot order); see [Steady-state calls]. ``updates``:
    ``(slot, kind, tensor / owner / argument index, in place, result index, shape)``."""
    __slots__ = ("arg_index", "tensors", "grad_owners", "arrays", "hypers", "order", "kept",
                 "updates", "fixed_in_place", "other_updates")


def tracer_slot_index(slots, value) -> int:
    for i, s in enumerate(slots):
        if s.value is value:
            return i
    raise GraphjitError("an update targets a value that is not a graph input")


def _rebuild(tree, outputs, out_values, make):
    """Replace the traced tensors in the function's result by the program's outputs."""
    if isinstance(tree, TracerTensor):
        i = next(i for i, v in enumerate(out_values) if v is tree._value)
        return make(i, outputs[i])
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*[_rebuild(v, outputs, out_values, make) for v in tree])
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(v, outputs, out_values, make) for v in tree)
    if isinstance(tree, dict):
        return {k: _rebuild(v, outputs, out_values, make) for k, v in tree.items()}
    return tree


def _collect_outputs(tree, acc):
    """The distinct traced tensors (by value) in the function's result, in order."""
    if isinstance(tree, TracerTensor):
        if all(t._value is not tree._value for t in acc):
            acc.append(tree)
    elif isinstance(tree, (tuple, list)):
        for v in tree:
            _collect_outputs(v, acc)
    elif isinstance(tree, dict):
        for v in tree.values():
            _collect_outputs(v, acc)
    return acc


# In a shortcut check (CompiledFunction._remember): a non-tensor argument, compared as the
# key compares it, by value (Python scalars) or by identity (modules, optimizers, ...).
_BY_VALUE = object()
_BY_IDENTITY = object()


class CompiledFunction:
    """What ``graphjit.compile(fn)`` returns: call it like ``fn``."""

    def __init__(self, fn, *, verify: bool = False, fastmath: bool = False):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.verify = verify
        self.fastmath = fastmath
        self._cache: dict = {}
        self._history: list[str] = []
        # Traces before a recompile warning; graphjit's own helpers (clipping over any
        # parameter list) raise it, since each new parameter list is a legitimate trace.
        self.warn_after = RECOMPILE_WARN_LIMIT
        self._last_sig = None
        self._ran_once = False  # the latest program was one-shot (see _created_state)
        # (entry, argument checks, grad mode, positions of the tensor arguments or None for
        # all of them): the shortcut of [Steady-state calls]
        self._last_call = None

    def __get__(self, obj, objtype=None):
        # Decorating a method: bind like a function would.
        return self if obj is None else functools.partial(self.__call__, obj)

    def _key(self, args, kwargs):
        leaves, paths = [], []
        tree = _flatten((args, kwargs), "", leaves, paths)
        sig = tuple(_tensor_sig(t) for t in leaves)
        return (tree, sig, autograd.is_grad_enabled()), leaves, sig

    def __call__(self, *args, **kwargs):
        if autograd._anomaly_mode and autograd._anomaly.wants_call(self):
            return autograd._anomaly.compiled_call(self, args, kwargs)  # [Anomaly mode]
        last = self._last_call
        if last is not None and not kwargs:
            # [Steady-state calls]: the arguments of the previous call's signature, checked
            # as _key would see them, then the program's own guards.
            entry, checks, grad_mode, tensor_at = last
            if len(args) == len(checks) and autograd.is_grad_enabled() == grad_mode:
                for a, check in zip(args, checks):
                    if type(a) is not check[0]:
                        break
                    how = check[1]
                    if how is _BY_VALUE or how is _BY_IDENTITY:
                        if a is not check[2] and (how is _BY_IDENTITY or a != check[2]):
                            break
                        continue
                    d = a._data
                    if (d.shape != check[1] or d.dtype != check[2] or type(d) is not check[5]
                            or a._requires_grad != check[3] or (a._grad_fn is None) != check[4]):
                        break
                else:
                    # The flat arguments are the tensors (what "arg" slots index).
                    flat = args if tensor_at is None else [args[i] for i in tensor_at]
                    if entry.guards_hold(flat):
                        return entry.finish(entry.run(flat))
        key, flat, sig = self._key(args, kwargs)
        entries = self._cache.setdefault(key, [])
        for entry in entries:
            if entry.guards_hold(flat):
                self._remember(entry, args, kwargs, key)
                return entry.finish(entry.run(flat))
        reasons = (entries[-1].guard_failures(flat) or None) if entries else None
        with paused_gc():  # [No GC while compiling] in graphjit/_gc.py
            entry, tracer = self._compile(args, kwargs, flat, sig, key, reasons)
        try:
            outputs = entry.run(flat)
        except BaseException:
            tracer.rollback()  # the first run failed: undo the trace's side effects too
            raise
        self._ran_once = entry.one_shot
        if not entry.one_shot:
            entries.append(entry)
            self._remember(entry, args, kwargs, key)
        return entry.finish(outputs)

    def _remember(self, entry, args, kwargs, key):
        """Keep ``entry`` for the next call's shortcut when the arguments are positional
        tensors, Python scalars or objects (no containers to flatten): their checks are then
        what _key would compare, grad mode aside."""
        self._last_call = None
        if kwargs:
            return
        checks = []
        for a in args:
            if isinstance(a, Tensor):
                if isinstance(a, TracerTensor):
                    return
                checks.append((type(a), a._data.shape, a._data.dtype, a._requires_grad,
                               a._grad_fn is None, type(a._data)))
            elif isinstance(a, (bool, int, float, str, type(None))):
                checks.append((type(a), _BY_VALUE, a))
            elif isinstance(a, (tuple, list, dict)):
                return  # flattened into the key: not worth comparing by hand
            else:
                checks.append((type(a), _BY_IDENTITY, a))  # modules, optimizers...
        tensor_at = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self._last_call = (entry, tuple(checks), key[2],
                           None if len(tensor_at) == len(args) else tensor_at)

    def _compile(self, args, kwargs, flat, sig, key, reasons):
        names = _arg_names(self.fn, args, kwargs, len(flat))
        if self._last_sig is None:
            why = ["first call"]
        elif reasons is not None:
            why = reasons
        else:
            why = _describe_sig_change(self._last_sig[1], sig, names)
            if not why and self._ran_once:
                why = ["the previous trace created optimizer state, so its program ran once; "
                       "this is the steady-state step"]
            why = why or ["a new signature"]
            if self._last_sig[0][2] != key[2]:
                why.append(f"grad mode {self._last_sig[0][2]} -> {key[2]}")
            if self._last_sig[0][0] != key[0]:
                why.append("the structure or the static (non-tensor) values of the arguments changed")
        self._last_sig = (key, sig)
        self._history.append(f"trace {len(self._history) + 1}: " + "; ".join(why))
        if len(self._history) > self.warn_after:
            warnings.warn(f"graphjit.compile: {self.__name__} was traced {len(self._history)} times; "
                          f"the latest because: {'; '.join(why)}. See .explain()",
                          GraphjitWarning, stacklevel=3)
        flat_args = list(flat)
        found = _reachable(self.fn, args, kwargs)
        # Python code may branch on `module.training`: the flags at the call are assumed.
        modules = _reachable_modules(found)
        training = [m.training for _, m in modules]
        reach = guards.Reachable(self.fn, _bound_arguments(self.fn, args, kwargs))
        python_guards = guards.PythonGuards(reach)  # the values before the trace ran
        attributes = guards.AttributeSnapshot(reach)
        tracer, result = trace(self.fn, args, kwargs, flat_args, names, _scan_names(found),
                               self.__name__)
        try:
            attributes.check_escapes(lambda v: isinstance(v, TracerTensor))
            entry = self._lower(tracer, result)
        except BaseException:
            tracer.rollback()
            raise
        entry.python_guards = python_guards if python_guards else None
        entry.trace_number = len(self._history)
        entry.modules = [m for _, m in modules]
        entry.module_names = [n for n, _ in modules]
        entry.training = training
        from .. import dump
        if dump.active():
            dump.write_entry(self, entry, flat_args)
        return entry, tracer

    def lower(self, *args, **kwargs) -> "Lowered":
        """Trace and optimise for these example arguments without running anything (no Numba
        compilation either), like JAX's ``jit(f).lower(x)``: ``.as_text(stage)`` gives the IR
        after any stage of the pipeline, ``.kernel_source()`` the generated module(s).
        Python side effects of the trace (optimizer state made by a first step) are undone."""
        return self._lower_only(None, args, kwargs)

    def lower_for(self, device, *args, **kwargs) -> "Lowered":
        """``lower(*args, **kwargs)`` for the target of ``device`` whatever device the
        example tensors are on: ``step.lower_for("cuda", x, y).kernel_source()`` shows the
        CUDA kernels of a step traced on CPU tensors, on a machine with no GPU (the launch
        sizes are the GPU's unless Numba's simulator is on)."""
        target = device if isinstance(device, devices.device) else devices.device(device)
        return self._lower_only(target, args, kwargs)  # (no GPU needed: nothing runs)

    def _lower_only(self, device, args, kwargs):
        key, flat, sig = self._key(args, kwargs)
        names = _arg_names(self.fn, args, kwargs, len(flat))
        tracer, result = trace(self.fn, args, kwargs, list(flat), names,
                               _scan_names(_reachable(self.fn, args, kwargs)), self.__name__)
        if device is not None:
            tracer.device = device  # the graph is the same; the target follows the device
        try:
            entry = self._lower(tracer, result,
                                build=functools.partial(_generate_only, fastmath=self.fastmath,
                                                        device=tracer.device))
        finally:
            tracer.rollback()
        return Lowered(entry)

    def _lower(self, tracer, result, build=None):
        from passes.pipeline import run_pipeline

        compile_graph, _, passes = backend_for(tracer.device)
        # Updates go straight into the tensors' buffers where legal ([In-place updates]).
        build = build or functools.partial(compile_graph, inplace=True, fastmath=self.fastmath)
        graph = tracer.graph
        _mark_state_roles(tracer)
        graph.host_inputs = _host_inputs(tracer)
        out_tensors = _collect_outputs(result, [])
        out_values = [t._value for t in out_tensors]
        created = _created_state(tracer)
        traced_state = [(opt, p, k, v) for opt, p, k, v in created if isinstance(v, TracerTensor)]
        graph.outputs = list(out_values) + [v._value for *_, v in traced_state]
        graph.updates = [(s.value, v) for _, (t, v) in tracer.current.items()
                         for s in [tracer._slot_of[id(t)]] if v is not s.value]
        # Outputs whose graph a backward() inside the function used up get no compiled
        # backward (calling backward on them again is an error in eager mode too).
        freed = {i for i, t in enumerate(out_tensors)
                 if t._requires_grad and t._value in tracer.freed_roots}
        differentiable = [t for i, t in enumerate(out_tensors) if t._requires_grad and i not in freed]
        if differentiable:
            # A compiled forward: its outputs get a grad_fn that runs a compiled backward.
            entry = _lower_forward_backward(self, tracer, result, out_tensors, differentiable,
                                            build)
        else:
            stats = []
            graph, snapshots = run_pipeline(graph, verify=self.verify, stats=stats, passes=passes)
            program = build(graph, name=graph.name)
            entry = _Entry(tracer, result, program, graph, snapshots)
            entry.pass_stats = stats
            # Passes may replace output values; outputs keep their positions, so map by those.
            entry.graph_outputs = out_values
        entry.freed = freed
        entry.one_shot = bool(created)
        entry.new_state = [(opt, p, k, len(out_values) + j)
                           for j, (opt, p, k, _) in enumerate(traced_state)]
        return entry

    # ---- introspection --------------------------------------------------------------------

    def explain(self) -> str:
        """Why each trace happened: the first call, then what changed (argument dims, dtypes,
        requires_grad, grad mode, a ``.grad`` appearing, optimizer options...)."""
        return "\n".join(self._history) if self._history else "not traced yet"

    @property
    def cache_size(self) -> int:
        return sum(len(v) for v in self._cache.values())

    def graphs(self):
        """The optimised graphs of every cached program."""
        return [e.graph for entries in self._cache.values() for e in entries]


def _host_inputs(tracer) -> list:
    """The inputs of a CUDA program that stay on the host ([Host scalars] in
    graphjit/ir/host.py): optimizer options, and 0-d tensors whose data is on the CPU."""
    if tracer.device.type != "cuda":
        return []
    found = []
    for s in tracer.slots:
        if s.value.shape != ():
            continue
        obj = s.resolve(tracer._flat_args)
        data = obj if s.kind == "array" else getattr(obj, "_data", None)
        if s.kind == "hyper" or type(data) is np.ndarray:
            found.append(s.value)
    return found


def _mark_state_roles(tracer):
    states = set()
    for opt in tracer.optimizers:
        for st in opt.state.values():
            for v in st.values():
                if isinstance(v, Tensor):
                    states.add(id(v))
    for s in tracer.slots:
        if s.kind == "tensor" and id(s.tensor) in states:
            s.value.role = "state"


def compile(fn=None, *, verify: bool = False, fastmath: bool = False):  # noqa: A001
    """Compile ``fn`` into a static graph program (``@graphjit.compile`` or ``compile(fn)``).

    ``verify``: run the IR verifier after every pass. ``fastmath``: let LLVM reassociate
    float arithmetic in the generated kernels (faster reductions and polynomial code, results
    no longer bit-comparable with eager mode; off by default)."""
    if fn is None:
        return lambda f: CompiledFunction(f, verify=verify, fastmath=fastmath)
    return CompiledFunction(fn, verify=verify, fastmath=fastmath)


# ---- a compiled forward with a compiled backward ------------------------------------------------

def backend_for(device):
    """``(compile_graph, generate, passes)`` of the target that runs programs on ``device``
    (``passes``: its pipeline, None for the default one)."""
    if device.type == "cuda":
        from ..backend import cuda as target
        return target.compile_graph, target.generate, target.cuda_passes()
    from ..backend import cpu as target
    return target.compile_graph, target.generate, None


def _generate_only(graph, name=None, fastmath=False, device=devices.CPU):
    """A stand-in for ``compile_graph`` when lowering: the generated module's text only."""
    generate = backend_for(device)[1]
    options = {"fastmath": fastmath} if device.type == "cpu" else {}
    return _Generated(graph, generate(graph, name or graph.name, inplace=True, **options).source)


class _Generated:
    def __init__(self, graph, source):
        self.graph = graph
        self.source = source


class Lowered:
    """What ``CompiledFunction.lower(...)`` returns: the program(s) for one signature."""

    def __init__(self, entry):
        self.entry = entry

    @property
    def stages(self) -> list:
        """Stage names in pipeline order: "trace", then each pass (and the forward/backward
        split of a compiled forward, as "forward" and "backward")."""
        names = [name for name, _ in self.entry.snapshots]
        if isinstance(self.entry, _ForwardBackwardEntry):
            names += ["forward", "backward"]
        return names

    def as_text(self, stage: str = "final") -> str:
        """The IR text after ``stage`` ("final": the optimised graph; for a compiled forward
        "final" is the forward program, "backward" the backward one). A pass that runs twice
        (dce) is named by its last run; "dce#1" names the first."""
        from ..ir import print_graph
        e = self.entry
        if stage == "final" or stage == "forward":
            return print_graph(e.graph)
        if stage == "backward" and isinstance(e, _ForwardBackwardEntry):
            return print_graph(e.backward_graph)
        found = _stage_text(e.snapshots, stage)
        if found is None:
            raise KeyError(f"no stage {stage!r}; stages: {', '.join(self.stages)}")
        return found

    def kernel_source(self, program: str = "forward") -> str:
        """The generated Numba module of the program ("forward"; "backward" for a compiled
        forward's backward program)."""
        e = self.entry
        if program == "backward":
            generate = backend_for(e.device)[1]
            options = {"fastmath": getattr(e, "fastmath", False)} if e.device.type == "cpu" else {}
            return generate(e.backward_graph, **options).source
        return e.program.source


def _stage_text(snapshots, stage):
    base, _, nth = stage.partition("#")
    matches = [text for name, text in snapshots if name == base]
    if not matches:
        return None
    return matches[int(nth) - 1 if nth else -1]


def _lower_forward_backward(cf, tracer, result, out_tensors, differentiable, build):
    """Split forward + backward into two programs joined by saved residuals.

    The joint graph gets one seed input per differentiable output and ``grad`` requests for
    every input that requires grad; after the pass pipeline, nodes that depend on a seed
    form the backward program, the rest the forward program, which also returns the
    forward values the backward reads (the residuals).
    """
    from passes.pipeline import run_pipeline

    from ..ir import Graph
    from ..ir.host import host_values
    from ..ops import registry
    graph = tracer.graph
    diff_slots = [s for s in tracer.slots if s.kind in ("arg", "tensor")
                  and s.resolve(tracer._flat_args)._requires_grad]
    n_out = len(graph.outputs)
    seeds, grad_values, wrt = [], [], []
    for j, t in enumerate(differentiable):
        seeds.append(graph.add_input(t._value.type, f"seed{j}", "arg"))
    grad_op = registry.get("grad")
    add_op = registry.get("add")
    for s in diff_slots:
        # With respect to the tensor's current value ([Gradients while tracing] in trace.py).
        current = tracer.value_of(s.resolve(tracer._flat_args))
        total = None
        for t, seed in zip(differentiable, seeds):
            if not tracer.reached_by(t._value, [current]):
                continue
            g = tracer.builder.apply(grad_op, [t._value, current, seed], {})
            total = g if total is None else tracer.builder.apply(add_op, [total, g], {})
        if total is not None:
            wrt.append(s)
            grad_values.append(total)
    graph.outputs = graph.outputs + grad_values
    stats = []
    # Fusion must not put forward and backward work in one node: they run as two programs.
    graph.fusion_split = list(seeds)
    joint, snapshots = run_pipeline(graph, verify=cf.verify, stats=stats,
                                    passes=backend_for(tracer.device)[2])

    seed_set = set(seeds)
    depends = set(seeds)
    fw_nodes, bw_nodes = [], []
    for n in joint.nodes:
        if any(v in depends for v in n.inputs):
            depends.update(n.outs)
            bw_nodes.append(n)
        else:
            fw_nodes.append(n)
    grads_out = joint.outputs[n_out:]
    residuals = []
    for v in [i for n in bw_nodes for i in n.inputs] + list(grads_out):
        if v not in depends and v not in residuals:
            residuals.append(v)
    fw_inputs = [v for v in joint.inputs if v not in seed_set]
    node_residuals = [v for v in residuals if v.node is not None]
    forward = Graph(f"{graph.name}_forward", inputs=fw_inputs, nodes=fw_nodes,
                    outputs=list(joint.outputs[:n_out]) + node_residuals, updates=joint.updates,
                    constants=dict(joint.constants), host_inputs=list(joint.host_inputs))
    backward = Graph(f"{graph.name}_backward")
    on_host = host_values(joint)  # saved host scalars reach the backward on the host too
    remap = {}
    for k, v in enumerate(residuals):
        if v.role == "const":
            remap[v] = backward.add_constant(joint.constants[v])
        else:
            remap[v] = backward.add_input(v.type, f"saved{k}", "arg")
            if v in on_host:
                backward.host_inputs.append(remap[v])
    for j, sv in enumerate(seeds):
        remap[sv] = backward.add_input(sv.type, sv.name, "arg")
    for n in bw_nodes:
        outs = backward.add_node(n.op, [remap[v] for v in n.inputs], n.attrs, n.out_type, n.source)
        remap.update(zip(n.outs, outs if isinstance(outs, list) else [outs]))
    backward.outputs = [remap[v] for v in grads_out]
    fw_program = build(forward, name=forward.name)
    entry = _ForwardBackwardEntry(tracer, result, fw_program, forward, snapshots)
    entry.fastmath = cf.fastmath
    entry.pass_stats = stats
    # What the forward saves for the backward (the dump tool's report lists them).
    entry.residuals = [v for v in residuals if v.role != "const"]
    entry.graph_outputs = [t._value for t in out_tensors]
    entry.seed_types = [sv.type for sv in seeds]
    entry.n_out = n_out
    entry.backward_graph = backward
    # By identity: `==` on tensors is the elementwise comparison op.
    entry.differentiable = [next(i for i, o in enumerate(out_tensors) if o is t)
                            for t in differentiable]
    entry.wrt = [tracer.slots.index(s) for s in wrt]
    # Residuals that are graph inputs are read from the input tensors at backward time
    # (and checked for in-place changes); the others come out of the forward program.
    entry.residual_plan = []
    for v in residuals:
        if v.role == "const":
            continue
        if v.node is None:
            entry.residual_plan.append(("input", tracer_slot_index(tracer.slots, v)))
        else:
            entry.residual_plan.append(("output", n_out + node_residuals.index(v)))
    return entry


class _ForwardBackwardEntry(_Entry):
    _bw_program = None
    fastmath = False

    @property
    def bw_program(self):
        """The compiled backward, compiled on first use: a forward whose outputs are never
        differentiated pays no Numba time for it."""
        if self._bw_program is None:
            compile_graph = backend_for(self.device)[0]
            self._bw_program = compile_graph(self.backward_graph, name=self.backward_graph.name,
                                             fastmath=self.fastmath)
        return self._bw_program

    def run(self, flat_args):
        self._call_tensors = [s.resolve(flat_args) for s in self.slots]
        outputs = _Entry.run(self, flat_args)
        self._last_outputs = outputs
        self._node = None
        if autograd.is_grad_enabled():
            saved = []
            for kind, i in self.residual_plan:
                if kind == "input":
                    t = self._call_tensors[i]
                    # (An array input has no version counter: read as it is, as eagerly.)
                    saved.append((t, None) if isinstance(t, np.ndarray) else (t, t._version.value))
                else:
                    saved.append((outputs[i], None))
            self._node = CompiledBackward(self, saved,
                                          [self._call_tensors[i] for i in self.wrt])
        return outputs

    def make_output(self, i, arr):
        t = _Entry.make_output(self, i, arr)
        if self._node is not None and i in self.differentiable:
            t._grad_fn = self._node
            t._output_nr = self.differentiable.index(i)
            t._requires_grad = True
        return t


class _UsedUp(autograd.Node):
    """``grad_fn`` of an output that ``backward()`` already ran through inside the compiled
    function: the graph behind it is used up, as after a backward in eager mode."""
    __slots__ = ()

    def __init__(self):
        self.seq = next(autograd._sequence)
        self.next_functions = ()

    def name(self) -> str:
        return "CompiledUsedUpBackward"

    def apply(self, grads):
        raise GraphjitError("trying to backward through the graph a second time: backward() "
                            "already ran through this tensor inside the compiled function. "
                            "Pass retain_graph=True to that backward() to differentiate the "
                            "returned tensor again")


class CompiledBackward(autograd.Node):
    """``grad_fn`` of a compiled forward's outputs: runs the compiled backward program."""
    __slots__ = ("entry", "saved", "num_outputs_", "freed", "retained")

    def __init__(self, entry, saved, wrt_tensors):
        self.entry = entry
        self.saved = saved
        self.num_outputs_ = len(entry.differentiable)
        self.next_functions = tuple(autograd.input_edge(t) for t in wrt_tensors)
        self.seq = next(autograd._sequence)
        self.freed = False
        self.retained = None
        if autograd._anomaly_mode:  # the call, to re-run eagerly ([Anomaly mode])
            autograd._anomaly.record_compiled(self)

    @property
    def num_outputs(self):
        return self.num_outputs_

    def name(self) -> str:
        return f"Compiled{self.entry.graph.name.title().replace('_', '')}Backward"

    def apply(self, grads):
        if autograd.is_grad_enabled():
            raise GraphjitError("create_graph=True through a compiled function is not supported: "
                                "its backward is a compiled program; differentiate the eager "
                                "function instead")
        if self.freed:
            raise GraphjitError(f"trying to backward through {self.name()} a second time; pass "
                                "retain_graph=True to the first backward")
        arrays = []
        for t, version in self.saved:
            if version is None:
                arrays.append(t)
            else:
                if t._version.value != version:
                    raise GraphjitError(f"a tensor of shape {tuple(t.shape)} saved by {self.name()} "
                                        "was modified by an in-place operation before backward")
                arrays.append(t._data)
        for g, t in zip(grads, self.entry.seed_types):
            arrays.append(devices.zeros(t.shape, t.dtype.np, self.entry.device) if g is None
                          else g._data)
        outs, _ = self.entry.bw_program(arrays)
        return tuple(Tensor._wrap(devices.copy(a)) for a in outs)

    def release(self):
        self.saved = None
        self.freed = True
