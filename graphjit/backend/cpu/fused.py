"""Fused elementwise nodes: one loop nest, every step of the body inlined into it.

For ``fused(%x: f32[4,5], %b: f32[5], body='t0 = add(i0, i1); t1 = relu(t0)')``:

    for i0 in range(4):
        for i1 in range(5):
            x0 = in0[i0 * 5 + i1]
            x1 = in1[i1]
            t0 = (x0 + x1)
            t1 = max(t0, np.float32(0.0))
            out[i0 * 5 + i1] = t1

Each step is its op's own ``OpDef.scalar`` expression (the text the generic elementwise
emitter uses), typed by the dtype that step computes in; intermediate values live in
registers, so the group reads its inputs and writes its output once.
"""
from __future__ import annotations

from ...ir.fused import body_graph
from ...shapes import numel
from .elementwise import scalar_expression
from .kernel import emits
from .loops import affine, broadcast_strides, c_strides, coalesce, loop_nest, np_type


@emits("fused")
def emit_fused(node, k) -> None:
    out_shape = node.out.shape
    if numel(out_shape) == 0:
        return
    body = body_graph(node.attrs["body"], [v.type for v in node.inputs])
    strides = [broadcast_strides(v.shape, out_shape) for v in node.inputs]
    shape, strides = coalesce(out_shape, strides + [c_strides(out_shape)])
    *in_strides, out_strides = strides
    names = {v: k.fresh(f"x{i}") for i, v in enumerate(body.inputs)}
    hoisted = [i for i, st in enumerate(in_strides) if not any(st)]
    for i in hoisted:
        k.line(f"{names[body.inputs[i]]} = {k.ins[i]}[0]")
    # Steps that read only one-element inputs (an optimizer's bias corrections, lr * ...)
    # are computed once, before the loops: LLVM does not hoist libm calls such as pow.
    invariant = {body.inputs[i] for i in hoisted}
    for j, step in enumerate(body.nodes):
        if all(v in invariant for v in step.inputs):
            _emit_step(k, step, j, names)
            invariant.add(step.out)
    with loop_nest(k, shape) as idx:
        for i, st in enumerate(in_strides):
            if i not in hoisted:
                k.line(f"{names[body.inputs[i]]} = {k.ins[i]}[{affine(0, zip(idx, st))}]")
        for j, step in enumerate(body.nodes):
            if step.out not in invariant:
                _emit_step(k, step, j, names)
        k.line(f"{k.out}[{affine(0, zip(idx, out_strides))}] = {names[body.outputs[0]]}")


def _emit_step(k, step, j, names) -> None:
    names[step.out] = k.fresh(f"t{j}")
    expr = scalar_expression(step, [names[v] for v in step.inputs])
    if step.out.dtype.is_floating_point:
        # What storing the step's buffer did before fusion: e.g. Numba's math.exp of a
        # float32 is a float64, which the next step must see rounded to float32.
        expr = f"{np_type(step.out.dtype)}({expr})"
    k.line(f"{names[step.out]} = {expr}")
