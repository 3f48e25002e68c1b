"""Ops along one dim that neither fuse elementwise nor reduce like a sum: ``cumsum`` (a scan),
``prod`` (a product over dims) and ``argsort`` (an order). ``sort`` and ``topk`` are
composites of these (graphjit/ops/composite.py).

Each runs as a kernel of its own in compiled programs (``backend/*/scan.py``): a loop along the
dim per row, in the order NumPy adds or multiplies, so compiled results are eager's bits.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import ShapeError
from ..shapes import TensorType, numel, reduced_shape
from . import api
from .registry import OpDef, bind, get, register


def _dim_ok(op, x, dim):
    if not 0 <= dim < max(len(x.shape), 1):
        raise ShapeError(f"dim {dim} is out of range for shape {x.shape}", op=op)


def _widened(dtype):
    """A sum or product of ints or bools is int64, as in PyTorch."""
    return dtype if dtype.is_floating_point else dtypes.int64


# ---- cumsum ---------------------------------------------------------------------------------

def _cumsum_infer(x: TensorType, dim, reverse) -> TensorType:
    _dim_ok("cumsum", x, dim)
    return TensorType(tuple(x.shape), _widened(x.dtype))


def _cumsum(x, dim, reverse):
    dtype = x.dtype if x.dtype.kind == "f" else np.int64
    if x.ndim == 0:
        return x.astype(dtype)
    if reverse:
        return np.flip(np.cumsum(np.flip(x, dim), axis=dim, dtype=dtype), dim).copy()
    return np.cumsum(x, axis=dim, dtype=dtype)


def _vjp_cumsum(g, out, x, dim, reverse):
    # Each input element reaches every later (earlier, reversed) output: the scan backwards.
    return (cumsum(g, dim, not reverse),)


def _scan_cost(out: TensorType, x: TensorType, **attrs):
    return numel(x.shape), (numel(x.shape) + numel(out.shape)) * out.dtype.itemsize


register(OpDef(name="cumsum", kind="opaque", infer=_cumsum_infer, impl=_cumsum, vjp=_vjp_cumsum,
               saves=(), cost=_scan_cost))


def cumsum(x, dim, reverse=False):
    return bind(get("cumsum"), x, dim=int(dim), reverse=bool(reverse))


# ---- prod -------------------------------------------------------------------------------------

def _prod_infer(x: TensorType, dims, keepdim) -> TensorType:
    if len(set(dims)) != len(dims) or any(not 0 <= d < len(x.shape) for d in dims):
        raise ShapeError(f"dims {tuple(dims)} are not distinct dims of shape {x.shape}", op="prod")
    return TensorType(reduced_shape(x.shape, dims, keepdim), _widened(x.dtype))


def _prod(x, dims, keepdim):
    dtype = x.dtype if x.dtype.kind == "f" else np.int64
    return np.prod(x, axis=dims, keepdims=keepdim, dtype=dtype)


def _vjp_prod(g, out, x, dims, keepdim):
    # d prod / d x_i is the product of the others: out / x_i where no element is zero; where
    # exactly one is, the product of the non-zero ones at the zero and 0 elsewhere; with two
    # or more zeros, 0 everywhere (PyTorch's gradient, never 0 / 0).
    keep = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
    zero = api.eq(x, 0.0)
    zeros = api.sum(api.cast(zero, x.dtype), dims, keepdim=True)
    nonzero_prod = bind_prod(api.where(zero, 1.0, x), dims, True)
    g_k = api.reshape(g, keep)
    others = api.where(api.eq(zeros, 0.0), api.div(nonzero_prod, api.where(zero, 1.0, x)),
                       api.where(api.logical_and(api.eq(zeros, 1.0), zero), nonzero_prod, 0.0))
    return (api.mul(api.expand(g_k, tuple(x.shape)), others),)


register(OpDef(name="prod", kind="opaque", infer=_prod_infer, impl=_prod, vjp=_vjp_prod,
               saves=(0,), cost=_scan_cost))


def bind_prod(x, dims, keepdim):
    return bind(get("prod"), x, dims=tuple(dims), keepdim=bool(keepdim))


# ---- argsort ----------------------------------------------------------------------------------

def _argsort_infer(x: TensorType, dim, descending) -> TensorType:
    _dim_ok("argsort", x, dim)
    return TensorType(tuple(x.shape), dtypes.int64)


def _argsort(x, dim, descending):
    """A stable order along ``dim`` with NaN largest, as PyTorch's sort: descending is the
    reverse of the ascending order of the reversed tensor, which keeps equal elements in
    their order and puts NaN first."""
    if x.ndim == 0:
        return np.zeros((), np.int64)
    if not descending:
        return np.argsort(x, axis=dim, kind="stable").astype(np.int64)
    n = x.shape[dim]
    order = np.argsort(np.flip(x, dim), axis=dim, kind="stable")
    return (n - 1 - np.flip(order, dim)).astype(np.int64)


register(OpDef(name="argsort", kind="opaque", infer=_argsort_infer, impl=_argsort, vjp=None,
               no_grad_reason="indices (int64)", cost=_scan_cost))


def argsort(x, dim, descending=False):
    return bind(get("argsort"), x, dim=int(dim), descending=bool(descending))
