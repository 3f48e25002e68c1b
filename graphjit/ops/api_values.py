"""Values and dtype promotion, the bottom of graphjit.ops.api: what a value is, constants and
filled values, and the promotion of mixed operands (inserting explicit ``cast`` ops).

api_shape.py, api_index.py and api.py build on these; callers find them as ``api.X``.
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import dtypes
from ..dtypes import DType
from ..errors import DTypeError
from .registry import bind, current_interpreter, get


def is_value(x) -> bool:
    return isinstance(getattr(x, "dtype", None), DType)


def _interp():
    return current_interpreter()


def constant(data, dtype: DType | None = None):
    """A value holding ``data`` (Python scalars, lists, NumPy arrays)."""
    arr = np.asarray(data)
    if dtype is None:
        dtype = dtypes.from_numpy(arr.dtype, convert=True)
    return _interp().constant(np.asarray(arr, dtype=dtype.np))


def python_kind(dtype: DType):
    """The Python type of ``dtype``'s values: float, int or bool."""
    return float if dtype.is_floating_point else int if dtype.category == 1 else builtins.bool


def full(shape, value, dtype: DType):
    return bind(get("full"), shape=tuple(int(s) for s in shape), value=python_kind(dtype)(value),
                dtype=dtype)


def zeros(shape, dtype: DType):
    return full(shape, 0, dtype)


def zeros_like(x):
    return full(x.shape, 0, x.dtype)


def ones_like(x):
    return full(x.shape, 1, x.dtype)


# ---- operands and promotion -----------------------------------------------------------------

def _operand_info(x):
    """(dtype, tier) of an operand: tier 2 = tensor with dims, 1 = 0-d tensor, 0 = Python scalar
    (also a value that stands for one: an optimizer option while tracing, ``_weak_scalar``)."""
    if is_value(x):
        if getattr(x, "_weak_scalar", False):
            return x.dtype, 0
        return x.dtype, (2 if len(x.shape) else 1)
    if isinstance(x, (bool, int, float, np.bool_, np.integer, np.floating)):
        return dtypes.scalar_dtype(x), 0
    arr = np.asarray(x)
    if arr.dtype == object:
        raise DTypeError(f"cannot use {type(x).__name__} as a tensor operand")
    return dtypes.from_numpy(arr.dtype, convert=True), (2 if arr.ndim else 1)


def _as(x, dtype: DType):
    if isinstance(x, np.ndarray) and x.ndim:
        # A user's array keeps its identity (a tracer lifts it as an input, so in-place
        # changes to it are seen on later calls); the dtype conversion is a cast op.
        x = constant(x)
    if is_value(x):
        return x if x.dtype is dtype else bind(get("cast"), x, dtype=dtype)
    return constant(x, dtype)


def _promote(*xs, floating: bool = False):
    dtype = dtypes.result_type([_operand_info(x) for x in xs])
    if floating and not dtype.is_floating_point:
        dtype = dtypes.get_default_dtype()
    return [_as(x, dtype) for x in xs]


def _value(x):
    return x if is_value(x) else constant(x)


def cast(x, dtype: DType):
    return _as(_value(x), dtype)
