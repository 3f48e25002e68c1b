"""The ``fused`` op: one loop nest computing a group of nodes (made by passes/fuse).

# NOTE: [Fused nodes]
A fused node's inputs are the values its group reads from outside; its one attribute,
``body``, is the group as a line of SSA steps over those inputs (``i0, i1, ...``). The
results are the steps named by a final ``return`` (the last step when there is none):

    %7 = fused(%x, %b, body='t0 = add(i0, i1); t1 = relu(t0); t2 = mul(t1, t1)') : f32[64,32]
    %8, %9 = fused(%a, %b, body='t0 = mul(i0, i0); t1 = sub(t0, i1); t2 = sum(t1, dims=[0],
             keepdim=false); return t1, t2') : f32[4096], f32[]

Each step names a registered op with its attributes, printed as the IR printer prints
attributes, so the text round-trips through the parser like every other node and the
verifier re-infers the body's types with each op's own ``infer``. The body is a string, not a
Graph object, so the node stays hashable for CSE and printable on one line.

Steps are elementwise ops (with a scalar expression), ``expand`` (a broadcasting read) or
the reductions ``sum``, ``amax``, ``amin``. The group's loop domain is the shape every
reduction reads, or the largest step shape when there is no reduction. A body's reductions
reduce one set of dims, or beside row reductions over the innermost dims
(``split_dim_sets``) also all the other dims (column sums) and (or) all dims (a total),
both accumulated across the rows, so nothing in the body reads their results. Every elementwise step has the domain's shape or, after a reduction, the
reduced shape (a per-row value such as ``1 / sum``), or is 0-d; so no value is computed more
than a bounded number of times per domain element (see [Fused loops] in
graphjit/backend/cpu/fused.py for how steps that read a reduction run after it).
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


REDUCTIONS = ("sum", "amax", "amin")
# Shape ops a loop computes by indexing alone: ``expand`` (NumPy broadcasting) is a
# zero-stride read of its input, never a buffer of its own.
INDEXING_STEPS = ("expand",)


def fusable_step(op) -> bool:
    """Whether ``op`` may be a step of a fused body."""
    return ((op.kind == "elementwise" and op.scalar is not None) or op.name in REDUCTIONS
            or op.name in INDEXING_STEPS)


def format_body(steps, results=None) -> str:
    """``steps``: ``[(op name, [operand names], attrs)]``, operand names ``i<k>``/``t<k>``;
    ``results``: the indices of the steps the node returns (default: the last one)."""
    parts = []
    for k, (op_name, operands, attrs) in enumerate(steps):
        args = list(operands) + [f"{a}={format_attr(attrs[a])}" for a in sorted(attrs)]
        parts.append(f"t{k} = {op_name}({', '.join(args)})")
    if results is not None and list(results) != [len(steps) - 1]:
        parts.append("return " + ", ".join(f"t{k}" for k in results))
    return "; ".join(parts)


@functools.lru_cache(maxsize=4096)
def _parse_steps(body: str) -> tuple:
    """``(steps, results)``: the steps of ``body`` as ``((op, operand names, attrs), ...)``
    (attrs as sorted items) and the returned step names."""
    steps = []
    parts = [part.strip() for part in body.split(";")]
    results = None
    if parts and parts[-1].startswith("return"):
        results = tuple(name.strip() for name in parts.pop()[len("return"):].split(","))
    for k, text in enumerate(parts):
        toks = _Tokens(text, k + 1)
        name = toks.next()[1]
        if name != f"t{k}":
            raise IRParseError(f"fused body step {k + 1}: expected t{k}, got {name!r}")
        toks.expect("=")
        op, operands, attrs = parse_call(toks, f"fused body step {k + 1}")
        if not fusable_step(op):
            raise IRParseError(f"fused body step {k + 1}: {op.name} is neither an elementwise "
                               "op with a scalar expression, a sum/amax/amin reduction nor "
                               "an expand")
        if not toks.done():
            raise IRParseError(f"fused body step {k + 1}: unexpected text after the call")
        steps.append((op, tuple(operands), tuple(sorted(attrs.items()))))
    if not steps:
        raise IRParseError("a fused body has no steps")
    if results is None:
        results = (f"t{len(steps) - 1}",)
    for name in results:
        if not (name.startswith("t") and name[1:].isdigit() and int(name[1:]) < len(steps)):
            raise IRParseError(f"fused body returns {name!r}, which is not one of its steps "
                               f"t0..t{len(steps) - 1}")
    return tuple(steps), results


def has_reduction(body: str) -> bool:
    """Whether a fused body holds a reduction step."""
    return any(op.name in REDUCTIONS for op, _, _ in _parse_steps(body)[0])


def body_graph(body: str, input_types) -> Graph:
    """The body as a Graph over inputs ``i0..``: one node per step, types inferred."""
    g = Graph("fused_body")
    env = {f"i{j}": g.add_input(t, f"i{j}", "arg") for j, t in enumerate(input_types)}
    steps, results = _parse_steps(body)
    for k, (op, operands, attrs) in enumerate(steps):
        try:
            args = [env[name] for name in operands]
        except KeyError as e:
            raise IRParseError(f"fused body step {k + 1}: {e.args[0]} is not defined "
                               f"(inputs are i0..i{len(input_types) - 1})") from None
        attrs = dict(attrs)
        out_type = op.infer(*[v.type for v in args], **attrs)
        env[f"t{k}"] = g.add_node(op, args, attrs, out_type)
    g.outputs = [env[name] for name in results]
    return g


def _dim_sets(body) -> set:
    return {tuple(sorted(n.attrs["dims"])) for n in body.nodes if n.op.name in REDUCTIONS}


def is_total(shape, dims) -> bool:
    """Whether ``dims`` reduce every dim of ``shape`` (size-1 dims aside): one value."""
    return all(d in dims for d, n in enumerate(shape) if n != 1)


def split_dim_sets(shape, sets):
    """``(row dims, column dims, total dims)`` of a loop over ``shape`` whose reductions
    reduce the dim tuples ``sets``. One set is the row reduction (or the only, outer, one);
    beside row reductions over the innermost dims, the loop may also accumulate across the
    rows: column sums over exactly the other dims (a bias gradient beside a layer norm)
    and one total over every dim (a mean loss of a layer norm's output). Raises otherwise."""
    sets = sorted(sets)
    totals = [d for d in sets if is_total(shape, d)]
    others = [d for d in sets if not is_total(shape, d)]
    if not others and len(totals) <= 1:
        return (totals[0] if totals else None), None, None
    if len(totals) > 1:
        raise ShapeError(f"fused body reduces all of {list(shape)} in two ways {totals}",
                         op="fused")
    total = totals[0] if totals else None
    if len(others) == 1:
        if total is not None and reduction_layout(shape, others[0]) != "inner":
            raise ShapeError(f"fused body reduces dims {others[0]} of {list(shape)} and all of "
                             "them: a total beside row reductions needs innermost rows",
                             op="fused")
        return others[0], None, total
    real = [d for d, n in enumerate(shape) if n != 1]
    if len(others) == 2:
        for inner, cols in (others, others[::-1]):
            if reduction_layout(shape, inner) == "inner" and any(shape[d] != 1 for d in inner) \
                    and {d for d in cols if shape[d] != 1} == set(real) - set(inner):
                return inner, cols, total
    raise ShapeError(f"fused body reduces dims {sets} of {list(shape)}: one body reduces one "
                     "set of dims, or the innermost dims and (or) all the others and (or) all "
                     "dims", op="fused")


def reduced_dims(body) -> tuple | None:
    """The dims the body's row reductions reduce (or its only reductions), or None."""
    return split_dim_sets(domain(body), _dim_sets(body))[0]


def column_dims(body) -> tuple | None:
    """The dims of the body's column reductions (see ``split_dim_sets``), or None."""
    return split_dim_sets(domain(body), _dim_sets(body))[1]


def total_dims(body) -> tuple | None:
    """The dims of the body's total beside row reductions (see ``split_dim_sets``), or None."""
    return split_dim_sets(domain(body), _dim_sets(body))[2]


def domain(body) -> tuple:
    """The loop domain of a body graph (see [Fused nodes])."""
    reads = {tuple(n.inputs[0].shape) for n in body.nodes if n.op.name in REDUCTIONS}
    if len(reads) > 1:
        raise ShapeError(f"fused body reductions read different shapes {sorted(reads)}",
                         op="fused")
    if reads:
        return reads.pop()
    return max((tuple(n.out.shape) for n in body.nodes), key=shape_size)


def shape_size(shape) -> tuple:
    """Sort key of loop domains: more elements, then more dims (``[1]`` over ``[]``)."""
    return numel(shape), len(shape)


def kept_shapes(shape, dims) -> tuple:
    """The shapes of ``shape`` reduced over ``dims``: with and without keepdim."""
    keep = tuple(1 if d in dims else n for d, n in enumerate(shape))
    return keep, tuple(n for d, n in enumerate(shape) if d not in dims)


def reduction_layout(domain, dims) -> str | None:
    """``"inner"`` when the reduced dims (ignoring size-1 dims) are the innermost ones of
    ``domain``, ``"outer"`` when they are the outermost ones, else None (not fusable)."""
    flags = [d in dims for d, n in enumerate(domain) if n != 1]
    if not any(flags):
        return "inner"  # only size-1 dims reduced: a copy
    first = flags.index(True)
    if all(flags[first:]):
        return "inner"
    last = len(flags) - 1 - flags[::-1].index(True)
    if first == 0 and all(flags[:last + 1]):
        return "outer"
    return None


def step_phases(nodes, domain) -> dict:
    """Node -> the pass over a row it runs in, for the nodes of a group or body in program
    order: a reduction's result is complete at the end of its pass, so a step over the
    whole domain that reads it (directly or through per-row steps) runs in a later pass.
    Per-row steps get the pass before which they can be computed."""
    domain = tuple(domain)
    inside = {n.out: n for n in nodes}
    phase, ready = {}, {}
    for n in nodes:
        p = 0
        for v in n.inputs:
            if v in inside:
                row_level = tuple(v.shape) != domain or v.node.op.name in REDUCTIONS
                p = max(p, ready[v] if row_level else phase[v.node])
        phase[n] = p
        ready[n.out] = p + 1 if n.op.name in REDUCTIONS else p
    return phase


def _infer(*input_types, body: str):
    g = body_graph(body, input_types)
    dom = domain(g)
    dims = reduced_dims(g)
    if dims is not None and reduction_layout(dom, dims) is None:
        raise ShapeError(f"fused body reduces dims {list(dims)} of {list(dom)}: only the "
                         "innermost or the outermost dims can be reduced in a loop", op="fused")
    allowed = {(), dom} | (set(kept_shapes(dom, dims)) if dims is not None else set())
    read = {v for n in g.nodes for v in n.inputs}
    for across, what in ((column_dims(g), "column reduction"), (total_dims(g), "total")):
        if across is None:
            continue
        allowed |= set(kept_shapes(dom, across))
        if any(n.op.name in REDUCTIONS and tuple(sorted(n.attrs["dims"])) == across
               and n.out in read for n in g.nodes):
            raise ShapeError(f"a {what}'s result is read inside its own loop (it is "
                             "complete only after the last row)", op="fused")
    for n in g.nodes:
        if tuple(n.out.shape) not in allowed:
            raise ShapeError(f"fused body step {n.op.name} : {n.out.type} runs neither over the "
                             f"body's domain {list(dom)} nor over its reduced shape", op="fused")
    types = [v.type for v in g.outputs]
    return types[0] if len(types) == 1 else types


def _impl(*arrays, body: str):
    g = body_graph(body, [TensorType(tuple(a.shape), _dtype_of(a)) for a in arrays])
    env = dict(zip(g.inputs, arrays))
    for n in g.nodes:
        env[n.out] = np.asarray(n.op.impl(*[env[v] for v in n.inputs], **n.attrs)).astype(
            n.out.dtype.np, copy=False)
    results = [env[v] for v in g.outputs]
    return results[0] if len(results) == 1 else tuple(results)


def _dtype_of(a):
    from ..dtypes import from_numpy
    return from_numpy(a.dtype)


def _cost(out, *inputs, body: str):
    g = body_graph(body, inputs)
    flops = sum(n.op.cost(n.out.type, *[v.type for v in n.inputs], **n.attrs)[0] for n in g.nodes)
    moved = sum(numel(t.shape) * t.dtype.itemsize for t in inputs)
    outs = out if isinstance(out, list) else [out]
    return flops, moved + sum(numel(t.shape) * t.dtype.itemsize for t in outs)


FUSED = registry.register(registry.OpDef(
    name="fused", kind="fused", infer=_infer, impl=_impl, vjp=None, cost=_cost,
    no_grad_reason="fused nodes are made by passes/fuse after autodiff has derived every "
                   "gradient"))

