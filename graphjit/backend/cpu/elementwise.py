"""Elementwise ops: one broadcasting loop nest around the op's own ``OpDef.scalar``.

The scalar expression comes from the registry (the same text the CUDA backend will
inline); this file only types its literals and wraps it in loops. For ``f32[4,5] * f32[5]``:

    for i0 in range(4):
        for i1 in range(5):
            x0 = in0[i0 * 5 + i1]
            x1 = in1[i1]
            out[i0 * 5 + i1] = x0 * x1

Operands that are one element for the whole kernel (a broadcast scalar) are read once,
before the loops.
"""
from __future__ import annotations

import ast

from ...shapes import numel
from .kernel import emits
from .vmath import vectorised_call
from .loops import (affine, broadcast_strides, c_strides, coalesce, literal, loop_nest,
                    parallel_min_elements)


class _TypedLiterals(ast.NodeTransformer):
    """Rewrite the numeric literals of a scalar expression as literals of one dtype.

    Numba types a bare ``0.5`` as float64, which would turn float32 arithmetic into
    float64 (slower, and not what NumPy computes); ``np.float32(0.5)`` keeps it float32.
    ``inf``/``nan`` (how ``repr`` prints them in attributes) become ``np.inf``/``np.nan``.
    ``math.exp``/``log``/``log1p``/``tanh``/``erf`` become vmath's versions for the dtype.
    """

    def __init__(self, dtype, vectorise=True):
        self.dtype = dtype
        self.vectorise = vectorise

    def _typed(self, value):
        return ast.parse(literal(value, self.dtype), mode="eval").body

    def visit_Constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            return node
        if self.dtype.name == "bool":
            return node
        return self._typed(node.value)

    def visit_Call(self, node):
        # math.exp(x) and friends: libm calls that stop LLVM vectorising the loop; the
        # kernels call graphjit's own vectorisable versions of the op's dtype instead
        # (backend/cpu/vmath.py, within 1 ulp).
        self.generic_visit(node)
        f = node.func
        if (self.vectorise and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                and f.value.id == "math"):
            name = vectorised_call(f"math.{f.attr}", self.dtype.name)
            if name is not None:
                node.func = ast.Name(id=name, ctx=ast.Load())
        return node

    def visit_Name(self, node):
        if node.id in ("inf", "nan") and self.dtype.name != "bool":
            return self._typed(float(node.id))
        return node

    def visit_UnaryOp(self, node):
        # -0.5 and -inf are one literal, not a negation of a typed literal.
        inner = node.operand
        if isinstance(node.op, ast.USub) and self.dtype.name != "bool":
            if isinstance(inner, ast.Constant) and isinstance(inner.value, (int, float)) \
                    and not isinstance(inner.value, bool):
                return self._typed(-inner.value)
            if isinstance(inner, ast.Name) and inner.id == "inf":
                return self._typed(float("-inf"))
        return self.generic_visit(node)


def typed_expression(expr: str, dtype, vectorise: bool = True) -> str:
    """``expr`` (Python/Numba syntax) with its numeric literals typed as ``dtype``;
    ``vectorise``: with vmath's functions for ``math.*`` (the CPU target; CUDA keeps
    ``math.*``, which Numba maps to libdevice)."""
    tree = _TypedLiterals(dtype, vectorise).visit(ast.parse(expr, mode="eval"))
    return ast.unparse(ast.fix_missing_locations(tree))


def scalar_expression(node, operands, vectorise: bool = True) -> str:
    """The node's scalar expression over operand variable names, literals typed by the
    dtype the op computes in (its operands' dtype; the output's for ops with no inputs);
    ``vectorise``: see ``typed_expression``."""
    op = node.op
    if op.scalar is None:
        raise ValueError(f"op {op.name} has no scalar expression")
    compute = node.inputs[-1].dtype if node.inputs else node.out.dtype
    return typed_expression(op.scalar(*operands, **node.attrs), compute, vectorise)


def emit_elementwise(node, k) -> None:
    out_shape = node.out.shape
    if numel(out_shape) == 0:
        return  # nothing to compute (and no element to hoist)
    strides = [broadcast_strides(v.shape, out_shape) for v in node.inputs]
    shape, strides = coalesce(out_shape, strides + [c_strides(out_shape)])
    *in_strides, out_strides = strides
    operands = [k.fresh(f"x{i}") for i in range(len(node.inputs))]
    expr = scalar_expression(node, operands)
    # A one-element operand (all strides 0) is loaded once, before the loops.
    hoisted = [i for i, st in enumerate(in_strides) if not any(st)]
    for i in hoisted:
        k.line(f"{operands[i]} = {k.ins[i]}[0]")
    with loop_nest(k, shape, parallel=numel(out_shape) >= parallel_min_elements()) as idx:
        for i, st in enumerate(in_strides):
            if i not in hoisted:
                k.line(f"{operands[i]} = {k.ins[i]}[{k.at(affine(0, zip(idx, st)))}]")
        k.line(f"{k.out}[{k.at(affine(0, zip(idx, out_strides)))}] = {expr}")


@emits("detach", may_alias=True)
def emit_detach(node, k) -> None:
    k.alias(0)


def emits_generic(op) -> bool:
    """Whether ``op`` is handled by the generic elementwise emitter."""
    return op.kind == "elementwise" and op.scalar is not None
