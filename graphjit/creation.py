"""Tensor creation functions with PyTorch's signatures."""
from __future__ import annotations

import math

import numpy as np

from . import _tracing, dtypes
from . import random as _random
from .autograd_tape import no_grad
from .dtypes import DType
from .errors import DTypeError
from .tensor import Tensor, _finish, _refuse_leaf
from .tensor import tensor  # noqa: F401  (re-exported)
from .tensor_data import shape_args


def _refuse_random(name: str) -> None:
    """Random draws while tracing would be made once and baked into the program."""
    tracer = _tracing.active()
    if tracer is not None:
        tracer.refuse(f"{name}() (random numbers drawn while tracing would be the same at every "
                      "call)", "draw them outside the compiled function and pass them in as an "
                      "argument")


def _float(dtype: DType | None) -> DType:
    return dtype or dtypes.get_default_dtype()


def zeros(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    return _finish(np.zeros(shape_args(size), dtype=_float(dtype).np), requires_grad, device)


def ones(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    return _finish(np.ones(shape_args(size), dtype=_float(dtype).np), requires_grad, device)


def empty(*size, dtype=None, requires_grad=False, device=None) -> Tensor:
    # (Zeros while tracing: uninitialised values could be anything, and these are fusable.)
    make = np.zeros if _tracing.active() is not None else np.empty
    return _finish(make(shape_args(size), dtype=_float(dtype).np), requires_grad, device)


def full(size, fill_value, dtype=None, requires_grad=False, device=None) -> Tensor:
    if dtype is None:
        dtype = dtypes.scalar_dtype(fill_value)
    return _finish(np.full(shape_args((size,)), fill_value, dtype=dtype.np), requires_grad, device)


def eye(n, m=None, dtype=None, requires_grad=False, device=None) -> Tensor:
    return _finish(np.eye(n, m, dtype=_float(dtype).np), requires_grad, device)


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = dtypes.int64 if ints else dtypes.get_default_dtype()
    return _finish(np.arange(start, end, step, dtype=dtype.np), requires_grad, device)


def linspace(start, end, steps, dtype=None, requires_grad=False, device=None) -> Tensor:
    return _finish(np.linspace(start, end, steps, dtype=_float(dtype).np), requires_grad, device)


def _random_float(dtype: DType | None, name: str) -> DType:
    dt = _float(dtype)
    if not dt.is_floating_point:
        raise DTypeError(f"{name} draws floating-point values; dtype {dt.name} is not floating "
                         "point (use randint for integers)", op=name)
    return dt


def _random_result(value, requires_grad, device):
    """A draw (``graphjit.random.uniform`` and ops on it) as a new leaf on ``device``."""
    if _tracing.active() is not None:
        if requires_grad:
            _refuse_leaf(_tracing.active())
        return value
    out = Tensor._wrap(value._data)
    if device is not None:
        out = out.to(device)
    if requires_grad:
        out.requires_grad = True
    return out


def randn(*size, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    """Standard normal numbers (Box-Muller on two uniform draws from ``generator``)."""
    from .ops import api
    dt = _random_float(dtype, "randn")
    shape = shape_args(size)
    u = _random.uniform((2,) + shape, dt, generator)
    with no_grad():
        radius = api.sqrt(api.mul(api.log(api.sub(1.0, u[0])), -2.0))  # 1 - u in (0, 1]
        z = api.mul(radius, api.cos(api.mul(u[1], 2.0 * math.pi)))
    return _random_result(z, requires_grad, device)


def rand(*size, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    """Uniform numbers in [0, 1) from ``generator`` (the default one)."""
    dt = _random_float(dtype, "rand")
    return _random_result(_random.uniform(shape_args(size), dt, generator), requires_grad,
                          device)


def randint(low, high=None, size=(), dtype=None, device=None, generator=None) -> Tensor:
    """Integers in [low, high) (``torch.randint(high, size)`` or ``(low, high, size)``)."""
    from .ops import api
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    u = _random.uniform(shape_args((size,)), dtypes.float64, generator)
    with no_grad():
        # u < 1 is a multiple of 2**-53: u * n rounds below n, and truncation is floor here.
        k = api.add(api.cast(api.mul(u, float(high - low)), dtypes.int64), int(low))
        if dtype is not None and dtype is not dtypes.int64:
            k = api.cast(k, dtype)
    return _random_result(k, False, device)


def randperm(n, dtype=None, device=None, generator=None) -> Tensor:
    _refuse_random("randperm")
    perm = (generator or _random.default_generator).host().permutation(n)
    return _finish(perm.astype((dtype or dtypes.int64).np), False, device)


def _like(fn):
    def like(t: Tensor, dtype=None, requires_grad=False, device=None, **kwargs):
        return fn(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad,
                  device=t.device if device is None else device, **kwargs)
    like.__name__ = fn.__name__ + "_like"
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
randn_like = _like(randn)
rand_like = _like(rand)


def full_like(t: Tensor, fill_value, dtype=None, requires_grad=False, device=None) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, requires_grad=requires_grad,
                device=t.device if device is None else device)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``arr`` (which must be float32/float64/int64/bool)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(arr).__name__}")
    try:
        dtypes.from_numpy(arr.dtype)
    except DTypeError:
        raise DTypeError(f"from_numpy: can't share memory with a {arr.dtype} array; graphjit "
                         "supports float32, float64, int64 and bool (convert with arr.astype)") from None
    # A subclass (np.memmap, a masked array) is seen through as a plain ndarray: a tensor's
    # device is its array's type ([Devices] in graphjit/devices.py).
    return Tensor._wrap(arr if type(arr) is np.ndarray else arr.view(np.ndarray))


def as_tensor(data, dtype=None) -> Tensor:
    if isinstance(data, Tensor) and (dtype is None or data.dtype is dtype):
        return data
    if isinstance(data, np.ndarray) and dtype is None:
        try:
            return from_numpy(data)
        except DTypeError:
            pass
    return tensor(data, dtype=dtype)
