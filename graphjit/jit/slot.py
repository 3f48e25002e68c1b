"""``_Slot``: how a compiled program finds one of its graph inputs again at every call.

A trace lifts what the function reads into graph inputs ([Tracing model] in trace.py); each
input gets a slot saying where its array comes from on the next call, by kind:

- ``"arg"``: the flat argument ``index`` (signature.py flattens the arguments);
- ``"tensor"``: a tensor the function reached (a parameter, buffer, optimizer state), held;
- ``"grad"``: ``owner.grad``, read afresh (it may be replaced or set to None between calls);
- ``"array"``: a NumPy array the function used, held (in ``tensor``);
- ``"hyper"``: an optimizer option read from ``param_groups`` ([Hyper-parameters] in
  optimizers.py); ``owner`` is ``(optimizer, group index, key, element of a tuple or None)``.
"""
from __future__ import annotations


class _Slot:
    """How to find one graph input again on the next call."""
    __slots__ = ("kind", "tensor", "index", "owner", "value", "name")

    def __init__(self, kind, value, name, tensor=None, index=None, owner=None):
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
