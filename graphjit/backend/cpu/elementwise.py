"""Elementwise ops: one broadcasting loop nest around the op's own ``OpDef.scalar``.

The scalar expression comes from the registry (the text the CUDA backend inlines too, see
core/scalar.py), with ``math.exp`` and friends replaced by the vectorisable versions of
vmath.py; this file wraps it in loops. For ``f32[4,5] * f32[5]``:

    for i0 in range(4):
        for i1 in range(5):
            x0 = in0[i0 * 5 + i1]
            x1 = in1[i1]
            out[i0 * 5 + i1] = x0 * x1

Operands that are one element for the whole kernel (a broadcast scalar) are read once,
before the loops.
"""
from __future__ import annotations

from ...shapes import numel
from ..core.indexing import affine, broadcast_strides, c_strides
from ..core.scalar import scalar_expression
from .kernel import EMITTERS
from .loops import coalesce, loop_nest, parallel_min_elements
from .vmath import vectorised_call


EMITTERS.calls = vectorised_call


def cpu_scalar(node, operands) -> str:
    """The node's scalar expression in a CPU kernel: the registry's, literals typed,
    ``math.exp``/``log``/``log1p``/``tanh``/``erf`` as vmath's versions for the dtype
    (libm calls would stop LLVM vectorising the loop; vmath's are within 1 ulp)."""
    return scalar_expression(node, operands, calls=vectorised_call)


@EMITTERS.emits_generic
def emit_elementwise(node, k) -> None:
    out_shape = node.out.shape
    if numel(out_shape) == 0:
        return  # nothing to compute (and no element to hoist)
    strides = [broadcast_strides(v.shape, out_shape) for v in node.inputs]
    shape, strides = coalesce(out_shape, strides + [c_strides(out_shape)])
    *in_strides, out_strides = strides
    operands = [k.fresh(f"x{i}") for i in range(len(node.inputs))]
    expr = cpu_scalar(node, operands)
    # A one-element operand (all strides 0) is loaded once, before the loops.
    hoisted = [i for i, st in enumerate(in_strides) if not any(st)]
    for i in hoisted:
        k.line(f"{operands[i]} = {k.ins[i]}[0]")
    with loop_nest(k, shape, parallel=numel(out_shape) >= parallel_min_elements()) as idx:
        for i, st in enumerate(in_strides):
            if i not in hoisted:
                k.line(f"{operands[i]} = {k.ins[i]}[{k.at(affine(0, zip(idx, st)))}]")
        k.line(f"{k.out}[{k.at(affine(0, zip(idx, out_strides)))}] = {expr}")
