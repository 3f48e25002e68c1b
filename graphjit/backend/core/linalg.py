"""What both targets' matrix products share: the sizes of ``a @ b`` and the element offsets
of each operand's matrix per batch index (broadcast batch dims read one matrix)."""
from __future__ import annotations

from .indexing import broadcast_strides


def matmul_sizes(node):
    """``(m, k, n, batch shape)`` of a matmul node: ``[*batch, m, k] @ [*batch, k, n]``."""
    a, b = node.inputs
    return a.shape[-2], a.shape[-1], b.shape[-1], tuple(node.out.shape)[:-2]


def batch_strides(a, b, batch, m, kk, n) -> tuple:
    """Per batch dim, the element stride of ``a``'s and ``b``'s matrices (0 where one
    operand broadcasts along it)."""
    sa = tuple(s * m * kk for s in broadcast_strides(a.shape[:-2], batch))
    sb = tuple(s * kk * n for s in broadcast_strides(b.shape[:-2], batch))
    return sa, sb

