"""What both targets' reductions share: folding a value into an accumulator, the
accumulator's start value, and argmax's comparison."""
from __future__ import annotations

from .literals import literal, max_value, min_value


def combine(op_name, target, value) -> list:
    """Statements folding ``value`` into ``target``. amax/amin propagate NaN like NumPy:
    once the accumulator is NaN no comparison is true, so it stays NaN."""
    if op_name == "sum":
        return [f"{target} += {value}"]
    cmp = ">" if op_name == "amax" else "<"
    return [f"if {value} {cmp} {target} or {value} != {value}:", f"    {target} = {value}"]


def identity(op_name, dtype, accumulate: bool = False) -> str:
    """The start value of a reduction of ``dtype`` values; ``accumulate``: a scalar
    accumulator of the CPU's, where float32 sums accumulate in float64 (a Python float is
    float64 in Numba)."""
    if op_name == "sum":
        if not dtype.is_floating_point:
            return "0"
        return "0.0" if accumulate else literal(0.0, dtype)
    return min_value(dtype) if op_name == "amax" else max_value(dtype)


def argmax_step(k, value: str, best: str, at: str, position: str) -> None:
    """``best, at = value, position`` where ``value`` beats ``best``: the first maximum
    wins; a NaN is the maximum and the first NaN wins (NumPy's argmax)."""
    with k.block(f"if {value} > {best} or ({value} != {value} and {best} == {best}):"):
        k.line(f"{best} = {value}")
        k.line(f"{at} = {position}")
