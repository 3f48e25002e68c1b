"""graphjit: PyTorch-style training code, run eagerly on NumPy with a dynamic autograd tape.

Public names only; the logic lives in the submodules (see README and DESIGN notes).
"""
from __future__ import annotations

import importlib as _importlib

from . import ops as _ops  # noqa: F401  (registers every primitive op)
from . import autograd  # noqa: F401
from .autograd import enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like,
                       linspace, ones, ones_like, rand, rand_like, randint, randn, randn_like,
                       randperm, zeros, zeros_like)
from .devices import device
from .dtypes import float32, float64, get_default_dtype, int64, set_default_dtype
from .dtypes import bool_ as bool  # noqa: A001 - torch.bool
from .dtypes import DType as dtype  # noqa: F401
from .jit import compile  # noqa: A004 - graphjit.compile
from . import dump as _dump  # noqa: F401  (hooks the IR dump into the jit: GRAPHJIT_DUMP=DIR)
from .errors import AutogradError, DTypeError, GraphjitError, ShapeError, TraceError
from .ops.api import (abs, add, amax, amin, argmax, argmin, broadcast_to, cat, chunk, clamp, cos,
                      div, eq, erf, exp, expand, flatten, gather, ge, gelu, gt, le, leaky_relu, log,
                      log1p, log_softmax, logical_and, logical_not, logical_or, logsumexp, lt,
                      matmul, maximum, mean, minimum, mm, mul, narrow, ne, neg, one_hot, permute,
                      pow, relu, reshape, rsqrt, sigmoid, sign, silu, sin, softmax, softplus, split,
                      sqrt, squeeze, stack, std, sub, sum, t, tanh, transpose, unsqueeze, var,
                      where)
from .ops.composite import (addmm, argsort, baddbmm, bmm, ceil, cumsum, diag, dot, einsum, flip,
                            floor, frac, isclose, isfinite, isinf, isnan, masked_fill, mv,
                            nan_to_num, norm, outer, prod, roll, round, sort, square, tile, topk,
                            tril, triu, trunc)
from .random import initial_seed, manual_seed
from .serialization import load, save
from .tensor import Tensor, tensor

clip = clamp
float = float32  # noqa: A001 - torch.float
double = float64
long = int64

__version__ = "0.1.0"

_LAZY = ("nn", "optim", "testing", "cuda", "utils")


def __getattr__(name):
    # nn, optim and testing import on first use (as torch.nn does after `import torch`).
    if name in _LAZY:
        module = _importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'graphjit' has no attribute {name!r}")


def max(input, dim=None, keepdim=False):  # noqa: A001 - torch.max
    return input.max(dim, keepdim) if isinstance(input, Tensor) else tensor(input).max(dim, keepdim)


def min(input, dim=None, keepdim=False):  # noqa: A001 - torch.min
    return input.min(dim, keepdim) if isinstance(input, Tensor) else tensor(input).min(dim, keepdim)


def numel(input) -> int:
    return input.numel()


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def equal(input, other) -> bool:  # noqa: A002 - torch.equal
    """Same shape and the same elements: a Python bool (it reads the data)."""
    return input.equal(other)


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:  # noqa: A002
    """Whether every element is close (``isclose``): a Python bool (it reads the data)."""
    return input.allclose(other, rtol, atol, equal_nan)
