"""Matrix products: transposes folded into the BLAS call, elementwise epilogues absorbed.

    %0 = permute(%w, dims=[1, 0]) : f32[784,512]
    %1 = matmul(%x, %0) : f32[256,512]                  %1 = gemm(%x, %w, %b, epilogue=
    %2 = fused(%1, %b, body='t0 = add(i0, i1);   ->       't0 = add(i0, i1); t1 = relu(t0)',
                   t1 = relu(t0)') : f32[256,512]           trans_a=false, trans_b=true)

Three rewrites on 2-D floating-point products (see [GEMM nodes] in graphjit/ir/gemm.py),
repeated until none applies:
- an operand that is ``permute(v, dims=[1, 0])`` is read as ``v`` with a transpose flag;
- ``permute(P, [1, 0])`` of a product P read by nothing else is the product of the
  transposed operands in swapped order (a weight gradient ``(x.T @ g).T = g.T @ x``);
- the one reader of a product, an elementwise or fused node over the product's shape with
  no inner reduction and a result of the product's type, becomes the product's epilogue
  (bias + activation in the forward, the activation's mask in the backward, with the bias
  gradient's sum over the rows).
Then the products whose right operand is a convolution's windows (``reshape(unfold(x,
layout='CN'))``) become ``window_gemm`` nodes that read them from ``x`` a few images at a
time, where all of them gain ([Window GEMM nodes] in graphjit/ir/gemm.py). Runs after ``fuse`` (so an epilogue is a whole
fused group) and before the last ``dce``, which removes the permutes and unfolds left without
readers.
"""
from __future__ import annotations

from graphjit.errors import ShapeError
from graphjit.ir.fused import FUSED, REDUCTIONS, _parse_steps, format_body
from graphjit.ir.gemm import (GEMM, WINDOW_FORWARD_MAX_ROWS, WINDOW_GEMM, dots_shaped,
                              epilogue_graph)
from graphjit.ir.graph import Node

from .manager import graph_pass
from .rewrite import replace_uses


def is_transpose(v) -> bool:
    """Whether ``v`` is ``permute(x, dims=[1, 0])`` of a matrix ``x``."""
    n = v.node
    return (n is not None and n.op.name == "permute" and tuple(n.attrs["dims"]) == (1, 0)
            and len(v.shape) == 2)


def _product(n):
    """``(a, b, trans_a, trans_b, extras, epilogue)`` of a 2-D float matmul or gemm, or None."""
    if n.op.name == "gemm":
        return (n.inputs[0], n.inputs[1], n.attrs["trans_a"], n.attrs["trans_b"],
                n.inputs[2:], n.attrs["epilogue"])
    if n.op.name == "matmul" and all(len(v.shape) == 2 for v in n.inputs) \
            and n.out.dtype.is_floating_point:
        return (n.inputs[0], n.inputs[1], False, False, [], "")
    return None


def _gemm(a, b, ta, tb, extras, epilogue, types, source):
    attrs = {"trans_a": bool(ta), "trans_b": bool(tb), "epilogue": epilogue}
    return Node(GEMM, [a, b] + list(extras), attrs, types, source)


def _epilogue_body(reader, product):
    """The reader as an epilogue over (product, its other inputs), or None if not legal."""
    if reader.op.name == FUSED.name:
        steps, results = _parse_steps(reader.attrs["body"])
        extras = [v for v in reader.inputs if v is not product]
        index = {f"i{j}": (f"i0" if v is product else f"i{extras.index(v) + 1}")
                 for j, v in enumerate(reader.inputs)}
        new_steps = [(op.name, [index.get(o, o) for o in operands], dict(attrs))
                     for op, operands, attrs in steps]
        body = format_body(new_steps, [int(r[1:]) for r in results])
    elif reader.op.kind == "elementwise" and reader.op.scalar is not None:
        extras = [v for v in reader.inputs if v is not product]
        operands = ["i0" if v is product else f"i{extras.index(v) + 1}" for v in reader.inputs]
        body = format_body([(reader.op.name, operands, reader.attrs)])
    else:
        return None
    try:  # the gemm op's own legality rule (see [GEMM nodes])
        epilogue_graph(body, product.type, [v.type for v in extras])
    except ShapeError:
        return None
    return body, extras


