"""Common-subexpression elimination: one node per (op, inputs, attrs).

Nodes are pure, so two nodes applying the same op to the same values with equal attributes
compute the same thing; the later one is dropped and its readers use the earlier one.
``full`` nodes with equal attributes merge like any other node. Inputs of the commutative
ops below are compared as a set of two.

# NOTE: [Attribute keys]
Attributes are compared by a key that keeps what ``==`` would blur: ``0.0 == -0.0`` and
``1 == 1.0 == True`` in Python, but ``full(value=-0.0)`` and ``full(value=0.0)`` are
different constants (``1 / x`` tells them apart), so floats are keyed by their exact bits
(``float.hex``) and every value by its type. Conversely ``nan != nan``, yet two
``full(value=nan)`` nodes are the same constant, and ``float.hex`` gives every nan one key.
``const`` inputs with byte-identical data are merged too (they are not part of the caller's
signature); dropping the duplicates is left to ``dce``.
"""
from __future__ import annotations

from graphjit.dtypes import DType

from .manager import graph_pass
from .rewrite import replace_uses

# a op b == b op a bit for bit. Not maximum/minimum: at a tie of -0.0 and 0.0 the result
# depends on the operand order.
COMMUTATIVE = frozenset({"add", "mul", "eq", "ne", "logical_and", "logical_or"})


def attr_key(value):
    """A hashable key equal for two attribute values exactly when they mean the same."""
    if value is None:
        return ("none",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", "nan" if value != value else value.hex())
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, DType):
        return ("dtype", value.name)
    if isinstance(value, (tuple, list)):
        return ("seq",) + tuple(attr_key(v) for v in value)
    # Unknown kinds of attribute only match themselves.
    return ("object", id(value))


def node_key(node, order: dict):
    inputs = list(node.inputs)
    if node.op.name in COMMUTATIVE:
        inputs.sort(key=order.__getitem__)
    attrs = tuple(sorted((k, attr_key(v)) for k, v in node.attrs.items()))
    return (node.op.name, tuple(inputs), attrs)


@graph_pass("cse")
def cse(graph):
    order = {v: i for i, v in enumerate(graph.inputs)}
    mapping = {}
    consts = {}
    for v in graph.inputs:
        if v.role == "const" and v in graph.constants:
            data = graph.constants[v]
            key = (v.dtype.name, tuple(v.shape), data.tobytes())
            if key in consts:
                mapping[v] = consts[key]
            else:
                consts[key] = v
    seen, kept = {}, []
    for n in graph.nodes:
        n.inputs = [mapping.get(v, v) for v in n.inputs]
        key = node_key(n, order)
        if key in seen:
            mapping.update(zip(n.outs, seen[key].outs))
            continue
        seen[key] = n
        for v in n.outs:
            order[v] = len(order)
        kept.append(n)
    merged = len(graph.nodes) - len(kept)
    graph.nodes = kept
    replace_uses(graph, mapping)
    cse.last_stats = {"nodes_merged": merged}
    return graph
