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
"""
from __future__ import annotations

import re

import numpy as np

from .. import _tracing, autograd, devices
from ..errors import AutogradError, DTypeError, GraphjitError, ShapeError, TraceError
from ..ir import Graph, GraphBuilder
from ..ops import api, registry
from ..tensor import Tensor

_WAYS_OUT = ("Use graphjit.where(cond, a, b) for a data-dependent choice, compute the value "
             "outside the compiled function, or pass it in as a Python number (a static value)")


class TracerTensor(Tensor):
    """A tensor inside a trace: it has a static type and an IR value, but no data."""

    @classmethod
    def _make(cls, value, tracer, requires_grad: bool) -> "TracerTensor":
        t = object.__new__(cls)
        t._data = None
        t._value = value
        t._tracer = tracer
        t._requires_grad = requires_grad
        t._grad_fn = None
        t._output_nr = 0
        t._grad = None
        t._version = autograd._tensor._Version()
        t._accumulator = None
        t._view = None  # see [Views while tracing]
        return t

    # static metadata
    @property
    def shape(self):
        return tuple(self._value.shape)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self):
        return self._value.dtype

    @property
    def device(self):
        return self._tracer.device  # one device per trace: its tensors'

    @property
    def is_cuda(self) -> bool:
        return self._tracer.device.type == "cuda"

    @property
    def ndim(self):
        return len(self._value.shape)

    def dim(self):
        return self.ndim

    def numel(self):
        n = 1
        for s in self._value.shape:
            n *= s
        return n

    def __len__(self):
        if not self.ndim:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if not self.ndim:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    @property
    def is_leaf(self):
        return False

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        if flag and not self._requires_grad:
            raise TraceError(f"requires_grad_() on a tensor computed inside a compiled function "
                             f"({self._value.type}) would make it a new leaf, which a compiled "
                             "program cannot hand back with its .grad; create the tensor outside "
                             "the compiled function and pass it in, or use graphjit.grad")
        if not flag and self._requires_grad:
            self._tracer.stop_gradient(self)

    # what needs data
    def _untraceable(self, what: str):
        raise TraceError(f"{what} needs the value of a traced tensor ({self._value.type}), which "
                         f"does not exist while graphjit.compile traces the function. {_WAYS_OUT}")

    def numpy(self):
        self._untraceable(".numpy()")

    def __array__(self, dtype=None, copy=None):
        self._untraceable("converting to a NumPy array")

    def item(self):
        self._untraceable(".item()")

    def tolist(self):
        self._untraceable(".tolist()")

    def __float__(self):
        self._untraceable("float()")

    def __int__(self):
        self._untraceable("int()")

    def __index__(self):
        self._untraceable("using a tensor as an index")

    def __bool__(self):
        self._untraceable("Python control flow (if/while/and/or) on a tensor")

    def __repr__(self):
        return f"TracerTensor({self._value.type})"

    def detach_(self):
        self._tracer.stop_gradient(self)
        return self

    def retain_grad(self):
        raise TraceError("retain_grad() is not supported inside a compiled function; return the "
                         "tensor and use graphjit.grad on it instead")

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        self._tracer.backward(self, gradient, inputs, create_graph, retain_graph)


# NOTE: [Hyper-parameters]
# While tracing, ``opt.step()`` computes with a view of each param group whose numeric
# options are ``HyperTensor``s: 0-d float64 graph inputs (role "hyper") read from
# ``param_groups[i]`` at every call, so an LR schedule never recompiles. float64 keeps the
# arithmetic on them (``1 - beta1``, ``lr / bias_correction``) what Python does with the
# floats in eager mode; 0-d tensors are weak in type promotion, so a float32 update stays
# float32. A Python decision on the value itself (``if momentum != 0``, ``float(eps)``) is
# taken on the current value and becomes a guard of the program: another value that decides
# the same way reuses it, one that decides otherwise traces again.

_COMPARE = {"__eq__": lambda a, b: a == b, "__ne__": lambda a, b: a != b,
            "__lt__": lambda a, b: a < b, "__le__": lambda a, b: a <= b,
            "__gt__": lambda a, b: a > b, "__ge__": lambda a, b: a >= b}


class HyperTensor(TracerTensor):
    """An optimizer hyper-parameter inside a trace: a runtime input that knows its value."""

    __hash__ = TracerTensor.__hash__

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


class _Slot:
    """How to find one graph input again on the next call."""
    __slots__ = ("kind", "tensor", "index", "owner", "value", "name")

    def __init__(self, kind, value, name, tensor=None, index=None, owner=None):
        # "arg": flat argument `index`; "tensor": `tensor`; "grad": owner.grad;
        # "array": a NumPy array the function used (in `tensor`); "hyper": an optimizer
        # option, owner = (optimizer, group index, key, element of a tuple option or None)
        self.kind = kind
        self.value = value
        self.name = name
        self.tensor = tensor
        self.index = index
        self.owner = owner

    def resolve(self, flat_args):
        if self.kind == "arg":
            return flat_args[self.index]
        if self.kind == "grad":
            return self.owner._grad
        if self.kind == "hyper":  # owner: (optimizer, group index, key, element or None)
            opt, index, key, element = self.owner
            value = opt.param_groups[index][key]
            return value if element is None else value[element]
        return self.tensor


# NOTE: [Views while tracing]
# Eagerly, a view (``x[1:3]``, ``x.t()``, ``x.reshape(...)``, ``x.detach()``, ``x.data``)
# shares its tensor's memory: an in-place change through either is seen by both. A graph
# has values, not memory, so the tracer keeps for each traced view its root (the real or
# traced tensor whose memory it shares; never a view itself), the view ops from the root to
# it, and an "index shadow": the same ops applied to an int8 array of the root's shape. The
# shadow answers what memory answers eagerly: whether NumPy returned a view at all (a
# reshape of a transposed layout copies, and then there is nothing to track), which
# elements of the root the view covers, and whether it is writeable (broadcasts are not).
# An in-place op on a view writes its result back into the root (``_write_through``); a
# view read after its root changed is rebuilt from the root's current value
# (``_refresh``). So ``x[1:3].add_(1)``, ``p.data.mul_(0.9)``, ``x.detach().zero_()`` and
# ``x[0] = v`` inside a compiled function change ``x`` as they do eagerly.
#
# NOTE: [Gradients while tracing]
# A graph input or node value "carries a gradient" when autodiff could reach a tensor that
# requires grad through it: the inputs of such tensors and the results of recorded ops
# (``_grad_values``). Eager mode records no edge for work done under ``no_grad`` or on a
# detached tensor, but the graph's autodiff differentiates every op with a VJP rule, so
# such a result gets an explicit ``detach`` node (``apply``, ``wrap``): a traced tensor that
# does not require grad never passes a gradient on. ``backward()`` asks for gradients with
# respect to each leaf's current value: after an in-place update under ``no_grad`` (an
# optimizer step inside the function) a leaf holds a new, detached value, and the next
# backward differentiates at that value, as eagerly.

class _View:
    """What the tracer knows of a traced view ([Views while tracing])."""
    __slots__ = ("root", "chain", "shadow", "source")

    def __init__(self, root, chain, shadow, source):
        self.root = root        # the tensor whose memory the view shares
        self.chain = chain      # ((op, attrs), ...) from the root's value to the view's
        self.shadow = shadow    # the chain applied to the root's int8 shadow
        self.source = source    # the root's value the view's value was computed from


class Tracer:
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
        autograd.check_copied_view(t, "compile")  # see [Copied views] in autograd.py
        data = getattr(t, "_data", t)
        if data is not None and data.ndim > 0:
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

    def stop_gradient(self, t: "TracerTensor") -> None:
        """``t.detach_()`` / ``t.requires_grad = False`` on a traced tensor."""
        value = self.value_of(t)
        if value in self._grad_values:
            t._value = self.builder.apply(registry.get("detach"), [value], {})
        t._requires_grad = False
        if t._view is not None:
            t._view.chain += ((registry.get("detach"), {}),)
            t._view.source = self._root_value(t._view.root)

    # ---- views ([Views while tracing]) -----------------------------------------------------

    def _shadow(self, root):
        entry = self._shadows.get(id(root))
        if entry is None:
            entry = self._shadows[id(root)] = (root, np.zeros(tuple(root.shape), np.int8))
            self._keep.append(root)
        return entry[1]

    def _root_value(self, root):
        return root._value if isinstance(root, TracerTensor) else self.value_of(root)

    def _note_view(self, parent, out, op, attrs) -> None:
        """``out = op(parent)`` for a view op: record it as a view when eager mode's NumPy
        result would share the parent's memory."""
        view = parent._view if isinstance(parent, TracerTensor) else None
        if view is not None:
            root, chain, parent_shadow = view.root, view.chain, view.shadow
        else:
            root, chain, parent_shadow = parent, (), self._shadow(parent)
        shadow = np.asarray(op.impl(parent_shadow, **attrs))
        if shadow.size == 0 or not np.may_share_memory(shadow, self._shadows[id(root)][1]):
            return  # NumPy copied (a reshape of a transposed layout): not a view
        out._view = _View(root, chain + ((op, attrs),), shadow, self._root_value(root))

    def _refresh(self, t) -> None:
        """Rebuild a view's value from its root's current one, if the root changed since."""
        view = t._view
        now = self._root_value(view.root)
        if now is view.source:
            return
        v, carries = now, now in self._grad_values
        for op, attrs in view.chain:
            v = self.builder.apply(op, [v], attrs)
            carries = carries and op.vjp is not None
        if t._requires_grad:
            self._grad_values.add(v)
        elif carries:
            v = self.builder.apply(registry.get("detach"), [v], {})
        t._value, view.source = v, now

    def _write_through(self, target, new_value, op_name) -> None:
        """In-place op ``op_name`` on the view ``target``: its root gets the new elements."""
        view = target._view
        if not view.shadow.flags.writeable:
            raise ShapeError(f"the tensor of shape {tuple(target.shape)} is a read-only broadcast "
                             "view; clone() it before modifying it in place", op=op_name)
        root = view.root
        base = self._root_value(root)
        if all(op.name == "detach" for op, _ in view.chain):
            new_root = new_value
        else:
            new_root = self._scatter_into(base, view.shadow, self._shadows[id(root)][1], new_value)
        if isinstance(root, TracerTensor):
            root._value = new_root
        else:
            self.current[id(root)] = (root, new_root)
        target._value, view.source = new_value, new_root

    def _scatter_into(self, base, shadow, root_shadow, new_value):
        """``base`` with the elements that ``shadow`` (a view of ``root_shadow``) covers
        replaced by ``new_value``: a reshape when the view is the whole root in order, else
        a gather from the view's elements and a where over the covered ones."""
        apply = self.builder.apply
        n, m = root_shadow.size, shadow.size
        offset = shadow.__array_interface__["data"][0] - root_shadow.__array_interface__["data"][0]
        # Element k of the view is element positions[k] of the root (int8: strides in elements).
        positions = np.lib.stride_tricks.as_strided(
            np.arange(n, dtype=np.int64)[offset:], shadow.shape,
            [st * 8 for st in shadow.strides], writeable=False)
        flat_pos = positions.reshape(-1)
        if m == n and np.array_equal(flat_pos, np.arange(n)):
            return apply(registry.get("reshape"), [new_value], {"shape": tuple(base.shape)})
        source = np.zeros(n, np.int64)
        source[flat_pos] = np.arange(m)
        flat_new = apply(registry.get("reshape"), [new_value], {"shape": (m,)})
        gathered = apply(registry.get("index"), [flat_new, self.builder.constant(source)],
                         {"key": (("t", 0),)})
        covered = np.zeros(n, np.bool_)
        covered[flat_pos] = True
        if not covered.all():
            flat_base = apply(registry.get("reshape"), [base], {"shape": (n,)})
            gathered = apply(registry.get("where"), [self.builder.constant(covered), gathered,
                                                     flat_base], {})
        return apply(registry.get("reshape"), [gathered], {"shape": tuple(base.shape)})

    # ---- what Tensor methods ask of the tracer ([Reading data while tracing]) --------------

    def clone(self, t) -> "TracerTensor":
        """``t.clone()`` of a tensor that does not record autograd: its current value."""
        return self.wrap(self.value_of(t), False)

    def alias(self, t) -> "TracerTensor":
        """``t.data``: the same memory, outside autograd."""
        out = self.wrap(self.value_of(t), False)
        self._note_view(t, out, registry.get("detach"), {})
        return out

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
        if view._view is None:
            view = target  # a 0-d target indexed with (): the whole tensor
        view.copy_(value)

    # ---- the interpreter interface --------------------------------------------------------

    def apply(self, op, inputs, attrs):
        values = [self.value_of(t) for t in inputs]
        out = self.builder.apply(op, values, attrs)
        differentiable = op.vjp is not None and out.dtype.is_floating_point
        requires = (differentiable and autograd.is_grad_enabled()
                    and any(t._requires_grad for t in inputs))
        if not requires and differentiable and any(v in self._grad_values for v in values):
            # Computed from values that carry a gradient, but not recorded (no_grad, or a
            # tensor that was detached): the gradient stops here, as on eager's tape.
            out = self.builder.apply(registry.get("detach"), [out], {})
        result = TracerTensor._make(out, self, requires)
        if requires:
            self._grad_values.add(out)
        if op.view and inputs and isinstance(inputs[0], Tensor):
            self._note_view(inputs[0], result, op, attrs)
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
        if array.ndim == 0:
            return TracerTensor._make(self.builder.constant(array), self, False)
        # Arrays are inputs, not baked-in data: a large array does not slow compilation, and
        # a change the user makes to it in place is seen by the next call, as in eager mode.
        slot = self._slot_of.get(id(array))
        if slot is None:
            value = self.graph.add_input(_type_of(array), self._unique(f"array{len(self.slots)}"),
                                         "buffer")
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
        if isinstance(target, TracerTensor):
            if target._view is None:
                target._value = result._value
                target._requires_grad = result._requires_grad
                return target
            if autograd.is_grad_enabled() and (target._requires_grad or result._requires_grad) \
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
        self.value_of(target)  # make sure it is an input, so its buffer is written back
        self.current[id(target)] = (target, result._value)
        return target

    def note_optimizer(self, opt) -> None:
        if all(o is not opt for o in self.optimizers):
            self.optimizers.append(opt)
            # What its state was: the program is only valid for that state (its Python
            # branches, e.g. "no momentum buffer yet", were taken on it), and it is put back
            # if this trace fails (see rollback).
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
        from ..dtypes import float64
        from ..shapes import TensorType
        v = self.graph.add_input(TensorType((), float64), self._unique(name), "hyper")
        slot = _Slot("hyper", v, v.name, owner=(opt, index, key, element))
        self.slots.append(slot)
        t = HyperTensor._make(v, self, False)
        t._slot = slot
        t._concrete = value
        return t

    def note_grad_assign(self, owner: Tensor, old) -> None:
        """``owner.grad`` is being replaced while tracing (``zero_grad``, a first backward)."""
        self.note_grad_read(owner)
        self._undo.append(("grad", owner, old))

    def grad_value(self, owner: Tensor, value):
        """What ``owner.grad = value`` stores while tracing: a traced value becomes a new
        ``.grad`` tensor that the program fills (as a first backward's gradient does)."""
        if not isinstance(value, TracerTensor):
            return value
        placeholder = Tensor._wrap(devices.zeros(owner.shape, owner.dtype.np, owner.device))
        self._grad_owner[id(placeholder)] = owner
        self._lift(placeholder, owner=owner)
        self.current[id(placeholder)] = (placeholder, self.value_of(value))
        return placeholder

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

    # ---- autograd inside a trace ------------------------------------------------------------

    def reached_by(self, root_value, values) -> set:
        """Those of ``values`` that reach ``root_value`` through differentiable ops."""
        wanted = set(values)
        found, seen, stack = set(), set(), [root_value]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in wanted:
                found.add(v)
            n = v.node
            if n is None or n.op.vjp is None:
                continue
            stack.extend(i for i in n.inputs if i.dtype.is_floating_point)
        return found

    def _grad_request(self, root, wrt_value, seed):
        inputs = [self.value_of(root), wrt_value] + ([self.value_of(seed)] if seed is not None else [])
        return self.builder.apply(registry.get("grad"), inputs, {})

    def _seed(self, root, gradient):
        if gradient is None:
            if root.numel() != 1:
                raise AutogradError(f"backward: grad can be implicitly created only for scalar "
                                    f"outputs; the output has shape {tuple(root.shape)}. Pass "
                                    "gradient=")
            return None
        if not isinstance(gradient, Tensor):
            gradient = api.constant(gradient, root.dtype)
        if tuple(gradient.shape) != tuple(root.shape):
            raise ShapeError(f"gradient has shape {tuple(gradient.shape)} but the output has shape "
                             f"{tuple(root.shape)}", op="backward")
        return api.cast(gradient, root.dtype) if gradient.dtype is not root.dtype else gradient

    def backward(self, root, gradient, inputs, create_graph, retain_graph=None):
        if create_graph:
            raise TraceError("backward(create_graph=True) inside a compiled function is not "
                             "supported: higher-order gradients run in eager mode")
        if not root._requires_grad:
            raise AutogradError("backward: the output does not require grad and has no grad_fn")
        seed = self._seed(root, gradient)
        if not retain_graph:
            # As in eager mode, the graph behind `root` is used up: a backward through the
            # returned tensor after the call is the "second time" error, not a silent rerun.
            self.freed_roots.add(self.value_of(root))
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            leaves = [self._slot_of[id(t)] for t in inputs if id(t) in self._slot_of]
        else:
            leaves = [s for s in self.slots if s.kind != "grad"
                      and _leaf_requiring_grad(s.resolve(self._flat_args))]
        # With respect to each leaf's current value: see [Gradients while tracing].
        current = [self.value_of(s.resolve(self._flat_args)) for s in leaves]
        reached = self.reached_by(self.value_of(root), current)
        for slot, value in zip(leaves, current):
            if value not in reached:
                continue
            leaf = slot.resolve(self._flat_args)
            g = self._grad_request(root, value, seed)
            self.note_grad_read(leaf)
            existing = leaf._grad
            if existing is None:
                placeholder = Tensor._wrap(devices.zeros(leaf.shape, leaf.dtype.np, leaf.device))
                self._undo.append(("grad", leaf, None))
                leaf._grad = placeholder
                self._grad_owner[id(placeholder)] = leaf
                self._lift(placeholder, owner=leaf)
                self.current[id(placeholder)] = (placeholder, g)
            else:
                with autograd.no_grad():
                    total = self.builder.apply(registry.get("add"), [self.value_of(existing), g], {})
                self.current[id(existing)] = (existing, total)

    def grad(self, outputs, inputs, grad_outputs, create_graph, allow_unused):
        if create_graph:
            raise TraceError("graphjit.grad(create_graph=True) inside a compiled function is not "
                             "supported: higher-order gradients run in eager mode")
        outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if isinstance(grad_outputs, Tensor):
            grad_outputs = [grad_outputs]
        result = []
        for i, x in enumerate(inputs):
            xv = self.value_of(x)
            total = None
            for j, y in enumerate(outputs):
                seed = self._seed(y, None if grad_outputs is None else grad_outputs[j])
                if not self.reached_by(self.value_of(y), [xv]):
                    continue
                g = self._grad_request(y, xv, seed)
                total = g if total is None else self.builder.apply(registry.get("add"), [total, g], {})
            if total is None and not allow_unused:
                raise AutogradError(f"grad: input {i} (shape {tuple(x.shape)}) was not used to "
                                    "compute the outputs; pass allow_unused=True to get None for it")
            result.append(None if total is None else TracerTensor._make(total, self, False))
        return tuple(result)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _leaf_requiring_grad(t) -> bool:
    return isinstance(t, Tensor) and t._requires_grad and t._grad_fn is None


def _type_of(t):
    from ..dtypes import from_numpy
    from ..shapes import TensorType
    if isinstance(t, np.ndarray):
        return TensorType(tuple(t.shape), from_numpy(t.dtype))
    return TensorType(tuple(t.shape), t.dtype)


def _refresh_views(tracer, tree) -> None:
    """Returned views whose root changed after they were last read get their final value."""
    if isinstance(tree, TracerTensor):
        tracer.value_of(tree)
    elif isinstance(tree, (tuple, list)):
        for v in tree:
            _refresh_views(tracer, v)
    elif isinstance(tree, dict):
        for v in tree.values():
            _refresh_views(tracer, v)


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
            _refresh_views(tracer, result)
    except BaseException:
        tracer.rollback()
        raise
    finally:
        _tracing._active.reset(token)
    return tracer, result
