"""Tracing: run the user's function once with graph-building tensors.

# NOTE: [Tracing model]
The user's tensors stay real: arguments, parameters, buffers, ``.grad`` and optimizer state
are ordinary ``Tensor``s. While tracing, ``bind()`` goes to a ``Tracer`` that *lifts* every
real tensor an op reads into a graph input (recording how to find it again on the next
call), and returns ``TracerTensor``s, which hold an IR value instead of data. In-place
ops on real tensors (``p.sub_(...)`` in an optimizer, ``.grad`` accumulation) do not touch
their data: the tracer records "tensor T now holds value V", and those become the graph's
``update`` entries, written back into T's buffer after the compiled program has run.
``loss.backward()`` records one ``grad`` request per leaf that should receive a gradient;
``passes/autodiff`` expands them.

Side effects on Python objects made while tracing (optimizer state created on a first
step, ``p.grad = None`` in ``zero_grad``) happen once, at trace time; the compiled program
only repeats the tensor computation. Guards on what the program assumed (shapes, dtypes,
requires_grad, whether each ``.grad`` exists, optimizer options) send a changed situation
to a new trace instead of to the wrong program.

The ``Tracer`` is one object whose methods are grouped by concern: this file has lifting
and naming inputs, the interpreter interface (``apply``), in-place updates and Python side
effects, and what ``Tensor`` methods ask while tracing; ``tracer_views.py`` keeps views
sharing memory ([Views while tracing]), ``tracer_autograd.py`` turns ``backward()`` into
gradient requests ([Gradients while tracing]), ``optimizers.py`` makes optimizer options
runtime inputs ([Hyper-parameters]). ``TracerTensor`` is in ``tracer_tensor.py``, ``_Slot``
(how an input is found again at each call) in ``slot.py``.
"""
from __future__ import annotations

import re

import numpy as np

from .. import _tracing, devices
from ..autograd_tape import check_copied_view, is_grad_enabled, no_grad
from ..dtypes import from_numpy
from ..errors import AutogradError, DTypeError, GraphjitError, ShapeError, TraceError
from ..ir import Graph, GraphBuilder
from ..ops import api, registry
from ..shapes import TensorType
from ..tensor import Tensor
from .optimizers import TracerOptimizers
from .slot import _Slot
from .tracer_autograd import TracerAutograd, _leaf_requiring_grad
from .tracer_tensor import _WAYS_OUT, TracerTensor, traced_tensors
from .tracer_views import TracerViews


