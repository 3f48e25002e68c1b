"""Running a compiled program: its guards, the steady-state call path, the write-back.

An ``_Entry`` is one traced and compiled program with everything it assumed (the guards)
and everything needed to run it: where each input's array comes from (its tracer's slots),
where each update goes, and how to build the function's result from the program's
outputs. ``CompiledFunction`` (compile.py) keeps a list of entries per cache key and runs
the first whose guards hold. A compiled forward's entry, whose outputs get a compiled
backward, is ``_ForwardBackwardEntry`` in forward_backward.py.
"""
from __future__ import annotations

import operator
import sys
from dataclasses import dataclass

import numpy as np

from .. import anomaly, autograd_tape, devices
from ..errors import GraphjitError
from ..shapes import numel
from ..tensor import Tensor
from .optimizers import optimizer_guards
from .slot import ArgOwner, owner_of, owner_refs
from .tracer_tensor import TracerTensor


@dataclass(frozen=True)
class Outputs:
    """What a traced function returns, and what its program's outputs are for."""
    tree: object  # the function's result, with the traced tensors in it
    values: list  # the traced output values, by position in the graph's outputs
    freed: frozenset = frozenset()  # positions whose graph a backward() inside used up
    new_state: tuple = ()  # (opt, param, key, output position): state the trace made
    one_shot: bool = False  # see [Optimizer state created while tracing] in optimizers.py


@dataclass(frozen=True)
class Assumed:
    """What a program assumed besides its tracer's records, known before the trace ran
    (``CompiledFunction._compile`` fills it; ``lower()`` assumes nothing more)."""
    trace_number: int = 0  # its place in explain()'s history
    modules: tuple = ()  # (name, module): modules whose ``training`` flag is assumed
    training: tuple = ()  # their flags at the call (Python code may branch on them)
    python_guards: object = None  # guards.PythonGuards, or None when nothing is guarded
    objects: tuple = ()  # what the cache key names by identity: held, so no id is reused


# NOTE: [Steady-state calls]
# A training step calls the same program thousands of times with the same tensors, so the
# per-call Python work is planned once per program and kept to what can change:
# - ``CompiledFunction`` (compile.py) remembers the program of its last call and, for plain
#   positional tensor arguments, compares each argument's type, shape, NumPy dtype,
#   requires_grad and leafness directly (what ``_key`` would put in the cache key) instead of
#   building the key.
# - ``guards_hold`` checks the same facts as ``guard_failures`` (which words the reasons
#   for ``explain()``) without formatting anything; the optimizer part is [Optimizer guards].
# - The input arrays: each slot's current array (a tensor's ``_data``, a ``.grad``'s, a
#   NumPy array, an option's value) is compared by identity with the previous call's. The
#   same objects as last time mean the same driver arguments: the list of flat views built
#   then is passed again, through ``program.run_trusted`` ([Trusted program calls] in
#   backend/cpu/program.py). A new object goes through ``program.flat_input``, which checks
#   its dtype and shape and returns a flat view, or a copy for a non-contiguous or read-only
#   array; a copy is never reused, since the tensor may change before the next call, and
#   a ``.grad`` the call creates gets a buffer of its own ([Gradients a call creates]). A flat view stays right for as long as we hold it: it
#   keeps the buffer alive (NumPy refuses to resize an array that has views), and its own
#   dtype, shape and flags are ours; a change to the tensor itself (a new ``_data``, or
#   its shape or dtype set in place) is a new object or a failing guard. (So the previous
#   call's arrays, a batch included, stay alive until the next call replaces them.)
# - Updates computed in place went into the tensor's buffer through its flat view (nothing
#   to copy); others are copied into the flat view, or into the tensor when its input was a
#   copy. The program's ``update_plan`` says which is which, so nothing is compared.

