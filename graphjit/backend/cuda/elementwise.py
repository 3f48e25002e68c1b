"""Elementwise ops on CUDA: one thread per element, the op's ``OpDef.scalar`` expression
(the CPU's text, with ``math.*`` left to libdevice) as a one-step fused body (fused.py).

A few ops' registry expressions do not suit CUDA kernels; their CUDA text is registered
here as an override (``EMITTERS.overrides``; ``graphjit describe OP`` shows it).
"""
from __future__ import annotations

from ..core.scalar import scalar_expression
from .kernel import EMITTERS


def _sign(x):
    # ``(x > 0) - (x < 0)`` subtracts bools, which Numba's CUDA target allows but its
    # simulator (NumPy bool scalars) rejects; the branches give the same values, and NaN
    # for NaN as NumPy's sign does.
    return f"(1 if {x} > 0 else (-1 if {x} < 0 else {x}))"


EMITTERS.overrides["sign"] = _sign


def cuda_scalar(step, operands) -> str:
    """The step's scalar expression for a CUDA kernel: the op's ``OpDef.scalar`` text (or
    its override), literals typed, ``math.*`` left to libdevice."""
    return scalar_expression(step, operands, overrides=EMITTERS.overrides)


@EMITTERS.emits_generic
def emit_elementwise(node, k) -> None:
    from .fused import emit_body, single_op_body
    emit_body(k, single_op_body(node))
