"""Elementwise ops on CUDA: one thread per element, the op's ``OpDef.scalar`` expression
(the CPU's text, with ``math.*`` left to libdevice) as a one-step fused body (fused.py).

A few ops' registry expressions do not suit CUDA kernels; their CUDA text is registered
here as an override (``EMITTERS.overrides``; ``graphjit describe OP`` shows it), which
``kernel.cuda_scalar`` reads for every fused body.
"""
from __future__ import annotations

from .fused import emit_body, single_op_body
from .kernel import EMITTERS


def _sign(x):
    # ``(x > 0) - (x < 0)`` subtracts bools, which Numba's CUDA target allows but its
    # simulator (NumPy bool scalars) rejects; the branches give the same values, and NaN
    # for NaN as NumPy's sign does.
    return f"(1 if {x} > 0 else (-1 if {x} < 0 else {x}))"


EMITTERS.overrides["sign"] = _sign


# Rounding: NumPy's ufuncs (the registry's ``np.floor``...) are CPU expressions; CUDA's
# ``math.floor``/``ceil``/``trunc`` keep the float type (libdevice's floor, ceil, trunc).
# Each result has the sign of x (floor(-0.0) and ceil(-0.3) are -0.0), which ``copysign``
# says again for the simulator, whose ``math.floor`` returns a Python int (no -0).
def _rounding(name):
    def expression(x):
        return f"math.copysign(math.{name}({x}), {x})"
    expression.__name__ = f"_{name}"
    return expression


for _name in ("floor", "ceil", "trunc"):
    EMITTERS.overrides[_name] = _rounding(_name)


def _round(x):
    # Half to even (np.rint, torch.round) from math alone, so the simulator runs the same
    # text as the GPU: r = floor(x), d = x - r (exact), up where d > 1/2 or d = 1/2 and r
    # is odd; the sign is x's (rint(-0.3) is -0.0). inf and NaN stay themselves (d is NaN).
    r, d = f"math.floor({x})", f"({x} - math.floor({x}))"
    odd = f"math.floor({r} * 0.5) * 2.0 != {r}"
    return f"math.copysign({r} + (1.0 if {d} > 0.5 or ({d} == 0.5 and {odd}) else 0.0), {x})"


EMITTERS.overrides["round"] = _round


@EMITTERS.emits_generic
def emit_elementwise(node, k) -> None:
    emit_body(k, single_op_body(node))
