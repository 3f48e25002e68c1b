"""Rounding, scan and order specs (graphjit/ops/scan.py and the rounding ops): floor, ceil,
round, trunc, frac; cumsum; prod; sort, argsort and topk.

Rounding and sorting are kinks everywhere: a value one ulp away rounds or sorts the other
way. So they apply to exact values only (input data moved around without rounding, the
same bits in every mode), scaled by powers of two (exact too); ties among exact values
(inputs are multiples of 1/128) are fine, both modes sorting stably and rounding half to
even.
"""
from __future__ import annotations

import math

from ..generator import SkipSpec
from . import _c, _dim, spec


def _exact(g, pred=None):
    x = g.float_var(lambda v: v.exact and v.mag <= 100 and (pred is None or pred(v)),
                    prefer_exact=True)
    if not x.exact or x.mag > 100 or (pred is not None and not pred(x)):
        raise SkipSpec("no exact value")
    return x


@spec("rounding", ("floor", "ceil", "round", "trunc"), weight=0.7)
def _rounding(g):
    x = _exact(g)
    fn = g.r.choice(["floor", "ceil", "round", "trunc", "frac"])
    scale = g.r.choice([1, 2, 4, 8])  # x * 8 is a multiple of 1/16: ties for round
    arg = "{a0}" if scale == 1 else f"({{a0}} * {scale})"
    code = _c(g, f"{{out}} = gj.{fn}({arg})", f"{{out}} = {arg}.{fn}()")
    if fn == "round" and g.r.random() < 0.3:
        # decimals: x * 10 is exact on the 1/128 grid; the division rounds alike everywhere
        code, scale = "{out} = gj.round({a0}, decimals=1)", 1
    mag = 1.0 if fn == "frac" else x.mag * scale + 1.0
    # The same bits in every mode, but not "exact" (specs assume exact values keep 1/16
    # away from 0, and these are whole numbers, 0 among them).
    g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="rounding", mag=mag)


@spec("cumsum", ("cumsum",), weight=0.8)
def _cumsum(g):
    if g.r.random() < 0.2:  # a running count of a mask: int64, no gradient
        x = _exact(g, lambda v: v.shape != ())
        d = _dim(g, x)
        g.emit(f"{{out}} = ({{a0}} > 0).cumsum({d})", [x], shape=x.shape, dtype="int64",
               spec="cumsum", grad=False, mag=x.shape[d], exact=True)
        return
    x = g.float_var(lambda v: v.mag <= 100)
    if x.mag > 100:
        raise SkipSpec("cumsum")
    d = _dim(g, x) if x.shape else g.r.choice([0, -1])
    n = x.shape[d] if x.shape else 1
    code = _c(g, f"{{out}} = {{a0}}.cumsum({d})", f"{{out}} = gj.cumsum({{a0}}, dim={d})",
              f"{{out}} = {{a0}}.flip({d % max(len(x.shape), 1)}).cumsum({d})"
              if x.shape else f"{{out}} = gj.cumsum({{a0}}, {d})")
    g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="cumsum", mag=x.mag * n)


@spec("prod", ("prod", "eq", "where"), weight=0.8)
def _prod(g):
    x = g.float_var(lambda v: v.mag <= 2.5 and v.numel <= 64, prefer_exact=True)
    if x.mag > 2.5 or x.numel > 64:
        raise SkipSpec("prod")
    n_dims = len(x.shape)
    # Zeros in the product (relu of exact values: one, two or more per row) take the
    # gradient's other branches; exact values keep relu's kink on one side everywhere.
    source = "{a0}.relu()" if x.exact and g.r.random() < 0.4 else "{a0}"
    k = g.r.random()
    if n_dims == 0 or k < 0.3:
        dims, code = tuple(range(n_dims)), _c(g, f"{{out}} = {source}.prod()",
                                              f"{{out}} = gj.prod({source})")
        keep = False
    else:
        d = _dim(g, x)
        keep = g.r.random() < 0.4
        dims = (d % n_dims,)
        kd = ", keepdim=True" if keep else ""
        code = _c(g, f"{{out}} = {source}.prod({d}{kd})",
                  f"{{out}} = gj.prod({source}, dim={d}{kd})")
    count = math.prod(x.shape[d] for d in dims) if dims else 1
    shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape) if keep or i not in dims)
    g.emit(code, [x], shape=shape, dtype=x.dtype, spec="prod", mag=max(x.mag, 1.0) ** count)


@spec("sort", ("argsort", "index"), weight=0.8)
def _sort(g):
    x = _exact(g, lambda v: v.shape != ())
    d = _dim(g, x)
    n = x.shape[d]
    desc = g.r.random() < 0.5
    k = g.r.random()
    if k < 0.35:
        code = _c(g, f"{{out}} = {{a0}}.sort({d}, descending={desc}).values",
                  f"{{out}} = gj.sort({{a0}}, dim={d}, descending={desc})[0]")
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="sort", mag=x.mag, lb=x.lb,
               exact=True)
    elif k < 0.7:
        top = g.r.randint(1, n)
        largest = g.r.random() < 0.7
        shape = tuple(top if i == d % len(x.shape) else s for i, s in enumerate(x.shape))
        code = _c(g, f"{{out}} = {{a0}}.topk({top}, {d}, largest={largest}).values",
                  f"{{out}} = gj.topk({{a0}}, {top}, dim={d}, largest={largest})[0]")
        g.emit(code, [x], shape=shape, dtype=x.dtype, spec="sort", mag=x.mag, lb=x.lb,
               exact=True)
    else:
        # The order itself: int64 positions, then the values picked back out by them.
        code = _c(g, f"{{out}} = {{a0}}.argsort({d}, descending={desc})",
                  f"{{out}} = gj.sort({{a0}}, {d}, descending={desc}).indices")
        i = g.emit(code, [x], shape=x.shape, dtype="int64", spec="sort", grad=False,
                   mag=n, exact=True, high=n)
        g.emit(f"{{out}} = {{a0}}.gather({d}, {{a1}})", [x, i], shape=x.shape, dtype=x.dtype,
               spec="sort", mag=x.mag, lb=x.lb, exact=True)