# NOTE: [Gradients a call creates]
# A ``.grad`` that does not exist when the program runs (``p.grad = None`` or
# ``opt.zero_grad()`` before the call, then a backward inside), or that the traced function
# makes anew itself (``p.grad = None`` then ``backward()`` inside it: a ``made`` slot, see
# slot.py), is a new tensor after every call, as eagerly: a tensor the caller kept from an
# earlier call never changes. The program computes it into a buffer the entry gives it
# (``_new_grad``), and that buffer becomes the ``.grad`` as it is, with no copy. Fresh memory
# costs more than the kernels filling it (a zeroed 16 MiB buffer, then its copy, per
# gradient made W1's step four times slower than writing into an existing ``.grad``), so the
# buffers are kept and reused, as a program's results are ([Buffer plan] in
# passes/memory.py): one is reused only once nothing but the pool refers to it (its
# reference count says so; a tensor or a view holding it counts), that is once the caller
# let go of that ``.grad`` (``zero_grad()`` before the next call, a tensor replaced). Two
# per slot cover a loop that lets go of the previous ``.grad`` only after the call (a made
# slot, or a result kept in a variable). A buffer the program does not read (the update
# writes every element) is not zeroed. On CUDA each call allocates one (the allocator is
# Numba's).
POOLED_GRADS = 2

_FRESH = object()  # in the kept sources: an input made for one call only (never `is` anything)
_NONE = {}  # no .grad created by this call (never written to)


