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
    """``out = op(*inputs, **attrs)``; ``source`` is the user's file:line that created it."""
    __slots__ = ("op", "inputs", "attrs", "out", "source")

    def __init__(self, op, inputs, attrs, out_type: TensorType, source: str | None = None):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.out = Value(out_type, node=self)
        self.source = source

    def __repr__(self) -> str:
        args = ", ".join(f"%{v.name}" for v in self.inputs)
        return f"<Node %{self.out.name} = {self.op.name}({args})>"


@dataclass(eq=False)
class Graph:
    name: str
    inputs: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    updates: list = field(default_factory=list)  # [(input Value, new Value)]
    # Data of the inputs whose role is "const" (non-uniform constants met while tracing).
    constants: dict = field(default_factory=dict)

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

    def add_node(self, op, inputs, attrs, out_type: TensorType, source=None) -> Value:
        node = Node(op, inputs, attrs, out_type, source)
        self.nodes.append(node)
        return node.out

    def users(self) -> dict:
        """Map each value to the list of nodes that read it."""
        users = {v: [] for v in self.inputs}
        for n in self.nodes:
            users.setdefault(n.out, [])
            for v in n.inputs:
                users.setdefault(v, []).append(n)
        return users

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def to_networkx(self):
        from .nx import to_networkx
        return to_networkx(self)
