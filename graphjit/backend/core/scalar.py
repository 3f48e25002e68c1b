"""An op's scalar expression (``OpDef.scalar``) as the source a kernel inlines.

Both targets inline the registry's text, with its numeric literals typed by the dtype the
op computes in. Where a target needs something else it says so in one place: the CPU
replaces ``math.exp`` and friends by its vectorisable versions (``calls``, see
backend/cpu/vmath.py), the CUDA target overrides a few ops' expressions
(``overrides``, see backend/cuda/elementwise.py); ``graphjit describe OP`` lists both.
"""
from __future__ import annotations

import ast

from .literals import literal


class _TypedLiterals(ast.NodeTransformer):
    """Rewrite the numeric literals of a scalar expression as literals of one dtype.

    Numba types a bare ``0.5`` as float64, which would turn float32 arithmetic into
    float64 (slower, and not what NumPy computes); ``np.float32(0.5)`` keeps it float32.
    ``inf``/``nan`` (how ``repr`` prints them in attributes) become ``np.inf``/``np.nan``.
    ``calls(name, dtype name)`` may rename a ``math.<f>`` call (``name`` is ``"math.<f>"``).
    """

    def __init__(self, dtype, calls=None):
        self.dtype = dtype
        self.calls = calls

    def _typed(self, value):
        return ast.parse(literal(value, self.dtype), mode="eval").body

    def visit_Constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            return node
        if self.dtype.name == "bool":
            return node
        return self._typed(node.value)

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        if (self.calls is not None and isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name) and f.value.id == "math"):
            name = self.calls(f"math.{f.attr}", self.dtype.name)
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


def typed_expression(expr: str, dtype, calls=None) -> str:
    """``expr`` (Python/Numba syntax) with its numeric literals typed as ``dtype``, and its
    ``math.*`` calls renamed by ``calls`` (see ``_TypedLiterals``)."""
    tree = _TypedLiterals(dtype, calls).visit(ast.parse(expr, mode="eval"))
    return ast.unparse(ast.fix_missing_locations(tree))


def compute_dtype(node):
    """The dtype a node's scalar expression computes in: its operands' (the last one's),
    the output's for ops with no inputs."""
    return node.inputs[-1].dtype if node.inputs else node.out.dtype


def scalar_expression(node, operands, calls=None, overrides=None) -> str:
    """The node's scalar expression over operand variable names, literals typed by
    ``compute_dtype``; ``overrides``: op name -> a target's own expression function, used
    instead of ``OpDef.scalar``; ``calls``: see ``typed_expression``."""
    op = node.op
    scalar = (overrides or {}).get(op.name, op.scalar)
    if scalar is None:
        raise ValueError(f"op {op.name} has no scalar expression")
    return typed_expression(scalar(*operands, **node.attrs), compute_dtype(node), calls)