class _Entry:
    """One traced and compiled program with what it assumed.

    Made by ``lowering.lower`` with everything it is: the program and its graph, the trace's
    slots, the pipeline's snapshots and statistics, what the function returns
    (``Outputs``) and what was assumed before the trace (``Assumed``)."""

    residuals = ()  # values a compiled forward saves for its backward (forward_backward.py)
    # Whether the program came from the lowering cache ([The lowering cache]).
    from_lowering_cache = False

    def __init__(self, tracer, program, graph, *, snapshots, pass_stats, outputs: Outputs,
                 assumed: Assumed = Assumed()):
        self.slots = tracer.slots
        self.program = program
        self.graph = graph
        self.snapshots = snapshots  # (stage, IR text) of the pipeline run
        self.pass_stats = pass_stats  # (pass name, stats) of the pipeline run
        self.device = tracer.device  # where the program runs (see [Devices])
        self.output_tree = _output_plan(outputs.tree, tracer)
        # The keys of the .grad tensors the function returns ([Returned tensors]), or None.
        self._grads_returned = _grads_in(self.output_tree) or None
        self._call_grads = None
        self.graph_outputs = outputs.values
        self.freed = outputs.freed
        self.new_state = outputs.new_state
        self.one_shot = outputs.one_shot
        self.trace_number = assumed.trace_number
        self.random_advances = tracer.random_advances()  # [Random numbers while tracing]
        ref = owner_refs(self.slots, tracer._slot_of)  # [Owners passed as arguments]
        self.cleared_grads = [ref(o) for o in tracer.cleared_grads()]
        self.update_slots = [tracer_slot_index(self.slots, target) for target, _ in graph.updates]
        # ---- what it assumed (the guards) ----
        self.slot_meta = [None] * len(self.slots)
        for i, s in enumerate(self.slots):
            if s.kind == "tensor":
                t = s.tensor
                self.slot_meta[i] = (tuple(t.shape), t.dtype, t._requires_grad)
        self.grad_seen = [(ref(o), existed) for o, existed in tracer.grad_seen.values()]
        self.optimizers, self.hyper_guards = optimizer_guards(tracer)
        self.modules = [m for _, m in assumed.modules]
        self.module_names = [n for n, _ in assumed.modules]
        self.training = list(assumed.training)
        self.python_guards = assumed.python_guards
        self.held = assumed.objects
        # What guards_hold compares, per slot kind ([Steady-state calls]).
        self._tensor_checks = [(s.tensor, tuple(s.tensor.shape), s.tensor._data.dtype,
                                s.tensor._requires_grad, type(s.tensor._data))
                               for s in self.slots if s.kind == "tensor"]
        self._array_checks = [(s.tensor, tuple(s.value.shape), s.value.dtype.np)
                              for s in self.slots if s.kind == "array"]
        self._grad_owners = [owner for owner, _ in self.grad_seen]
        self._grad_absent = [not existed for _, existed in self.grad_seen]
        self._plan = None  # built by the first run (a lowered entry never runs)

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
        if self._grad_owners and [owner_of(o, flat_args)._grad is None
                                  for o in self._grad_owners] != self._grad_absent:
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
            if (owner_of(owner, flat_args)._grad is not None) != existed:
                name = next((s.name for s in self.slots if s.kind == "tensor" and s.tensor is owner
                             or s.kind == "arg" and type(owner) is ArgOwner
                             and s.index == owner.index), "a tensor")
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

    def finish(self, outputs, flat_args):
        """The function's result, with the program's outputs in place of traced tensors
        (see ``_output_plan``)."""
        tree = self.output_tree
        if isinstance(tree, TracerTensor):
            i = self._single_output
            if i is None:
                i = self._single_output = next(i for i, v in enumerate(self.graph_outputs)
                                               if v is tree._value)
            return self.make_output(i, outputs[i])
        return _rebuild(tree, outputs, self.graph_outputs, self.make_output, flat_args,
                        self._call_grads)

    _single_output = None

    def input_arrays(self, tensors) -> list:
        """The program's input arrays, from each slot's current tensor (``resolve``)."""
        arrays = []
        for s, t in zip(self.slots, tensors):
            if t is None:  # a .grad this program creates (eager semantics: first backward)
                arrays.append(devices.zeros(s.value.shape, s.value.dtype.np, self.device))
            elif s.kind == "array":
                arrays.extend(self._device_arrays([t]))
            elif s.kind == "hyper":
                arrays.append(np.array(t, dtype=np.float64))
            else:
                arrays.append(t._data)
        return arrays

    def _build_plan(self):
        kinds = ("arg", "tensor", "grad", "array", "hyper", "made")
        by_kind = {kind: [i for i, s in enumerate(self.slots)
                          if ("made" if s.made else s.kind) == kind] for kind in kinds}
        p = _RunPlan()
        p.arg_index = [self.slots[i].index for i in by_kind["arg"]]
        p.tensors = [self.slots[i].tensor for i in by_kind["tensor"]]
        p.grad_owners = [self.slots[i].owner for i in by_kind["grad"]]
        p.arrays = [self.slots[i].tensor for i in by_kind["array"]]
        p.hypers = [self.slots[i].owner for i in by_kind["hyper"]]
        p.made = by_kind["made"]  # no source: a new .grad at every call
        # Sources are gathered kind by kind; `order` maps their positions to slot positions.
        p.order = [i for kind in kinds[:-1] for i in by_kind[kind]]
        # [Gradients a call creates]: a buffer per .grad slot, zeroed only where read.
        read = {v for n in self.graph.nodes for v in n.inputs} | set(self.graph.outputs)
        p.grad_pools = {i: [] for i in by_kind["grad"] + by_kind["made"]}
        p.grad_read = {i for i in p.grad_pools if self.slots[i].value in read}
        p.kept = ([_FRESH] * len(self.slots), [None] * len(self.slots),
                  [i not in p.made for i in range(len(self.slots))])
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

    def _new_grad(self, i):
        """``(array, flat)``: the buffer of the ``.grad`` of slot ``i`` this call creates, in
        the ``.grad``'s shape and as the program's flat input ([Gradients a call creates])."""
        p, v = self._plan, self.slots[i].value
        dtype, zeroed = v.dtype.np, i in p.grad_read
        if self.device.type != "cpu":
            flat = (devices.zeros if zeroed else devices.empty)((numel(v.shape),), dtype,
                                                              self.device)
            return flat.reshape(v.shape), flat
        pool, found = p.grad_pools[i], None
        for arr in pool:
            # 3 references: the pool's list, `arr` and getrefcount's argument.
            if sys.getrefcount(arr) == 3:
                found = arr
                break
        if found is None:
            found = np.empty(v.shape, dtype)
            pool.insert(0, found)
            del pool[POOLED_GRADS:]
        if zeroed:
            found.fill(0)
        return found, found.reshape(-1)

    def _device_arrays(self, arrays):
        """The "array" slots' NumPy arrays as this program takes them: on a GPU a copy on
        the device, made at every call since the array may have changed (0-d ones stay on
        the host: [Host scalars] in graphjit/ir/host.py)."""
        if self.device.type == "cpu":
            return arrays
        return [devices.to_device(a, self.device) if a.ndim else a for a in arrays]

    def _driver_args(self, flat_args):
        """The program's flat input arrays for this call, which are copies, and the
        ``.grad`` arrays the call creates by slot (see [Steady-state calls])."""
        p = self._plan
        # (A comprehension costs a call even when empty: only the kinds there are.)
        sources = [flat_args[i]._data for i in p.arg_index]
        if p.tensors:
            sources += [t._data for t in p.tensors]
        if p.grad_owners:
            sources += [None if g is None else g._data
                        for g in [owner_of(o, flat_args)._grad for o in p.grad_owners]]
        if p.arrays:
            sources += self._device_arrays(p.arrays)
        if p.hypers:
            sources += [opt.param_groups[index][key] if element is None
                        else opt.param_groups[index][key][element]
                        for opt, index, key, element in p.hypers]
        kept_sources, kept_args, kept_copied = p.kept
        created = _NONE
        if not all(map(operator.is_, sources, kept_sources)):
            kept_args, kept_copied, created = self._new_sources(sources)
        if not p.made:
            return kept_args, kept_copied, created
        # A made .grad gets a new buffer at every call, never kept ([Gradients a call
        # creates]); its `copied` entry stays False.
        driver_args, created = list(kept_args), dict(created)
        for i in p.made:
            created[i], driver_args[i] = self._new_grad(i)
        return driver_args, kept_copied, created

    def _new_sources(self, sources):
        """``_driver_args`` for sources that are not all the previous call's."""
        p = self._plan
        # Sources are in `p.order` (kind by kind), driver arguments in slot order.
        kept_sources, kept_args, kept_copied = p.kept
        kept_sources, driver_args, copied = list(kept_sources), list(kept_args), list(kept_copied)
        program, created = self.program, {}
        for q, (src, i) in enumerate(zip(sources, p.order)):
            if src is kept_sources[q]:
                continue
            s = self.slots[i]
            if s.kind == "hyper":
                flat, fresh = np.array(src, dtype=np.float64).reshape(1), False
            elif src is None:  # a .grad this call creates ([Gradients a call creates])
                created[i], driver_args[i] = self._new_grad(i)
                copied[i], kept_sources[q] = False, _FRESH
                continue
            else:
                flat, fresh = program.flat_input(i, src)
            driver_args[i], copied[i] = flat, fresh
            kept_sources[q] = _FRESH if fresh else src
        p.kept = (kept_sources, driver_args, copied)
        return driver_args, copied, created or _NONE

    def run(self, flat_args):
        if self._plan is None:
            self._plan = self._build_plan()
        p = self._plan
        if self._grads_returned is not None:  # [Returned tensors]: .grad tensors at the call
            self._call_grads = {
                key: owner_of(self.slots[key].owner if isinstance(key, int) else key,
                              flat_args)._grad
                for key in self._grads_returned}
        driver_args, copied, created = self._driver_args(flat_args)
        # Off, anomaly mode costs this one flag test; on, a program with backward work runs
        # with its in-place updates in private copies and its results are checked before
        # anything is written back ([Anomaly mode] in graphjit/anomaly.py).
        watched = autograd_tape._anomaly_mode and anomaly.watch(self, flat_args)
        if watched:
            driver_args, copied, private = _private_updates(p, driver_args, copied)
        results = self.program.run_trusted(driver_args)
        if watched:
            anomaly.check_results(self, results, driver_args, private)
        outputs = [r.reshape(shape) for r, shape in zip(results, self.program.output_shapes)]
        # Write back only now: a failing program leaves every tensor as it was.
        if not any(copied):
            for t in p.fixed_in_place:
                t._version.bump()
            updates = p.other_updates
        else:
            updates = p.updates
        for i, kind, ref, in_place, k, shape in updates:
            if kind == "grad":
                ref = owner_of(ref, flat_args)
            if i in created:  # a new .grad ([Gradients a call creates])
                arr = created[i]
                if not in_place:
                    devices.copyto(arr, results[k].reshape(shape))
                elif copied[i]:  # computed into a private copy (anomaly mode)
                    devices.copyto(arr, driver_args[i].reshape(shape))
                created[i] = ref._grad = Tensor._wrap(arr)
                continue
            t = flat_args[ref] if kind == "arg" else ref._grad if kind == "grad" else ref
            if not in_place:
                if copied[i]:
                    devices.copyto(t._data, results[k].reshape(shape))
                elif self.device.type == "cpu":  # into the flat view of t's array
                    driver_args[i][...] = results[k]
                else:
                    devices.copyto(driver_args[i], results[k])
            elif copied[i]:  # computed into a copy of the tensor's array
                devices.copyto(t._data, driver_args[i].reshape(shape))
            t._version.bump()
        if self.new_state:  # ([State a call creates])
            own = getattr(self.program, "results_of_their_own", None)
            own = own(results, driver_args, [i for *_, i in self.new_state]) if own else ()
            for opt, param, key, i in self.new_state:
                opt.state[param][key] = Tensor._wrap(outputs[i] if i in own
                                                     else devices.copy(outputs[i]))
        for generator, blocks in self.random_advances:
            generator.advance(blocks)
        if created:
            # The entry keeps no reference to a new .grad: the pool sees when it is let go
            # (a made one's buffer was never kept).
            kept_args = p.kept[1]
            for i in created:
                kept_args[i] = None
            if self._grads_returned is not None:
                self._call_grads.update((i, t) for i, t in created.items() if i in self._call_grads)
        for owner in self.cleared_grads:
            owner_of(owner, flat_args)._grad = None
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
    __slots__ = ("arg_index", "tensors", "grad_owners", "arrays", "hypers", "made", "order",
                 "kept", "updates", "fixed_in_place", "other_updates", "grad_pools", "grad_read")