class Tracer(TracerViews, TracerAutograd, TracerOptimizers):
    """The interpreter ``bind()`` calls while a compiled function is traced ([Tracing model])."""

    concrete = False

    def __init__(self, name: str, names: dict):
        # The graph is named after the function, as an identifier (a lambda's "<lambda>"
        # would not survive the text form's parser).
        self.graph = Graph(re.sub(r"\W", "_", name).strip("_") or "fn")
        self.builder = GraphBuilder(self.graph)
        self.slots: list[_Slot] = []
        self._slot_of: dict[int, _Slot] = {}
        self.current: dict[int, tuple] = {}   # id(real tensor) -> (tensor, current Value)
        self._names = names                   # id(tensor) -> readable name
        self._used_names: set = set()
        self.optimizers: list = []
        self.optimizer_states: dict = {}       # id(opt) -> its state as the trace first saw it
        self.freed_roots: set = set()          # values backward() ran from without retain_graph
        self.hyper_guards: list = []           # (slot, decision, operand, result); [Hyper-parameters]
        self._hyper_views: dict = {}           # (id(opt), group index) -> the traced view
        self.grad_seen: dict[int, tuple] = {}  # id(owner) -> (owner, grad existed on first look)
        self._grad_owner: dict[int, Tensor] = {}  # id(grad tensor) -> the tensor it is the .grad of
        self._undo: list = []
        self._keep: list = []                  # strong refs to every tensor seen
        self.device = devices.CPU              # the program's: that of the tensors it reads
        self._device_seen = None               # (name, tensor) that set it
        self._grad_values: set = set()         # values that carry a gradient ([Gradients while tracing])
        self._shadows: dict = {}               # id(root) -> (root, index shadow) ([Views while tracing])
        self._random: dict = {}                # id(generator) -> [generator, seed, offset, blocks used]
        self._held: dict = {}                  # id(real tensor) -> every value it held ([Gradients while tracing])
        self._saved: dict = {}                 # value -> (op, [(tensor its VJP reads, version)])
        self._stale_views: dict = {}           # view value -> eager's error ([In-place through views])
        self._bumps: dict = {}                 # id(real tensor) -> in-place changes while tracing
        self._untracked: dict = {}             # ... through .data, by version counter or
                                               # id ([Changes through .data])

    # ---- naming and lifting -------------------------------------------------------------

    def _unique(self, base: str) -> str:
        base = "".join(c if c.isalnum() or c in "_." else "_" for c in base) or "t"
        name, i = base, 1
        while name in self._used_names:
            i += 1
            name = f"{base}_{i}"
        self._used_names.add(name)
        return name

    def add_arg(self, t: Tensor, index: int, name: str) -> None:
        if id(t) in self._slot_of:
            return  # the same tensor passed twice is one input
        value = self.graph.add_input(_type_of(t), self._unique(name), "arg")
        slot = _Slot("arg", value, value.name, index=index)
        self._register(t, slot)

    def _register(self, t, slot):
        check_copied_view(t, "compile")  # see [Copied views] in autograd_tape.py
        data = getattr(t, "_data", t)
        # (An "array" slot, a NumPy operand or a constant graphjit made, has no device of
        # its own: a CUDA program gets it copied over at each call, as eager mode copies such
        # values; the runtime's `_device_arrays`.)
        if data is not None and data.ndim > 0 and slot.kind != "array":
            dev = devices.of_array(data)
            if self._device_seen is None:
                self.device, self._device_seen = dev, (slot.name, data)
            elif dev != self.device:
                first, arr = self._device_seen
                raise GraphjitError(
                    f"expected all tensors to be on the same device, but found {self.device} "
                    f"(%{first}: {arr.dtype}{list(arr.shape)}) and {dev} (%{slot.name}: "
                    f"{data.dtype}{list(data.shape)}); a compiled function runs on one device: "
                    "move its tensors with .to(device) before calling it", op="compile")
        self.slots.append(slot)
        self._slot_of[id(t)] = slot
        self._keep.append(t)
        if slot.kind in ("arg", "tensor") and t._requires_grad:
            self._grad_values.add(slot.value)

    def _lift(self, t: Tensor, owner=None) -> _Slot:
        from ..nn.parameter import Parameter
        if owner is not None:
            role, kind = "grad", "grad"
            base = self._names.get(id(owner), f"t{len(self.slots)}") + ".grad"
        else:
            # A Parameter, or any leaf that requires grad (what an optimizer is given).
            is_param = isinstance(t, Parameter) or _leaf_requiring_grad(t)
            role = "param" if is_param else "buffer"
            kind = "tensor"
            base = self._names.get(id(t)) or self._state_name(t) or f"t{len(self.slots)}"
        value = self.graph.add_input(_type_of(t), self._unique(base), role)
        slot = _Slot(kind, value, value.name, tensor=t if owner is None else None, owner=owner)
        self._register(t, slot)
        return slot

    def _state_name(self, t):
        """``opt.state.<param>.<key>`` when ``t`` is optimizer state (often made while tracing)."""
        for opt in self.optimizers:
            for p, st in opt.state.items():
                for k, v in st.items():
                    if v is t:
                        base = self._names.get(("opt", id(opt)), "opt")
                        return f"{base}.state.{self._names.get(id(p), 'p')}.{k}"
        return None

    def value_of(self, t):
        if isinstance(t, TracerTensor):
            if t._tracer is not self:
                raise TraceError("a tensor from another (finished) trace was used: it escaped its "
                                 "compiled function, e.g. through a global or an attribute")
            if t._view is not None:
                self._refresh(t)
            return t._value
        cur = self.current.get(id(t))
        if cur is not None:
            return cur[1]
        slot = self._slot_of.get(id(t))
        if slot is None:
            slot = self._lift(t, self._grad_owner.get(id(t)))
        return slot.value

    def wrap(self, value, requires_grad: bool) -> "TracerTensor":
        """A traced tensor holding ``value``. One that does not require grad never passes a
        gradient on: where ``value`` carries one (see [Gradients while tracing]), the tensor
        holds ``detach(value)`` instead, as eager mode's tape would have no edge there."""
        if requires_grad:
            self._grad_values.add(value)
        elif value in self._grad_values:
            value = self.builder.apply(registry.get("detach"), [value], {})
        return TracerTensor._make(value, self, requires_grad)

    # ---- what Tensor methods ask of the tracer ([Reading data while tracing]) --------------
    #
    # NOTE: [Reading data while tracing]
    # A value read into Python while tracing (``.item()``, ``.numpy()``, ``float(t)``,
    # ``bool(t)``, a tensor used as an index) would be frozen into the program as it is at
    # trace time, and later calls would silently reuse it. So ``Tensor`` methods that read
    # data ask the active tracer first (``refuse_read``), which raises TraceError naming the
    # way out; that holds for real tensors the function reaches too, since the program reads
    # them afresh at every call (and one this trace changed in place has no value yet).
    # ``describe`` gives ``repr`` of such a tensor without reading changed data.

    def clone(self, t) -> "TracerTensor":
        """``t.clone()`` of a tensor that does not record autograd: its current value."""
        return self.wrap(self.value_of(t), False)

    def _name(self, t) -> str:
        slot = self._slot_of.get(id(t))
        name = slot.name if slot is not None else self._names.get(id(t))
        return f"%{name}: " if name else ""

    def refuse_read(self, t, what: str):
        """Reading ``t``'s data in Python (``.item()``, ``.numpy()``, ``float()``...)."""
        modified = id(t) in self.current
        raise TraceError(
            f"{what} reads the data of a tensor ({self._name(t)}{t.dtype.name}{list(t.shape)}) "
            "inside a compiled function; the value would be baked into the program as it is "
            f"{'before this call (which changes it)' if modified else 'now'}, and later calls "
            f"would not see it change. {_WAYS_OUT}")

    def refuse(self, what: str, way_out: str):
        raise TraceError(f"{what} is not supported inside a compiled function; {way_out}")

    def describe(self, t) -> str:
        """``repr(t)`` of a real tensor while tracing: its data only if this trace has not
        changed it (a changed one has no value until the program runs)."""
        if id(t) in self.current:
            return f"TracerTensor({self._name(t)}{self.value_of(t).type}, modified in place here)"
        return None

    def setitem(self, target, key, value) -> None:
        """``target[key] = value``: an in-place update of the elements ``key`` selects."""
        from ..ops.api import _is_advanced
        items = key if isinstance(key, tuple) else (key,)
        if any(_is_advanced(k) for k in items):
            mask = items[0] if len(items) == 1 else None
            if (isinstance(mask, Tensor) and mask.dtype.name == "bool"
                    and tuple(mask.shape) == tuple(target.shape)
                    and (not isinstance(value, Tensor) or value.ndim == 0)):
                target.copy_(api.where(mask, value, target))
                return
            self.refuse("x[index] = v with an index tensor (or a mask of another shape)",
                        "use graphjit.where(mask, v, x) for a mask of x's shape, or compute the "
                        "assignment outside the compiled function")
        view = target[key]
        if view is target or self.live_view(view) is None:
            # A key that selects everything (x[...], x[:, 0:2] of a 2-column x; () of a 0-d x)
            # gives x itself, not a view: the assignment is to the whole tensor.
            view = target
        view.copy_(value)

    # ---- the interpreter interface --------------------------------------------------------

    def apply(self, op, inputs, attrs):
        values = [self.value_of(t) for t in inputs]
        out = self.builder.apply(op, values, attrs)
        differentiable = op.vjp is not None and out.dtype.is_floating_point
        requires = (differentiable and is_grad_enabled()
                    and any(t._requires_grad for t in inputs))
        if not requires and differentiable and any(v in self._grad_values for v in values):
            # Computed from values that carry a gradient, but not recorded (no_grad, or a
            # tensor that was detached): the gradient stops here, as on eager's tape.
            out = self.builder.apply(registry.get("detach"), [out], {})
        result = TracerTensor._make(out, self, requires)
        if inputs and all(getattr(t, "_weak_scalar", False) for t in inputs):
            # Arithmetic on optimizer options and Python numbers only: what eager mode does
            # in Python floats, so the result still promotes like one ([Hyper-parameters]).
            result._weak_scalar = True
        if requires:
            self._grad_values.add(out)
        if op.view and inputs and isinstance(inputs[0], Tensor):
            self._note_view(inputs[0], result, op, attrs)
        if requires:  # what its VJP will read, at which version ([Saved values while tracing])
            saved = [(i, t) for i, t in enumerate(inputs) if op.saves_input(i)]
            if "out" in op.saves:
                saved.append(("out", result))
            if saved:
                self._saved[out] = (op, [(i, t, self.version(t), self.untracked_changes(t))
                                         for i, t in saved])
        return result

    def made(self, array):
        """A tensor a creation function (zeros, arange, tensor([...])) makes while tracing: a
        value of the program, made afresh at every call as eagerly (a ``full`` node when
        uniform, else an input holding the array)."""
        flat = array.reshape(-1)
        if array.ndim == 0 or (flat.size and np.all(flat == flat[0]) and not np.isnan(flat[0])):
            return TracerTensor._make(self.builder.constant(array), self, False)
        return self.constant(array)

    def constant(self, array):
        if array.ndim == 0:  # a Python number in an op (api.constant): promotes like one
            t = TracerTensor._make(self.builder.constant(array), self, False)
            t._weak_scalar = True
            return t
        # Arrays are inputs, not baked-in data: a large array does not slow compilation, and
        # a change the user makes to it in place is seen by the next call, as in eager mode.
        return self._input_array(array, f"array{len(self.slots)}")

    # ---- random numbers ---------------------------------------------------------------------
    #
    # NOTE: [Random numbers while tracing]
    # A draw is ``rand_uniform(seed, offset)`` on a generator's state ([Counter-based random
    # numbers] in graphjit/ops/random.py). While tracing, the generator's seed and offset (0-d
    # int64 arrays it changes in place) become inputs of the program, read at every call;
    # the k-th draw of a call uses the offset plus the blocks the draws before it took, and
    # after each successful call the runtime moves the generator past all of them
    # (``random_advances``). So a compiled function draws what eager mode draws from the same
    # state, call after call, and the generator ends where eager mode leaves it.

    def random_state(self, generator, n_blocks: int):
        """``(seed, offset)`` for a draw of ``n_blocks`` blocks from ``generator``, as values of
        the program (see [Random numbers while tracing])."""
        record = self._random.get(id(generator))
        if record is None:
            seed = self._input_array(generator._seed_arr, "rng.seed")
            offset = self._input_array(generator._offset_arr, "rng.offset")
            record = self._random[id(generator)] = [generator, seed, offset, 0]
            self._keep.append(generator)
        _, seed, offset, used = record
        record[3] = used + n_blocks
        if used:
            with no_grad():
                offset = api.add(offset, used)
        return seed, offset

    def random_advances(self) -> list:
        """``(generator, blocks)`` each generator must move on after a call of the program."""
        return [(g, used) for g, _, _, used in self._random.values() if used]

    def _input_array(self, array, name):
        """``array`` (any shape, 0-d included) as an input read at every call."""
        slot = self._slot_of.get(id(array))
        if slot is None:
            value = self.graph.add_input(_type_of(array), self._unique(name), "buffer")
            slot = _Slot("array", value, value.name, tensor=array)
            self._register(array, slot)
        return TracerTensor._make(slot.value, self, False)

    # ---- side effects -----------------------------------------------------------------------

    def assign(self, target: Tensor, result, op_name: str):
        """``target`` (modified in place by ``op_name``) now holds ``result``, with eager
        mode's checks (shape, dtype category, read-only memory, autograd through views)."""
        if not isinstance(result, TracerTensor):  # made without an op (a real tensor)
            result = self.wrap(self.value_of(result), False)
        if tuple(result.shape) != tuple(target.shape):
            raise ShapeError(f"the result has shape {tuple(result.shape)}, which does not fit the "
                             f"tensor of shape {tuple(target.shape)} that is modified in place",
                             op=op_name)
        if result.dtype is not target.dtype:
            if result.dtype.category > target.dtype.category:
                raise DTypeError(f"result type {result.dtype.name} can't be cast to the tensor's "
                                 f"dtype {target.dtype.name} in place", op=op_name)
            result = api.cast(result, target.dtype)
        view = self.live_view(target) if isinstance(target, TracerTensor) else None
        if view is not None and view.untracked:
            self._bump_untracked(target)  # [Changes through .data]
        else:
            self._bump(target)
        if isinstance(target, TracerTensor):
            if self.live_view(target) is None:
                if target._requires_grad and not result._requires_grad \
                        and not is_grad_enabled():
                    # Its grad_fn stays: [In-place changes under no_grad] in ops/custom.py.
                    target._value = self.builder.apply(
                        registry.get("reattach"), [result._value, target._value], {})
                    self._grad_values.add(target._value)
                else:
                    target._value = result._value
                    target._requires_grad = result._requires_grad
                self.root_changed(target, recorded=is_grad_enabled()
                                  and result._requires_grad)
                return target
            if is_grad_enabled() and (target._requires_grad or result._requires_grad) \
                    and any(op.name != "detach" for op, _ in target._view.chain):
                raise AutogradError(f"{op_name}: in-place operation on a view (shape "
                                    f"{tuple(target.shape)}) while autograd records: its gradient "
                                    "would not reach the tensor it views. Use an out-of-place op, "
                                    "or .clone() the view first")
            self._write_through(target, result._value, op_name)
            return target
        if result._requires_grad:
            raise TraceError(f"{op_name}: an in-place op that autograd must record on a tensor "
                             "from outside the compiled function is not supported; use an "
                             "out-of-place op")
        if not devices.writeable(target._data):
            raise ShapeError(f"the tensor of shape {tuple(target.shape)} is a read-only broadcast "
                             "view; clone() it before modifying it in place", op=op_name)
        self.set_current(target, result._value)
        return target

    # NOTE: [Saved values while tracing]
    # Eager mode refuses a backward through an op whose saved input (or output) was changed
    # in place after the op ran: its gradient would use the new data. A graph has no such
    # problem (the op's VJP reads the value it was given), but a compiled function must fail
    # where eager mode fails, so the tracer keeps eager's bookkeeping: a version per tensor
    # (a view counts its root's), bumped by every in-place change while tracing, and for
    # each recorded op the versions of what its VJP reads; ``backward``/``grad`` check the
    # ops on the way from the output to the leaves and raise eager's error. As eagerly, a
    # changed value only matters where a wanted gradient is computed from it (mul's gradient
    # for b reads a, not b; sin's gradient reads its own input): ``_read_for`` in
    # tracer_autograd.py traces the VJP rule to find out.

    def _version_key(self, t):
        if isinstance(t, TracerTensor):
            view = self.live_view(t)
            return view.root if view is not None else t
        return t

    def version(self, t) -> int:
        key = self._version_key(t)
        if isinstance(key, TracerTensor):
            return key._version.value
        return self._bumps.get(id(key), 0)

    def _bump(self, t) -> None:
        key = self._version_key(t)
        if isinstance(key, TracerTensor):
            key._version.value += 1
        else:
            self._bumps[id(key)] = self._bumps.get(id(key), 0) + 1

    # NOTE: [Changes through .data]
    # ``p.data.zero_()`` changes ``p``'s elements behind autograd's back: eagerly (as in
    # PyTorch) it leaves ``p``'s version alone, so an op that saved ``p`` before raises no
    # error at backward, and its gradient is computed from the changed elements. A graph
    # cannot do that (the op's VJP reads the value it was given), so such a backward would
    # silently differ; the tracer counts these changes apart (``untracked_changes``) and
    # ``backward`` refuses to trace one whose wanted gradient reads a value changed so.

    # The count is kept per version counter (``_version``, which a traced view shares with
    # its root), not on the root tensor: a saved view whose root has died since must still
    # see a change made through the root's ``.data`` while it lived.

    def _untracked_key(self, t):
        key = self._version_key(t)
        return key._version if isinstance(key, TracerTensor) else id(key)

    def _bump_untracked(self, t) -> None:
        key = self._untracked_key(t)
        self._untracked[key] = self._untracked.get(key, 0) + 1

    def untracked_changes(self, t) -> int:
        return self._untracked.get(self._untracked_key(t), 0)

    def set_current(self, target: Tensor, value) -> None:
        """Real tensor ``target`` holds ``value`` from here on (the program writes it back).
        For a leaf that requires grad the value starts a history of its own (a ``detach``):
        its gradient is the sum over the values it held ([Gradients while tracing]), and
        no gradient may flow from one of them into another."""
        before = self.value_of(target)  # an input, so its buffer is written back
        if target._requires_grad:
            value = self.builder.apply(registry.get("detach"), [value], {})
            self._grad_values.add(value)
        self.current[id(target)] = (target, value)
        self._held.setdefault(id(target), [before]).append(value)

    def note_grad_assign(self, owner: Tensor, old) -> None:
        """``owner.grad`` is being replaced while tracing (``zero_grad``, a first backward)."""
        self.note_grad_read(owner)
        self._undo.append(("grad", owner, old))

    def grad_value(self, owner: Tensor, value):
        """What ``owner.grad = value`` stores while tracing: a traced value goes into the
        ``.grad`` tensor the owner has (its value from here on: the program writes it back
        after the call, as it writes an accumulated gradient), or into a new one the program
        fills (as a first backward's gradient). ``p.grad = None`` takes effect at every call:
        see ``cleared_grads``."""
        if not isinstance(value, TracerTensor):
            return value
        existing = owner._grad
        if existing is not None:
            self._grad_owner.setdefault(id(existing), owner)
            self.value_of(existing)  # an input, so the program writes its buffer back
            self.current[id(existing)] = (existing, self.value_of(value))
            return existing
        return self.new_grad(owner, self.value_of(value))

    def new_grad(self, owner: Tensor, value) -> Tensor:
        """A ``.grad`` for ``owner`` that this call creates, holding ``value``: a placeholder
        while tracing, a new tensor at every call of the program ([Gradients a call creates]
        in runtime.py)."""
        placeholder = Tensor._wrap(devices.zeros(owner.shape, owner.dtype.np, owner.device))
        self._grad_owner[id(placeholder)] = owner
        self._lift(placeholder, owner=owner).made = True
        self.current[id(placeholder)] = (placeholder, value)
        return placeholder

    def cleared_grads(self) -> list:
        """Tensors whose ``.grad`` the traced function left None: after each call of the
        program it is None again (``p.grad = None``, ``opt.zero_grad()`` at the end of a
        step), whatever the program computed into it on the way."""
        return [owner for owner, _ in self.grad_seen.values() if owner._grad is None]

    def rollback(self) -> None:
        """Undo the Python-side effects of a trace that failed, newest first, so a failing
        call leaves gradients and optimizer state exactly as they were."""
        for kind, obj, old in reversed(self._undo):
            if kind == "grad":
                obj._grad = old
            else:
                obj.state.clear()
                for p, st, content in old:
                    st.clear()
                    st.update(content)
                    obj.state[p] = st
        self._undo.clear()

    def note_grad_read(self, owner: Tensor) -> None:
        """``owner.grad`` was looked at: whether it existed becomes part of the signature."""
        if id(owner) not in self.grad_seen:
            self.grad_seen[id(owner)] = (owner, owner._grad is not None)
            self._keep.append(owner)
        if owner._grad is not None:
            self._grad_owner.setdefault(id(owner._grad), owner)


def _type_of(t):
    if isinstance(t, np.ndarray):
        return TensorType(tuple(t.shape), from_numpy(t.dtype))
    return TensorType(tuple(t.shape), t.dtype)


def trace(fn, args, kwargs, flat_args, arg_names, names, name):
    """Run ``fn`` under a new Tracer; returns (tracer, result)."""
    tracer = Tracer(name, names)
    tracer._flat_args = flat_args
    for i, (t, n) in enumerate(zip(flat_args, arg_names)):
        if isinstance(t, Tensor):
            tracer.add_arg(t, i, n)
    token = _tracing._active.set(tracer)
    try:
        with registry.interpreter(tracer):
            result = fn(*args, **kwargs)
            for t in traced_tensors(result):
                # A returned view whose root changed after it was last read gets its final
                # value ([Views while tracing]).
                tracer.value_of(t)
    except BaseException:
        tracer.rollback()
        raise
    finally:
        _tracing._active.reset(token)
    return tracer, result
