"""Optimizer base class for graphjit.

The update rules of the concrete optimizers are written purely as graphjit
tensor expressions and in-place tensor methods executed under
``no_grad()`` so that a tracer can later capture an optimizer step into a
graph.  No NumPy is used inside ``step()``.

Per-parameter state lives in ``Optimizer.state``: a dict keyed by the
parameter tensor itself (tensors hash by identity) whose values are dicts of
state tensors / numbers using the same key names as PyTorch
("momentum_buffer", "step", "exp_avg", ...).
"""

from __future__ import annotations

import copy
import weakref
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Optional

from ..autograd_tape import enable_grad, no_grad
from ..dtypes import get_default_dtype
from ..tensor import Tensor, tensor
from graphjit import _tracing, devices

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Sentinel marking an optimizer option that every param group must set."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<required parameter>"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (_RequiredParameter, ())


required = _RequiredParameter()


def _is_tensor(x: Any) -> bool:
    return isinstance(x, Tensor)


def _typename(x: Any) -> str:
    return type(x).__module__ + "." + type(x).__qualname__


def _clone_value(value: Any, dtype=None) -> Any:
    """Deep copy of a state value; tensors are detached clones (optionally cast)."""
    if _is_tensor(value):
        t = value.detach()
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        return t.clone()
    if isinstance(value, dict):
        return {k: _clone_value(v, dtype) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone_value(v, dtype) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone_value(v, dtype) for v in value)
    return copy.deepcopy(value)


# NOTE: [Optimizer change counts]
# A compiled training step must notice any change to what it assumed of an optimizer (its
# options, the parameters of each group, which state tensors it holds), and it checks that
# at every call (graphjit/jit/optimizers.py, [Optimizer guards]). Comparing all of it costs
# microseconds per parameter, so the containers an optimizer is made of count their own
# changes instead: ``param_groups`` (a list), each group (a dict, ``ParamGroup``), each
# group's ``params`` (a list), ``state`` (a defaultdict) and each parameter's state (a
# dict) are subclasses whose every mutating method bumps the optimizer's ``_Changes``,
# shared by all of them. They are the ordinary containers otherwise (same methods, ``==``,
# ``isinstance``), and copies or pickles of them are plain ones. ``_Changes.values`` counts
# the replacement of a numeric option by another number (``param_groups[0]["lr"] = 0.01``,
# what an LR scheduler does: a runtime input, which needs only the decisions taken on it
# re-checked); every other change, the replacement of an option by a value of another kind
# included, counts in ``structure``. A container that is not ours, or is another
# optimizer's (``opt.param_groups = [...]``, ``opt.state[p] = {...}``, a plain dict appended
# to the groups), is kept as given: ``_change_counter`` then answers None and the guards
# compare everything on every call, as they must.

class _Changes:
    """How often an optimizer's param groups and state changed (see [Optimizer change counts]),
    and whose they are (``owner``: a weak reference to the optimizer)."""
    __slots__ = ("structure", "values", "owner")

    def __init__(self, owner=None):
        self.structure = 0
        self.values = 0
        self.owner = None if owner is None else weakref.ref(owner)

    def note_read(self) -> None:
        """The optimizer's groups or state are being read: while tracing, the tracer must know
        the optimizer (see [Custom optimizers while tracing])."""
        if self.owner is not None and _tracing.active() is not None:
            opt = self.owner()
            if opt is not None:
                _tracing.note_optimizer(opt)


# NOTE: [Custom optimizers while tracing]
# graphjit's own optimizers announce themselves to the tracer and read their options through
# ``_tracing.hyper_group``. A user's subclass with its own ``step()`` (the pattern PyTorch's
# tutorials teach) does neither, so the containers do it for it: reading ``param_groups``
# or ``state`` while tracing registers the optimizer with the tracer (its state, as it was,
# is guarded and restored if the trace fails; state the step creates is installed after the
# program ran, as for graphjit's optimizers: [Optimizer state created while tracing] in
# jit/optimizers.py), and reading a numeric option of a group (``group["lr"]``, each of
# ``group["betas"]``) gives the traced step a runtime input instead of a constant, so
# ``param_groups[0]["lr"] = 0.01`` (an LR scheduler) takes effect at the next call, and a
# Python decision on it (``if group["momentum"] != 0``) becomes a guard. A custom optimizer
# needs nothing else: keep options in ``param_groups`` and tensors in ``state``.