def tracer_slot_index(slots, value) -> int:
    for i, s in enumerate(slots):
        if s.value is value:
            return i
    raise GraphjitError("an update targets a value that is not a graph input")


# NOTE: [Returned tensors]
# What a compiled call returns is the traced function's result with each traced tensor
# replaced by a program output, except where eager mode would return one of the caller's own
# tensors: an argument returned as it is is this call's argument (not the one the trace
# saw), a ``.grad`` (``return p.grad``) is this call's (the one the call created, or the
# one the owner had at the call: not the trace's placeholder), and a view of an argument or
# of a tensor the function reached (``p.view(-1)``, ``x[0]``, ``p.detach()``) is that view,
# made eagerly after the program ran, so it shares memory with its base and sees later
# in-place changes as eagerly (a program output would be a copy).

class _Argument:
    """In an output plan: the call's flat argument ``index``."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


class _GradOf:
    """In an output plan: a ``.grad`` tensor of this call; ``key`` is its slot's position,
    or for one the function only looked at, its owner (the owner's ``.grad`` at the call)."""
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


class _ViewOf:
    """In an output plan: the view ops ``chain`` applied to ``base`` (a tensor or an
    ``_Argument``) after the call, eagerly."""
    __slots__ = ("base", "chain")

    def __init__(self, base, chain):
        self.base, self.chain = base, chain


def _output_plan(tree, tracer):
    """The function's result with arguments and views of real tensors marked ([Returned
    tensors])."""
    def base_of(t):
        slot = tracer._slot_of.get(id(t))
        if slot is not None and slot.kind == "arg":
            return _Argument(slot.index)
        if slot is not None and slot.kind == "grad":
            return _GradOf(tracer.slots.index(slot))
        owner = tracer._grad_owner.get(id(t))
        if owner is None:
            return t
        slot = tracer._slot_of.get(id(owner))  # [Owners passed as arguments] in slot.py
        return _GradOf(ArgOwner(slot.index) if slot is not None and slot.kind == "arg" else owner)

    def plan(v):
        if isinstance(v, TracerTensor):
            root = v._view.root if v._view is not None else None
            if root is not None and not isinstance(root, TracerTensor):
                return _ViewOf(base_of(root), v._view.chain)
            return v
        if isinstance(v, Tensor):
            return base_of(v)
        if isinstance(v, tuple) and hasattr(v, "_fields"):
            return type(v)(*[plan(x) for x in v])
        if isinstance(v, (tuple, list)):
            return type(v)(plan(x) for x in v)
        if isinstance(v, dict):
            return {k: plan(x) for k, x in v.items()}
        return v
    return plan(tree)


def _grads_in(tree) -> list:
    """The keys of the ``_GradOf`` entries of an output plan."""
    if isinstance(tree, _GradOf):
        return [tree.key]
    if isinstance(tree, _ViewOf):
        return _grads_in(tree.base)
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (tuple, list)):
        return [k for v in tree for k in _grads_in(v)]
    return []


