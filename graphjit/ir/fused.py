"""The ``fused`` op: one loop computing a group of elementwise nodes (made by passes/fuse).

# NOTE: [Fused nodes]
A fused node's inputs are the values its group reads from outside; its one attribute,
``body``, is the group as a line of SSA steps over those inputs (``i0, i1, ...``), the last
step being the node's result:

    %7 = fused(%x, %b, body='t0 = add(i0, i1); t1 = relu(t0); t2 = mul(t1, t1)') : f32[64,32]

Each step names a registered elementwise op with its attributes, printed as the IR printer
prints attributes, so the text round-trips through the parser like every other node and the
verifier re-infers the body's types with each op's own ``infer``. The body is a string, not a
Graph object, so the node stays hashable for CSE and printable on one line. Every step
runs over the output's loop domain (passes/fuse only groups nodes of the output's shape;
inputs may broadcast), so no value is computed more than once per output element.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import ShapeError
from ..ops import registry
from ..shapes import TensorType, numel
from .graph import Graph
from .parser import IRParseError, _Tokens, parse_call
from .printer import format_attr


def format_body(steps) -> str:
    """``steps``: ``[(op name, [operand names], attrs)]``, operand names ``i<k>``/``t<k>``."""
    parts = []
    for k, (op_name, operands, attrs) in enumerate(steps):
        args = list(operands) + [f"{a}={format_attr(attrs[a])}" for a in sorted(attrs)]
        parts.append(f"t{k} = {op_name}({', '.join(args)})")
    return "; ".join(parts)


@functools.lru_cache(maxsize=4096)
def _parse_steps(body: str) -> tuple:
    """The steps of ``body`` as ``((op, operand names, attrs), ...)`` (attrs as sorted items)."""
    steps = []
    for k, text in enumerate(part.strip() for part in body.split(";")):
        toks = _Tokens(text, k + 1)
        name = toks.next()[1]
        if name != f"t{k}":
            raise IRParseError(f"fused body step {k + 1}: expected t{k}, got {name!r}")
        toks.expect("=")
        op, operands, attrs = parse_call(toks, f"fused body step {k + 1}")
        if op.kind != "elementwise" or op.scalar is None:
            raise IRParseError(f"fused body step {k + 1}: {op.name} is not an elementwise op "
                               "with a scalar expression")
        if not toks.done():
            raise IRParseError(f"fused body step {k + 1}: unexpected text after the call")
        steps.append((op, tuple(operands), tuple(sorted(attrs.items()))))
    return tuple(steps)


def body_graph(body: str, input_types) -> Graph:
    """The body as a Graph over inputs ``i0..``: one node per step, types inferred."""
    g = Graph("fused_body")
    env = {f"i{j}": g.add_input(t, f"i{j}", "arg") for j, t in enumerate(input_types)}
    for k, (op, operands, attrs) in enumerate(_parse_steps(body)):
        try:
            args = [env[name] for name in operands]
        except KeyError as e:
            raise IRParseError(f"fused body step {k + 1}: {e.args[0]} is not defined "
                               f"(inputs are i0..i{len(input_types) - 1})") from None
        attrs = dict(attrs)
        out_type = op.infer(*[v.type for v in args], **attrs)
        env[f"t{k}"] = g.add_node(op, args, attrs, out_type)
    g.outputs = [env[f"t{len(g.nodes) - 1}"]]
    return g


def _infer(*input_types, body: str) -> TensorType:
    g = body_graph(body, input_types)
    out = g.outputs[0].type
    for n in g.nodes:
        if tuple(n.out.shape) not in ((), tuple(out.shape)) and n.op.name != "full":
            raise ShapeError(f"fused body step {n.out.shape} does not run over the output's "
                             f"domain {tuple(out.shape)}", op="fused")
    return out


def _impl(*arrays, body: str):
    g = body_graph(body, [TensorType(tuple(a.shape), _dtype_of(a)) for a in arrays])
    env = dict(zip(g.inputs, arrays))
    for n in g.nodes:
        env[n.out] = np.asarray(n.op.impl(*[env[v] for v in n.inputs], **n.attrs)).astype(
            n.out.dtype.np, copy=False)
    return env[g.outputs[0]]


def _dtype_of(a):
    from ..dtypes import from_numpy
    return from_numpy(a.dtype)


def _cost(out, *inputs, body: str):
    g = body_graph(body, inputs)
    flops = sum(n.op.cost(n.out.type, *[v.type for v in n.inputs], **n.attrs)[0] for n in g.nodes)
    moved = sum(numel(t.shape) * t.dtype.itemsize for t in inputs)
    return flops, moved + numel(out.shape) * out.dtype.itemsize


FUSED = registry.register(registry.OpDef(
    name="fused", kind="fused", infer=_infer, impl=_impl, vjp=None, cost=_cost,
    no_grad_reason="fused nodes are made by passes/fuse after autodiff has derived every "
                   "gradient"))