def _is_number(value) -> bool:
    # An option read as a runtime input (as in graphjit/jit/optimizers.py): int or float, not bool.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind_of_number(old, new) -> bool:
    """Whether replacing option ``old`` by ``new`` keeps it a runtime input of the same form:
    a number for a number, a tuple of as many numbers for a tuple of numbers."""
    if _is_number(old):
        return _is_number(new)
    return (isinstance(old, tuple) and isinstance(new, tuple) and len(old) == len(new) > 0
            and all(map(_is_number, old)) and all(map(_is_number, new)))


def _counting(base, *names):
    """Class decorator: each of ``base``'s mutating methods ``names``, counted in the
    instance's ``_changes`` (before the call: a failed change only costs a full check)."""
    def wrap(cls):
        for name in names:
            method = getattr(base, name)

            def counted(self, *args, _method=method, **kwargs):
                self._changes.structure += 1
                return _method(self, *args, **kwargs)
            counted.__name__ = name
            setattr(cls, name, counted)
        return cls
    return wrap


_DICT_MUTATORS = ("__setitem__", "__delitem__", "__ior__", "clear", "pop", "popitem",
                  "setdefault", "update")
_LIST_MUTATORS = ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
                  "insert", "pop", "remove", "clear", "sort", "reverse")


@_counting(dict, *_DICT_MUTATORS)
class _TrackedDict(dict):
    """A dict that counts its changes in an optimizer's ``_Changes``."""
    __slots__ = ("_changes",)

    def __init__(self, changes, *args, **kwargs):
        dict.__init__(self, *args, **kwargs)
        self._changes = changes

    def __reduce_ex__(self, protocol):
        return (dict, (dict(self),))  # copies and pickles are plain dicts


