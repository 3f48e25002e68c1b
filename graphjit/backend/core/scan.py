"""What both targets' scans and orders share (graphjit/ops/scan.py): the rows an op walks
along its dim, how an element is loaded into the accumulator's dtype, and the order that
``argsort`` sorts by.

A tensor seen along ``dim`` is ``(outer, n, inner)``: ``outer * inner`` rows of ``n``
elements, element ``r`` of row ``(a, b)`` at ``a * n * inner + r * inner + b`` (a 0-d
tensor is one row of one element).
"""
from __future__ import annotations

from ...shapes import numel
from .literals import np_type


def rows(shape, dim) -> tuple:
    """``(outer, n, inner)`` of ``shape`` along ``dim`` (see above)."""
    shape = tuple(shape) or (1,)
    return numel(shape[:dim]), shape[dim], numel(shape[dim + 1:])


def widened(value: str, in_dtype, out_dtype) -> str:
    """``value`` (an element of ``in_dtype``) as the accumulator's ``out_dtype``: bools
    and ints sum and multiply in int64, as eager mode's NumPy does."""
    if in_dtype is out_dtype:
        return value
    return f"{np_type(out_dtype)}({value})"


def before(a: str, b: str, descending: bool) -> str:
    """An expression true when ``a`` sorts strictly before ``b``: NaN counts as larger than
    every number (NumPy's and PyTorch's order), equal values (NaNs among them) are neither
    before the other, so a stable sort keeps them in their order. Descending puts the
    larger first, NaN first of all."""
    if descending:
        return f"({a} > {b} or ({a} != {a} and {b} == {b}))"
    return f"({a} < {b} or ({b} != {b} and {a} == {a}))"
