"""The graph IR: SSA values with static types, nodes naming registry ops, explicit updates.

A ``Graph`` has typed inputs (each tagged with a role), an ordered list of ``Node``s (each
one primitive op from the registry applied to earlier values, producing one new value),
outputs, and ``updates``: pairs ``(input, value)`` meaning "after the program runs, write
``value`` into the buffer of ``input``". State changes (parameters, ``.grad``, optimizer
state) are only ever expressed that way, so every node is pure and passes such as DCE and
CSE are sound (see DESIGN.md section 4).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..shapes import TensorType

# Roles of graph inputs, as printed in braces after the input's type.
ROLES = ("arg", "param", "buffer", "grad", "state", "hyper", "const")


class Value:
    """One SSA value: its static type, and the node that defines it (None for inputs)."""
    __slots__ = ("type", "node", "name", "role")

    def __init__(self, type: TensorType, node: "Node | None" = None, name: str | None = None,
                 role: str | None = None):
        self.type = type
        self.node = node
        self.name = name
        self.role = role

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self) -> str:
        return f"<Value %{self.name} : {self.type}>"


class Node:
    """``out = op(*inputs, **attrs)``; ``source`` is the user's file:line that created it.

    A node has one result, ``out``, except a ``fused`` node that computes several values in
    one loop (see [Fused nodes] in fused.py): it is made with a list of types and its results
    are ``outs`` (``out`` then raises, so code that assumes one result fails loudly). Every
    node has ``outs``; code that handles all nodes iterates it.
    """
    __slots__ = ("op", "inputs", "attrs", "outs", "source")

    def __init__(self, op, inputs, attrs, out_type, source: str | None = None):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        types = out_type if isinstance(out_type, list) else [out_type]
        self.outs = [Value(t, node=self) for t in types]
        self.source = source

    @property
    def out(self) -> Value:
        if len(self.outs) != 1:
            raise AttributeError(f"a {self.op.name} node with {len(self.outs)} results has no "
                                 "single .out; use .outs")
        return self.outs[0]

    @property
    def out_type(self):
        """The result's type, or the list of result types of a multi-result node (what
        ``Node(...)`` and ``OpDef.infer``/``cost`` take and give)."""
        return self.outs[0].type if len(self.outs) == 1 else [v.type for v in self.outs]

    def __repr__(self) -> str:
        args = ", ".join(f"%{v.name}" for v in self.inputs)
        outs = ", ".join(f"%{v.name}" for v in self.outs)
        return f"<Node {outs} = {self.op.name}({args})>"


@dataclass(eq=False)
class Graph:
    name: str
    inputs: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    updates: list = field(default_factory=list)  # [(input Value, new Value)]
    # Data of the inputs whose role is "const" (non-uniform constants met while tracing).
    constants: dict = field(default_factory=dict)
    # Inputs whose dependents passes/fuse keeps apart from the rest (the seeds of a forward/
    # backward split: the two halves run as separate programs).
    fusion_split: list = field(default_factory=list)
    # 0-d inputs that live on the CPU in a program for the CUDA target (see [Host scalars]
    # in host.py): hyperparameters, 0-d CPU tensors.
    host_inputs: list = field(default_factory=list)

    def add_input(self, type: TensorType, name: str, role: str = "arg") -> Value:
        if role not in ROLES:
            raise ValueError(f"unknown input role {role!r}; expected one of {ROLES}")
        v = Value(type, name=name, role=role)
        self.inputs.append(v)
        return v

    def add_constant(self, array) -> Value:
        from .. import dtypes
        v = self.add_input(TensorType(tuple(array.shape), dtypes.from_numpy(array.dtype)),
                           f"c{len(self.constants)}", role="const")
        self.constants[v] = array
        return v

    def add_node(self, op, inputs, attrs, out_type, source=None):
        """Append a node; returns its result, or the list of them when ``out_type`` is a
        list (a multi-result node)."""
        node = Node(op, inputs, attrs, out_type, source)
        self.nodes.append(node)
        return list(node.outs) if isinstance(out_type, list) else node.out

    def users(self) -> dict:
        """Map each value to the list of nodes that read it."""
        users = {v: [] for v in self.inputs}
        for n in self.nodes:
            for v in n.outs:
                users.setdefault(v, [])
            for v in n.inputs:
                users.setdefault(v, []).append(n)
        return users

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def to_networkx(self):
        from .nx import to_networkx
        return to_networkx(self)