def _rebuild(tree, outputs, out_values, make, flat_args, grads):
    """The function's result from its output plan: the program's outputs in place of traced
    tensors, this call's arguments, ``.grad`` tensors (``grads``, by key) and views
    ([Returned tensors])."""
    if isinstance(tree, TracerTensor):
        i = next(i for i, v in enumerate(out_values) if v is tree._value)
        return make(i, outputs[i])
    if isinstance(tree, _Argument):
        return flat_args[tree.index]
    if isinstance(tree, _GradOf):
        return grads[tree.key]
    if isinstance(tree, _ViewOf):
        from ..ops.registry import bind
        t = _rebuild(tree.base, outputs, out_values, make, flat_args, grads)
        for op, attrs in tree.chain:
            t = bind(op, t, **attrs)
        return t
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*[_rebuild(v, outputs, out_values, make, flat_args, grads) for v in tree])
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(v, outputs, out_values, make, flat_args, grads) for v in tree)
    if isinstance(tree, dict):
        return {k: _rebuild(v, outputs, out_values, make, flat_args, grads)
                for k, v in tree.items()}
    return tree


class _UsedUp(autograd_tape.Node):
    """``grad_fn`` of an output that ``backward()`` already ran through inside the compiled
    function: the graph behind it is used up, as after a backward in eager mode."""
    __slots__ = ()

    def __init__(self):
        self.seq = next(autograd_tape._sequence)
        self.next_functions = ()

    def name(self) -> str:
        return "CompiledUsedUpBackward"

    def apply(self, grads):
        raise GraphjitError("trying to backward through the graph a second time: backward() "
                            "already ran through this tensor inside the compiled function. "
                            "Pass retain_graph=True to that backward() to differentiate the "
                            "returned tensor again")


# NOTE: [State a call creates]
# The optimizer state a program's first step creates (Adam's moments, SGD's momentum
# buffers) comes back as program results, and becomes the state's tensors. A result array
# is the program's ([Buffer plan] in graphjit/ir/buffers.py), but a native CPU program's
# pool never hands out again a result that something outside still refers to (its
# reference count says so, views included: backend/cpu/program.py), so a result that
# shares its memory with no other result and no input is the state's own as it is.
# Copying it anyway cost W6's first Adam step (10M parameters) 0.17 s of its restart's
# 0.34 s, and doubled its memory for a moment. Anything else is copied: a result that
# overlaps another result or an input (a view the graph made), and every result of a
# program that is not native CPU code (the NumPy interpreter may return arrays it keeps,
# such as constants; a CUDA program's are device arrays). A program that can tell has
# ``results_of_their_own`` (backend/cpu/program.py).
