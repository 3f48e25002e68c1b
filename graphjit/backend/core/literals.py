"""graphjit dtypes and values as generated source, so float32 code stays float32."""
from __future__ import annotations

import math

import numpy as np

_NP_NAME = {"float32": "np.float32", "float64": "np.float64", "int64": "np.int64",
            "bool": "np.bool_"}


def np_type(dtype) -> str:
    """The NumPy scalar type of a graphjit dtype, as generated source (``np.float32``)."""
    return _NP_NAME[dtype.name]


def literal(value, dtype) -> str:
    """``value`` as a source literal of ``dtype``.

    ``0.5`` -> ``np.float32(0.5)`` for f32 and ``0.5`` for f64 (a Python float is float64
    in Numba); ints for i64; ``True``/``False`` for bool; ``np.inf``/``np.nan`` spelled out.
    """
    if dtype.name == "bool":
        return repr(bool(value))
    if dtype.name == "int64":
        if isinstance(value, float) and not math.isfinite(value):
            return _float_text(value)  # no int64 inf: keep the float (NumPy would raise)
        return repr(int(value))
    text = _float_text(float(value))
    return f"np.float32({text})" if dtype.name == "float32" else text


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))


def min_value(dtype) -> str:
    """The identity of ``max`` for ``dtype`` as a literal."""
    if dtype.is_floating_point:
        return literal(-math.inf, dtype)
    return repr(int(np.iinfo(np.int64).min))


def max_value(dtype) -> str:
    """The identity of ``min`` for ``dtype`` as a literal."""
    if dtype.is_floating_point:
        return literal(math.inf, dtype)
    return repr(int(np.iinfo(np.int64).max))