class ParamGroup(_TrackedDict):
    """One of ``Optimizer.param_groups``: a dict of the group's options and ``"params"``."""
    __slots__ = ()

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if _tracing.active() is not None and key != "params":
            return self._traced(key, value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def _traced(self, key, value):
        """``value`` of option ``key`` as the traced step must see it ([Custom optimizers
        while tracing]): numbers become the tracer's runtime inputs."""
        self._changes.note_read()
        owner = self._changes.owner
        opt = owner() if owner is not None else None
        if opt is None or not (_is_number(value) or (isinstance(value, tuple) and value
                                                     and all(map(_is_number, value)))):
            return value
        index = next((i for i, g in enumerate(list.__iter__(opt.param_groups)) if g is self), None)
        if index is None:
            return value
        return _tracing.hyper_group(opt, index, self)[key]

    def __setitem__(self, key, value):
        old = dict.get(self, key, _MISSING)
        dict.__setitem__(self, key, value)
        if old is not _MISSING and _same_kind_of_number(old, value):
            self._changes.values += 1
        else:
            self._changes.structure += 1


_MISSING = object()


@_counting(list, *_LIST_MUTATORS)
class _TrackedList(list):
    """A list that counts its changes in an optimizer's ``_Changes``."""
    __slots__ = ("_changes",)

    def __init__(self, changes, items=()):
        list.__init__(self, items)
        self._changes = changes

    def __reduce_ex__(self, protocol):
        return (list, (list(self),))

    def __iter__(self):
        self._changes.note_read()
        return list.__iter__(self)

    def __getitem__(self, index):
        self._changes.note_read()
        return list.__getitem__(self, index)


@_counting(dict, *_DICT_MUTATORS)
class _State(defaultdict):
    """``Optimizer.state``: per parameter its state dict, made on first access, as a
    ``defaultdict(dict)`` would; changes are counted in the optimizer's ``_Changes``."""
    __slots__ = ("_changes",)

    def __init__(self, changes, items=()):
        defaultdict.__init__(self, dict, items)
        self._changes = changes

    def __reduce_ex__(self, protocol):
        return (_plain_state, (dict(self),))

    def __repr__(self):
        return f"defaultdict(<class 'dict'>, {dict.__repr__(self)})"

    def copy(self):  # defaultdict's own copies would be _State objects without a counter
        return defaultdict(dict, self)

    __copy__ = copy

    def __or__(self, other):
        if not isinstance(other, dict):
            return NotImplemented
        new = defaultdict(dict, self)
        new.update(other)
        return new

    def __ror__(self, other):
        if not isinstance(other, dict):
            return NotImplemented
        new = defaultdict(dict, other)
        new.update(self)
        return new

    def __getitem__(self, key):
        self._changes.note_read()
        return defaultdict.__getitem__(self, key)

    def get(self, key, default=None):
        self._changes.note_read()
        return defaultdict.get(self, key, default)

    def __contains__(self, key):
        self._changes.note_read()
        return defaultdict.__contains__(self, key)

    def __missing__(self, key):
        value = _TrackedDict(self._changes)
        dict.__setitem__(self, key, value)
        self._changes.structure += 1
        return value


def _plain_state(items):
    return defaultdict(dict, items)


def _tracked_groups(changes, groups):
    return _TrackedList(changes, [
        ParamGroup(changes, {k: (_TrackedList(changes, v) if k == "params" else v)
                             for k, v in g.items()}) for g in groups])


def _tracked_state(changes, state):
    return _State(changes, {p: _TrackedDict(changes, st) for p, st in state.items()})


class Optimizer:
    """Base class of all graphjit optimizers.

    Args:
        params: an iterable of tensors, or an iterable of dicts (parameter
            groups).  Each group dict must have a ``"params"`` entry and may
            override any option of ``defaults``.
        defaults: dict of default values of the optimization options.
    """

    def __init__(self, params: Iterable, defaults: Dict[str, Any], fused: Optional[bool] = None):
        # NOTE: [Compiled eager steps] With ``fused`` (the default), an eager ``step()``
        # runs the update of every parameter as one compiled program (graphjit.compile of
        # the reference update below): params, grads, state and the options are its inputs,
        # updated in place. ``fused=False`` runs the same tensor expressions op by op on
        # NumPy: the reference the compiled update is tested against. Inside a compiled
        # function the reference update is traced into the caller's program instead.
        self.fused = True if fused is None else bool(fused)
        self._compiled_update = None
        self.defaults = dict(defaults)
        self._changes = _Changes(self)  # see [Optimizer change counts]
        self.state: Dict[Any, Dict[str, Any]] = _State(self._changes)
        self.param_groups: List[Dict[str, Any]] = _TrackedList(self._changes)

        if _is_tensor(params) or isinstance(params, dict):
            raise TypeError(
                "params argument given to the optimizer should be an iterable "
                "of Tensors or dicts, but got " + _typename(params)
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered "
                "collections, but the ordering of tensors in sets will change "
                "between runs. Please use a list instead."
            )
        param_list = list(params)
        if len(param_list) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_list[0], dict):
            param_list = [{"params": param_list}]
        for group in param_list:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a param group to the optimizer's ``param_groups``.

        Missing options are filled from ``defaults``; an option whose default
        is ``required`` must be given.  A parameter may appear only once in
        the whole optimizer.
        """
        if not isinstance(param_group, dict):
            raise TypeError(
                f"param_group must be a dict, but got {_typename(param_group)}"
            )
        if "params" not in param_group:
            raise ValueError('param_group must have a "params" entry')
        group = ParamGroup(self._changes, param_group)
        params = group["params"]
        if _is_tensor(params):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered "
                "collections, but the ordering of tensors in sets will change "
                "between runs. Please use a list instead."
            )
        else:
            params = list(params)
        params = _TrackedList(self._changes, params)

        seen = set()
        for p in params:
            if not _is_tensor(p):
                raise TypeError(
                    "optimizer can only optimize Tensors, but one of the params is "
                    + _typename(p)
                )
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if id(p) in seen:
                raise ValueError(
                    "a parameter appears more than once in the same parameter "
                    "group; this would make the optimizer update it twice"
                )
            seen.add(id(p))
        group["params"] = params

        for name, default in self.defaults.items():
            if name in group:
                if group[name] is required:
                    raise ValueError(
                        "parameter group didn't specify a value of required "
                        f"optimization parameter {name}"
                    )
                continue
            if default is required:
                raise ValueError(
                    "parameter group didn't specify a value of required "
                    f"optimization parameter {name}"
                )
            group[name] = copy.deepcopy(default)

        existing = set()
        for g in self.param_groups:
            existing.update(id(p) for p in g["params"])
        if not existing.isdisjoint(seen):
            raise ValueError("some parameters appear in more than one parameter group")

        self.param_groups.append(group)

    # --------------------------------------------------------------- helpers
    def _params_with_grad(self, group: Dict[str, Any]):
        """The params of ``group`` that have a gradient (others are skipped)."""
        _tracing.note_optimizer(self)
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            self._follow(p)
        return params

    def _follow(self, p) -> None:
        """Move ``p``'s state to ``p``'s device if ``p`` moved (``module.to("cuda")`` after
        steps were taken): the state follows the parameters. 0-d state (the step count)
        may stay on the CPU, as PyTorch keeps it."""
        state = self.state.get(p)
        if not state:
            return
        kind = type(p._data)
        for key, value in state.items():
            if (isinstance(value, Tensor) and value._data is not None
                    and type(value._data) is not kind and value.ndim > 0):
                # A copy of the data, not an op: inside a compiled step this runs once, while
                # tracing, before anything reads the state, and the moved tensor replaces the
                # old one for good (a state change that persists, like state creation).
                state[key] = Tensor._wrap(devices.to_device(value._data, p.device))

    @staticmethod
    def _eval_closure(closure: Optional[Callable[[], Any]]):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _new_step_tensor(p):
        """A 0-d step counter tensor.

        It is kept in the parameter's floating dtype so that the bias
        corrections computed from it (``beta ** step``) have the precision of
        the parameter and do not promote the update.
        """
        dtype = p.dtype if p.dtype.is_floating_point else get_default_dtype()
        return tensor(0.0, dtype=dtype)

    # ----------------------------------------------------------------- API
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters.

        With ``set_to_none=True`` (default) ``p.grad`` becomes ``None``;
        otherwise the gradient is detached and filled with zeros in place.
        """
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                with no_grad():
                    if g.grad_fn is not None or g.requires_grad:
                        g = g.detach()
                        p.grad = g
                    g.zero_()

    # False: weight decay is L2, added to the gradient (every optimizer but AdamW).
    _decoupled_weight_decay = False

    def step(self, closure: Optional[Callable[[], Any]] = None):
        """Perform a single optimization step; returns the closure's loss.

        The common part of every algorithm lives here: parameters without a gradient are
        skipped, ``maximize`` negates the gradient and coupled weight decay adds
        ``weight_decay * p`` to it; ``_update`` applies the algorithm itself.
        """
        if type(self)._update is Optimizer._update:
            raise NotImplementedError(f"{type(self).__name__} does not define _update()")
        loss = self._eval_closure(closure)
        if self.fused and _tracing.active() is None:
            if self._compiled_update is None:
                self._compiled_update = _tracing.compiler()(self._reference_step)
            self._compiled_update()
        else:
            self._reference_step()
        return loss

    def _reference_step(self) -> None:
        """The update of every parameter with a gradient, as graphjit tensor operations."""
        with no_grad():
            for index, group in enumerate(self.param_groups):
                group = _tracing.hyper_group(self, index, group)
                weight_decay = group.get("weight_decay", 0)
                for p in self._params_with_grad(group):
                    g = p.grad.neg() if group.get("maximize", False) else p.grad
                    if weight_decay != 0 and not self._decoupled_weight_decay:
                        g = g.add(p, alpha=weight_decay)
                    self._update(p, g, group)

    def _update(self, p, g, group) -> None:
        """Update ``p`` in place from its (prepared) gradient ``g``; state in ``self.state[p]``."""
        raise NotImplementedError

    # ------------------------------------------------------------ state dict
    def state_dict(self) -> Dict[str, Any]:
        """Return the optimizer state as a dict (deep-copied).

        ``"state"`` maps the integer index of each parameter (counted across
        all groups in order) to its state dict; ``"param_groups"`` holds the
        groups' options with ``"params"`` replaced by lists of indices.
        """
        index_of: Dict[int, int] = {}
        groups = []
        next_index = 0
        for group in self.param_groups:
            packed = {k: _clone_value(v) for k, v in group.items() if k != "params"}
            idxs = []
            for p in group["params"]:
                if id(p) not in index_of:
                    index_of[id(p)] = next_index
                    next_index += 1
                idxs.append(index_of[id(p)])
            packed["params"] = idxs
            groups.append(packed)

        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index_of[id(p)]] = _clone_value(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load an optimizer state produced by :meth:`state_dict`.

        The number of parameter groups and their sizes must match.  Loaded
        state tensors are copied and cast to the dtype of their parameter.
        The given dict is never aliased nor modified.
        """
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict \
                or "state" not in state_dict:
            raise ValueError(
                "state_dict must be a dict with 'state' and 'param_groups' entries"
            )
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError(
                "loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)}) than the optimizer ({len(groups)})"
            )
        for i, (g, sg) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group ({i}) that "
                    f"doesn't match the size of optimizer's group: "
                    f"{len(sg['params'])} saved params vs {len(g['params'])}"
                )

        id_map: Dict[Any, Any] = {}
        for g, sg in zip(groups, saved_groups):
            for saved_idx, p in zip(sg["params"], g["params"]):
                id_map[saved_idx] = p

        for k in state_dict["state"]:
            if k not in id_map:
                raise ValueError(
                    f"loaded state dict has state for parameter index {k!r}, "
                    "which is not listed in any of its parameter groups"
                )

        new_state: Dict[Any, Dict[str, Any]] = defaultdict(dict)
        for k, value in state_dict["state"].items():
            p = id_map[k]
            dtype = p.dtype if p.dtype.is_floating_point else None
            new_state[p] = _clone_value(value, dtype)

        new_groups = []
        for g, sg in zip(groups, saved_groups):
            ng = {k: _clone_value(v) for k, v in sg.items() if k != "params"}
            for k, v in g.items():
                if k != "params" and k not in ng:
                    ng[k] = v
            ng["params"] = g["params"]
            new_groups.append(ng)

        self.state = _tracked_state(self._changes, new_state)
        self.param_groups = _tracked_groups(self._changes, new_groups)
        self._changes.structure += 1

    # --------------------------------------------------------------- misc
    def __getstate__(self):
        return {
            "defaults": self.defaults,
            "state": self.state,
            "param_groups": self.param_groups,
            "fused": self.fused,
        }

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("fused", True)
        self._compiled_update = None  # compiled for the old object's tensors
        groups = self.param_groups
        if isinstance(groups, _TrackedList):
            # A shallow copy shares the containers, so it shares their counter too.
            self._changes = groups._changes
        else:  # a deep copy or an unpickled optimizer: plain containers
            self._changes = _Changes(self)
            self.param_groups = _tracked_groups(self._changes, groups)
            self.state = _tracked_state(self._changes, self.state)

    def _change_counter(self):
        """The ``_Changes`` that every change to ``param_groups`` and ``state`` bumps, or
        None when one of their containers is not this optimizer's own (see [Optimizer
        change counts]): then nothing counts all changes. O(parameters); the guards ask
        only after a full check, and keep the answer while the counts stay put."""
        changes = getattr(self, "_changes", None)

        def ours(container, kind):
            return type(container) is kind and container._changes is changes
        if changes is None or not ours(self.param_groups, _TrackedList) \
                or not ours(self.state, _State):
            return None
        for group in self.param_groups:
            if not ours(group, ParamGroup) or not ours(group.get("params"), _TrackedList):
                return None
        for entry in self.state.values():
            if not ours(entry, _TrackedDict):
                return None
        return changes

    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group.keys()):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
