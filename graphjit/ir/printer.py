"""The canonical text form of a Graph (parsed back by ``parser.parse_graph``).

    graph f(%x: f32[3,4] {arg}, %w: f32[4] {param}) {
      %0 = mul(%x, %w) : f32[3,4]
      %1 = sum(%0, dims=[0, 1], keepdim=false) : f32[]
      return %1
      update %w <- %1
    }

Inputs keep their names; node results are numbered in program order (a node with several
results, a multi-output ``fused`` node, prints ``%3, %4 = fused(...) : f32[8], f32[]``), so printing is
deterministic and two stages of a pipeline diff line by line. Attributes are printed in
sorted order as literals: ints, floats (``inf``, ``nan``), ``true``/``false``/``none``,
quoted strings, dtype short names (``f32``) and ``[...]`` for tuples.
"""
from __future__ import annotations

import math

from ..dtypes import DType


def format_attr(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, DType):
        return value.short
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"attribute value {value!r} of type {type(value).__name__} has no text form")


def value_names(graph) -> dict:
    """The printed name of every value: inputs by their own name, node results by number."""
    names = {}
    for v in graph.inputs:
        names[v] = v.name
    count = 0
    for n in graph.nodes:
        for v in n.outs:
            names[v] = str(count)
            count += 1
    return names


def format_node(node, names) -> str:
    args = [f"%{names[v]}" for v in node.inputs]
    args += [f"{k}={format_attr(node.attrs[k])}" for k in sorted(node.attrs)]
    outs = ", ".join(f"%{names[v]}" for v in node.outs)
    types = ", ".join(str(v.type) for v in node.outs)
    return f"{outs} = {node.op.name}({', '.join(args)}) : {types}"


def print_graph(graph, *, sources: bool = False) -> str:
    names = value_names(graph)
    params = ", ".join(f"%{v.name}: {v.type} {{{v.role}}}" for v in graph.inputs)
    lines = [f"graph {graph.name}({params}) {{"]
    for n in graph.nodes:
        line = "  " + format_node(n, names)
        if sources and n.source:
            line += f"  # {n.source}"
        lines.append(line)
    lines.append(("  return " + ", ".join(f"%{names[v]}" for v in graph.outputs)).rstrip())
    for target, value in graph.updates:
        lines.append(f"  update %{names[target]} <- %{names[value]}")
    lines.append("}")
    return "\n".join(lines)
