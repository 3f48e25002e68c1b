"""The IR verifier: SSA, order, roles, updates, and every type re-inferred by its op.

On failure it raises ``IRVerifyError`` whose message shows the graph text around the
faulty node (ten lines either side), as JAX's ``check_jaxpr`` does.
"""
from __future__ import annotations

from ..errors import GraphjitError
from .graph import ROLES
from .printer import print_graph, value_names


class IRVerifyError(GraphjitError):
    pass


def _window(graph, node_index: int, radius: int = 10) -> str:
    lines = print_graph(graph).splitlines()
    at = node_index + 1  # line 0 is the header
    lo, hi = max(0, at - radius), min(len(lines), at + radius + 1)
    return "\n".join(("-> " if i == at else "   ") + lines[i] for i in range(lo, hi))


def verify(graph) -> None:
    defined = set()
    names = set()
    for v in graph.inputs:
        if v.role not in ROLES:
            raise IRVerifyError(f"input %{v.name} has unknown role {v.role!r}")
        if v.name in names:
            raise IRVerifyError(f"input name %{v.name} is used twice")
        names.add(v.name)
        defined.add(v)
    for i, n in enumerate(graph.nodes):
        for j, v in enumerate(n.inputs):
            if v not in defined:
                raise IRVerifyError(f"node {i} ({n.op.name}) reads input {j} before it is defined\n"
                                    + _window(graph, i) if v in value_names(graph) else
                                    f"node {i} ({n.op.name}) reads a value that is not in the graph")
        if any(v in defined or v.node is not n for v in n.outs):
            raise IRVerifyError(f"node {i} ({n.op.name}) redefines a value\n" + _window(graph, i))
        try:
            expected = n.op.infer(*[v.type for v in n.inputs], **n.attrs)
        except GraphjitError as e:
            raise IRVerifyError(f"node {i} ({n.op.name}) is ill-typed: {e.bare_message}\n"
                                + _window(graph, i)) from None
        expected = expected if isinstance(expected, list) else [expected]
        typed = [v.type for v in n.outs]
        if len(expected) != len(typed) or any(
                tuple(e.shape) != tuple(t.shape) or e.dtype is not t.dtype
                for e, t in zip(expected, typed)):
            raise IRVerifyError(f"node {i} ({n.op.name}) is typed "
                                f"{', '.join(map(str, typed))} but its op infers "
                                f"{', '.join(map(str, expected))}\n" + _window(graph, i))
        defined.update(n.outs)
    for v in graph.outputs:
        if v not in defined:
            raise IRVerifyError("an output is not defined in the graph")
    targets = set()
    for target, value in graph.updates:
        if target not in graph.inputs:
            raise IRVerifyError("an update writes to a value that is not a graph input")
        if target in targets:
            raise IRVerifyError(f"input %{target.name} is updated twice")
        targets.add(target)
        if value not in defined:
            raise IRVerifyError(f"the update of %{target.name} reads an undefined value")
        if value.type != target.type:
            raise IRVerifyError(f"the update of %{target.name} ({target.type}) has type {value.type}")
