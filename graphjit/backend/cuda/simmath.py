"""IEEE results for Python's ``math`` in kernels run by Numba's CUDA simulator.

A kernel's scalar code calls ``math.log``, ``math.sqrt``, ``math.exp``... On a GPU these are
libdevice's functions, which follow IEEE 754: ``log(-1)`` is NaN, ``log(0)`` is -inf,
``exp(1000)`` is inf. The simulator runs the kernel's Python as Python, where the same calls
raise ``ValueError: math domain error`` or ``OverflowError``: a program that is correct on
the GPU (``isnan(log(x))``, ``nan_to_num``) fails on the simulator. ``compile_graph`` gives
each kernel module run by the simulator this object as its ``math`` (the module's text, and
so its cache file, is the GPU's): every function is the stdlib's, and where that raises,
NumPy's float64 function of the same arguments gives the IEEE result instead.
"""
from __future__ import annotations

import math

import numpy as np

# math's name -> NumPy's, where they differ.
_NUMPY_NAMES = {"pow": "power", "atan2": "arctan2", "acos": "arccos", "asin": "arcsin",
                "atan": "arctan", "acosh": "arccosh", "asinh": "arcsinh", "atanh": "arctanh",
                "fabs": "abs", "gamma": None, "lgamma": None, "erf": None, "erfc": None}


def _ieee(name, f):
    fallback = _NUMPY_NAMES.get(name, name)
    np_f = getattr(np, fallback, None) if fallback else None
    if np_f is None:
        return f

    def call(*args):
        try:
            return f(*args)
        except TypeError:  # math.trunc of a NumPy float32 (which has no __trunc__)
            if all(type(a) is float for a in args):
                raise
            return call(*(float(a) for a in args))
        except (ValueError, OverflowError):
            with np.errstate(all="ignore"):
                return float(np_f(*(np.float64(a) for a in args)))
    call.__name__ = name
    return call


class SimulatorMath:
    """Python's ``math`` module with IEEE results where it would raise (see above)."""

    def __init__(self):
        for name in dir(math):
            if not name.startswith("_"):
                value = getattr(math, name)
                setattr(self, name, _ieee(name, value) if callable(value) else value)


IEEE_MATH = SimulatorMath()
