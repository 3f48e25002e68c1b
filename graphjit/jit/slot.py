"""``_Slot``: how a compiled program finds one of its graph inputs again at every call.

A trace lifts what the function reads into graph inputs ([Tracing model] in trace.py); each
input gets a slot saying where its array comes from on the next call, by kind:

- ``"arg"``: the flat argument ``index`` (signature.py flattens the arguments);
- ``"tensor"``: a tensor the function reached (a parameter, buffer, optimizer state), held;
- ``"grad"``: ``owner.grad``, read afresh (it may be replaced or set to None between calls);
  an owner the function was given as an argument is that argument of each call
  (``ArgOwner``: see [Owners passed as arguments]);
  ``made``: a ``.grad`` the traced call itself creates (a first backward, ``p.grad = value``
  while it is None): a new tensor at every call, never the one the owner has at the call
  ([Gradients a call creates] in runtime.py);
- ``"array"``: a NumPy array the function used, held (in ``tensor``);
- ``"hyper"``: an optimizer option read from ``param_groups`` ([Hyper-parameters] in
  optimizers.py); ``owner`` is ``(optimizer, group index, key, element of a tuple or None)``.
"""
from __future__ import annotations


# NOTE: [Owners passed as arguments]
# A program may read, write, create or clear the ``.grad`` of a tensor (its owner). A tensor
# the function reached (a parameter, optimizer state) is held and is the same object at
# every call; a tensor passed as an argument is not: the next call may pass another one of
# the same signature (a new model's parameters given to a compiled ``clip_grad_norm_``).
# Such an owner is recorded as ``ArgOwner(index)`` once the trace is done
# (``owner_refs``), and each call finds it in its own flat arguments (``owner_of``): the
# ``.grad`` the program reads and writes is the one of the tensor this call was given.
# (Holding the traced argument instead worked on that tensor's ``.grad`` at every later
# call, silently: found by the PyTorch programs of tests/programs.)

class ArgOwner:
    """The owner of a ``.grad`` that is flat argument ``index`` of each call."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __repr__(self):
        return f"ArgOwner({self.index})"


def owner_of(ref, flat_args):
    """The tensor ``ref`` (a held tensor or an ``ArgOwner``) stands for in this call."""
    return flat_args[ref.index] if type(ref) is ArgOwner else ref


def owner_refs(slots, slot_of):
    """``ref(owner)``: ``ArgOwner(i)`` for a tensor the trace took as flat argument ``i``
    (``slot_of``: the tracer's id -> slot), the owner itself otherwise; and each grad
    slot's owner replaced by it."""
    def ref(owner):
        s = slot_of.get(id(owner))
        return ArgOwner(s.index) if s is not None and s.kind == "arg" else owner
    for s in slots:
        if s.kind == "grad" and type(s.owner) is not ArgOwner:
            s.owner = ref(s.owner)
    return ref


class _Slot:
    """How to find one graph input again on the next call."""
    __slots__ = ("kind", "tensor", "index", "owner", "value", "name", "made")

    def __init__(self, kind, value, name, tensor=None, index=None, owner=None, made=False):
        self.kind = kind
        self.made = made
        self.value = value
        self.name = name
        self.tensor = tensor
        self.index = index
        self.owner = owner

    def resolve(self, flat_args):
        if self.kind == "arg":
            return flat_args[self.index]
        if self.kind == "grad":
            return owner_of(self.owner, flat_args)._grad
        if self.kind == "hyper":  # owner: (optimizer, group index, key, element or None)
            opt, index, key, element = self.owner
            value = opt.param_groups[index][key]
            return value if element is None else value[element]
        return self.tensor
