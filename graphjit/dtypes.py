"""The four dtypes graphjit supports, their short names and the promotion rules.

Promotion follows PyTorch: categories bool < integer < floating; inside a category the
wider type wins. Python scalars are "weak" (``float32_tensor * 2.0`` stays float32) and
0-d tensors rank below dimensioned tensors of the same category.
"""
from __future__ import annotations

import numpy as np

from .errors import DTypeError


class DType:
    __slots__ = ("name", "np", "short", "category", "itemsize")

    def __init__(self, name: str, np_dtype, short: str, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.short = short
        self.category = category  # 0 bool, 1 integer, 2 floating
        self.itemsize = self.np.itemsize

    @property
    def is_floating_point(self) -> bool:
        return self.category == 2

    def __repr__(self) -> str:
        return f"graphjit.{self.name}"

    def __reduce__(self):
        return (from_name, (self.name,))


bool_ = DType("bool", np.bool_, "b8", 0)
int64 = DType("int64", np.int64, "i64", 1)
float32 = DType("float32", np.float32, "f32", 2)
float64 = DType("float64", np.float64, "f64", 2)

ALL = (bool_, int64, float32, float64)
_BY_NAME = {d.name: d for d in ALL}
_BY_SHORT = {d.short: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}

_default_float = float32


def from_name(name: str) -> DType:
    return _BY_NAME[name]


def from_short(short: str) -> DType:
    return _BY_SHORT[short]


def from_numpy(np_dtype, *, convert: bool = False) -> DType:
    """Map a NumPy dtype to a graphjit dtype.

    With ``convert`` other integer widths map to int64 and other float widths to the
    default float dtype (used when copying data in); without it they are an error
    (used by ``from_numpy``, which must share memory and so cannot convert).
    """
    np_dtype = np.dtype(np_dtype)
    found = _BY_NP.get(np_dtype)
    if found is not None:
        return found
    if convert:
        if np_dtype.kind in "iu":
            return int64
        if np_dtype.kind == "f":
            return _default_float
        if np_dtype.kind == "b":
            return bool_
    raise DTypeError(f"unsupported NumPy dtype {np_dtype}; graphjit supports "
                     "float32, float64, int64 and bool")


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(dtype: DType) -> None:
    global _default_float
    if not isinstance(dtype, DType) or not dtype.is_floating_point:
        raise DTypeError(f"set_default_dtype: only float32 or float64 can be the default, got {dtype!r}")
    _default_float = dtype


def promote(a: DType, b: DType) -> DType:
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    return a if a.itemsize >= b.itemsize else b


def scalar_dtype(value) -> DType:
    """The dtype a Python scalar takes when it meets no tensor of its category."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default_float
    raise DTypeError(f"cannot use {type(value).__name__} value {value!r} as a tensor operand")


def result_type(operands) -> DType:
    """Promote ``(dtype, tier)`` pairs; tier 2: tensor with dims, 1: 0-d tensor, 0: Python scalar."""
    result = None
    for tier in (2, 1, 0):
        dts = [d for d, t in operands if t == tier]
        if not dts:
            continue
        d = dts[0]
        for other in dts[1:]:
            d = promote(d, other)
        if result is None:
            result = d
        elif d.category > result.category:
            # A scalar of a higher category over tensors takes that category's default dtype
            # (int tensor * 0.5 is float32), also a float64 optimizer option while tracing.
            result = _default_float if tier == 0 and d.is_floating_point else d
    return result