def _sweep(graph) -> int:
    users = graph.users()
    pinned = set(graph.outputs) | {v for _, v in graph.updates}
    replaced, mapping, fired = {}, {}, 0
    for n in graph.nodes:
        if n in replaced:
            continue
        prod = _product(n)
        if prod is None:
            continue
        a, b, ta, tb, extras, epilogue = prod
        changed = False
        # (Not through a permute this sweep replaced: its input may be a product it removed.)
        if is_transpose(a) and a.node not in replaced:
            a, ta, changed = a.node.inputs[0], not ta, True
        if is_transpose(b) and b.node not in replaced:
            b, tb, changed = b.node.inputs[0], not tb, True
        readers = users[n.outs[0]] if len(n.outs) == 1 else []
        if not epilogue and len(readers) == 1 and n.out not in pinned:
            r = readers[0]
            if r.op.name == "permute" and tuple(r.attrs["dims"]) == (1, 0) and r not in replaced:
                # (A B)^T = B^T A^T: the transposed product, with no permute of its result.
                new = _gemm(b, a, not tb, not ta, [], "", r.out.type, r.source)
                replaced[n], replaced[r] = None, new
                mapping[r.out] = new.out
                fired += 1
                continue
            if r not in replaced and r.op.name not in REDUCTIONS:
                found = _epilogue_body(r, n.out)
                if found is not None:
                    body, more = found
                    new = _gemm(a, b, ta, tb, more, body, r.out_type, r.source)
                    replaced[n], replaced[r] = None, new
                    mapping.update(zip(r.outs, new.outs))
                    fired += 1
                    continue
        if changed:
            new = _gemm(a, b, ta, tb, extras, epilogue, n.out_type, n.source)
            replaced[n] = new
            mapping.update(zip(n.outs, new.outs))
            fired += 1
    if fired:
        graph.nodes = [replaced.get(n, n) for n in graph.nodes
                       if not (n in replaced and replaced[n] is None)]
        replace_uses(graph, mapping)
    return fired


def _windows_of(v):
    """``(x, unfold attrs)`` if ``v`` is ``reshape(unfold(x, layout='CN'), [C*KH*KW,
    N*OH*OW])`` of a floating-point image ``x``, the right operand of a convolution's
    product ([Window GEMM nodes] in graphjit/ir/gemm.py), else None."""
    r = v.node
    if r is None or r.op.name != "reshape":
        return None
    u = r.inputs[0].node
    if u is None or u.op.name != "unfold" or u.attrs["layout"] != "CN" \
            or not u.out.dtype.is_floating_point:
        return None
    c, kh, kw, n, oh, ow = u.out.shape
    if tuple(v.shape) != (c * kh * kw, n * oh * ow):
        return None
    attrs = {key: u.attrs[key] for key in ("kernel", "dilation", "stride", "padding",
                                           "pad_value")}
    return u.inputs[0], attrs


def _gains(product, columns) -> bool:
    """Whether ``product`` (``_product``'s tuple) gains from reading its windows in chunks
    ([Window GEMM nodes])."""
    a, b, ta, tb = product[:4]
    if tb:  # a weight gradient a[m, N*OH*OW] @ B.T
        return not ta and dots_shaped(a.shape[0], b.shape[0], columns)
    return (a.shape[1] if ta else a.shape[0]) <= WINDOW_FORWARD_MAX_ROWS


def _read_windows(graph) -> int:
    """Products (gemm, or a plain 2-D matmul: a convolution without bias) whose right
    operand is a convolution's windows read them from the image, a few images at a time
    ([Window GEMM nodes]): the forward product (``a @ B``) and the weight gradient (``a @
    B.T``), where every product of those windows gains; the unfold is left to ``dce`` once
    nothing else reads it."""
    products = {}
    for n in graph.nodes:
        prod = _product(n)
        if prod is not None and _windows_of(prod[1]) is not None:
            products.setdefault(prod[1], []).append((n, prod))
    chosen = {n: prod for b, found in products.items()
              if all(_gains(prod, b.shape[1]) for _, prod in found) for n, prod in found}
    mapping = {}
    for i, n in enumerate(graph.nodes):
        if n not in chosen:
            continue
        a, b, ta, tb, extras, epilogue = chosen[n]
        x, windows = _windows_of(b)
        attrs = {"trans_a": bool(ta), "trans_b": bool(tb), "epilogue": epilogue, **windows}
        new = Node(WINDOW_GEMM, [a, x] + list(extras), attrs, n.out_type, n.source)
        graph.nodes[i] = new
        mapping.update(zip(n.outs, new.outs))
    replace_uses(graph, mapping)
    return len(chosen)


@graph_pass("gemm")
def gemm(graph):
    total = 0
    while True:
        fired = _sweep(graph)
        total += fired
        if not fired:
            break
    windows = _read_windows(graph)
    gemm.last_stats = {"rewrites": total,
                       "epilogues": sum(1 for n in graph.nodes if n.op.name == "gemm"
                                        and n.attrs["epilogue"]),
                       "window products": windows}
    return graph
