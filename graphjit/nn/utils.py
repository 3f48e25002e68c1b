"""``graphjit.nn.utils``: gradient clipping and parameter <-> vector helpers.

The clipping functions are tensor expressions applied with in-place ops under ``no_grad``
(no host round trip), so they also trace inside a compiled training step.
"""
from __future__ import annotations

import math

from .. import _tracing, creation
from ..autograd_tape import no_grad
from ..errors import GraphjitError, ShapeError
from ..ops import api
from ..tensor import Tensor


def _as_list(parameters):
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def _norm(t, norm_type: float):
    if norm_type == math.inf:
        return api.amax(api.abs(t))
    if norm_type == 2.0:
        return api.sqrt(api.sum(api.mul(t, t)))
    return api.pow(api.sum(api.pow(api.abs(t), norm_type)), 1.0 / norm_type)


def _compiled(fn):
    """``fn`` compiled once per process (see [Compiled eager steps] in optim/optimizer.py)."""
    cf = _COMPILED.get(fn)
    if cf is None:
        cf = _COMPILED[fn] = _tracing.compiler()(fn)
        cf.warn_after = 10 ** 6
    return cf


_COMPILED: dict = {}


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, compiled: bool = True):
    """Scale the gradients of ``parameters`` in place so that their joint ``norm_type``-norm
    is at most ``max_norm``; returns the norm they had before (a 0-d tensor).

    Eagerly it runs as one compiled program over all the gradients (``compiled=False``: op
    by op); inside a compiled function it becomes part of that function's program. With
    ``error_if_nonfinite`` the norm is checked on the host before anything is scaled, so
    that step runs op by op."""
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive, got {norm_type}")
    params = _as_list(parameters)
    if not any(p.grad is not None for p in params):
        return creation.tensor(0.0)
    if compiled and not error_if_nonfinite and _tracing.active() is None:
        return _compiled(_clip_norm)(params, float(max_norm), norm_type, False)
    return _clip_norm(params, float(max_norm), norm_type, error_if_nonfinite)


def _clip_norm(params, max_norm, norm_type, error_if_nonfinite):
    grads = [p.grad for p in params if p.grad is not None]
    with no_grad():
        norms = [_norm(g, norm_type) for g in grads]
        dtype = norms[0].dtype
        total = _norm(api.stack([n if n.dtype is dtype else api.cast(n, dtype) for n in norms]),
                      norm_type)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise GraphjitError(f"the total {norm_type}-norm of the gradients is {total.item()}; "
                                "pass error_if_nonfinite=False to clip anyway",
                                op="clip_grad_norm_")
        coef = api.clamp(api.div(max_norm, api.add(total, 1e-6)), max=1.0)
        for g in grads:
            g.mul_(coef if coef.dtype is g.dtype else api.cast(coef, g.dtype))
    return total


def clip_grad_value_(parameters, clip_value: float, compiled: bool = True) -> None:
    """Clamp every gradient of ``parameters`` into ``[-clip_value, clip_value]`` in place
    (one compiled program eagerly; ``compiled=False``: op by op)."""
    params = _as_list(parameters)
    if compiled and _tracing.active() is None and any(p.grad is not None for p in params):
        _compiled(_clip_value)(params, float(clip_value))
    else:
        _clip_value(params, float(clip_value))


def _clip_value(params, clip_value):
    with no_grad():
        for p in params:
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-d tensor."""
    return api.cat([api.reshape(p, (-1,)) for p in _as_list(parameters)], 0)


def vector_to_parameters(vec, parameters) -> None:
    """Copy consecutive slices of the 1-d ``vec`` into ``parameters`` (in place)."""
    params = _as_list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ShapeError(f"vector of shape {tuple(vec.shape)} does not hold the {total} values of "
                         "the parameters", op="vector_to_parameters")
    start = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(api.reshape(vec[start:start + n], tuple(p.shape)))
            start += n
