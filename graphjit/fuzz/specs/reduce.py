"""Reduction specs (sum, mean, var/std, amax/amin, argmax, logsumexp, softmax), matmul and
linear, and the losses of graphjit.nn.functional."""
from __future__ import annotations

import math

from ..generator import SkipSpec, Var, broadcast, result_dtype
from . import _c, _dim, spec


# ============================================================================================
# Reductions
# ============================================================================================

def _reduce_dims(g, x: Var):
    """(code for the dims argument or "", reduced dims, keepdim)."""
    n = len(x.shape)
    if n == 0 or g.r.random() < 0.25:
        return "", tuple(range(n)), False
    k = g.r.random()
    if k < 0.6 or n == 1:
        d = _dim(g, x)
        dims, arg = (d % n,), f"{d}"
    else:
        dd = sorted(g.r.sample(range(n), 2))
        dims, arg = tuple(dd), f"({dd[0]}, {dd[1]})"
    keep = g.r.random() < 0.4
    return arg + (", keepdim=True" if keep else ""), dims, keep


def _reduced_shape(x: Var, dims, keep) -> tuple:
    return tuple(1 if i in dims else s for i, s in enumerate(x.shape) if keep or i not in dims)


@spec("sum", ("sum",))
def _sum(g):
    x = g.float_var(lambda v: v.shape != ())
    arg, dims, keep = _reduce_dims(g, x)
    n = math.prod(x.shape[d] for d in dims)
    code = _c(g, f"{{out}} = {{a0}}.sum({arg})", f"{{out}} = gj.sum({{a0}}{', ' if arg else ''}"
                                                   f"{'dim=' if arg else ''}{arg})")
    g.emit(code, [x], shape=_reduced_shape(x, dims, keep), dtype=x.dtype, spec="sum",
           mag=x.mag * n, lb=x.lb * n if x.lb else None)


@spec("mean", ("sum", "div"))
def _mean(g):
    x = g.float_var(lambda v: v.shape != ())
    arg, dims, keep = _reduce_dims(g, x)
    code = _c(g, f"{{out}} = {{a0}}.mean({arg})", f"{{out}} = gj.mean({{a0}}{', ' if arg else ''}"
                                                    f"{'dim=' if arg else ''}{arg})")
    g.emit(code, [x], shape=_reduced_shape(x, dims, keep), dtype=x.dtype, spec="mean", mag=x.mag,
           lb=x.lb)


@spec("var_std", ("sum", "sub", "mul", "sqrt"))
def _var_std(g):
    x = g.float_var(lambda v: v.numel >= 2 and v.mag <= 30)
    arg, dims, keep = _reduce_dims(g, x)
    n = math.prod(x.shape[d] for d in dims) if dims else 1
    if n < 2 or x.mag > 30:
        raise SkipSpec("var")
    fn = g.r.choice(["var", "std"])
    extra = g.r.choice(["", "unbiased=False", "correction=0"])
    args = ", ".join(a for a in (arg, extra) if a)
    code = _c(g, f"{{out}} = {{a0}}.{fn}({args})", f"{{out}} = gj.{fn}({{a0}}{', ' if args else ''}"
                                                    f"{args})")
    if "gj." in code and arg and not arg.startswith("("):
        code = code.replace(f"({{a0}}, {arg}", f"({{a0}}, dim={arg}")
    mag = x.mag * x.mag * n / (n - 1) * 4
    g.emit(code, [x], shape=_reduced_shape(x, dims, keep), dtype=x.dtype, spec="var_std",
           mag=math.sqrt(mag) if fn == "std" else mag)


@spec("amax_amin", ("amax", "amin"))
def _amax_amin(g):
    x = g.float_var(lambda v: v.shape != (), prefer_exact=True)
    fn = g.r.choice(["amax", "amin"])
    arg, dims, keep = _reduce_dims(g, x)
    if arg and "(" not in arg and g.r.random() < 0.5:
        code = f"{{out}} = {{a0}}.{'max' if fn == 'amax' else 'min'}({arg})" + \
            g.r.choice([".values", "[0]"])
    elif not arg and g.r.random() < 0.5:
        code = _c(g, f"{{out}} = {{a0}}.{'max' if fn == 'amax' else 'min'}()",
                  f"{{out}} = gj.{'max' if fn == 'amax' else 'min'}({{a0}})")
    else:
        code = _c(g, f"{{out}} = {{a0}}.{fn}({arg})", f"{{out}} = gj.{fn}({{a0}}{', ' if arg else ''}"
                                                       f"{arg})")
    g.emit(code, [x], shape=_reduced_shape(x, dims, keep), dtype=x.dtype, spec="amax_amin",
           mag=x.mag, lb=x.lb, exact=x.exact)


@spec("argmax", ("argmax", "neg"))
def _argmax(g):
    x = g.float_var(lambda v: v.shape != () and v.exact, prefer_exact=True)
    if not x.exact or not x.shape:
        raise SkipSpec("argmax")
    fn = g.r.choice(["argmax", "argmin"])
    if g.r.random() < 0.3:
        g.emit(f"{{out}} = {{a0}}.{fn}()", [x], shape=(), dtype="int64", spec="argmax", grad=False,
               mag=x.numel, exact=True, high=x.numel)
        return
    d = _dim(g, x)
    keep = g.r.random() < 0.3
    code = _c(g, f"{{out}} = {{a0}}.{fn}({d}{', keepdim=True' if keep else ''})",
              f"{{out}} = gj.{fn}({{a0}}, {d}{', keepdim=True' if keep else ''})")
    shape = _reduced_shape(x, (d % len(x.shape),), keep)
    i = g.emit(code, [x], shape=shape, dtype="int64", spec="argmax", grad=False,
               mag=x.shape[d], exact=True, high=x.shape[d])
    # use it: pick those entries back out of x (an index op) when the shapes allow
    if len(x.shape) == 2 and not keep and d % 2 == 1 and g.r.random() < 0.5:
        g.emit("{out} = {a0}[gj.arange({a0}.shape[0], device={dev}), {a1}]", [x, i],
               shape=(x.shape[0],), dtype=x.dtype, spec="argmax", mag=x.mag, exact=x.exact)


@spec("logsumexp", ("exp", "log", "sum", "amax"))
def _logsumexp(g):
    x = g.float_var(lambda v: v.shape != () and v.mag <= 50)
    if x.mag > 50:
        raise SkipSpec("logsumexp")
    d = _dim(g, x)
    keep = g.r.random() < 0.3
    code = _c(g, f"{{out}} = {{a0}}.logsumexp({d}{', keepdim=True' if keep else ''})",
              f"{{out}} = gj.logsumexp({{a0}}, {d}{', keepdim=True' if keep else ''})")
    g.emit(code, [x], shape=_reduced_shape(x, (d % len(x.shape),), keep), dtype=x.dtype,
           spec="logsumexp", mag=x.mag + math.log(x.shape[d]) + 0.01)


@spec("softmax", ("exp", "sum", "div", "amax", "sub"))
def _softmax(g):
    x = g.float_var(lambda v: v.shape != () and v.mag <= 50)
    if x.mag > 50:
        raise SkipSpec("softmax")
    d = _dim(g, x)
    if g.r.random() < 0.5:
        code = _c(g, f"{{out}} = gj.softmax({{a0}}, {d})", f"{{out}} = {{a0}}.softmax({d})",
                  f"{{out}} = F.softmax({{a0}}, dim={d})")
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="softmax", mag=1.0,
               lb=math.exp(-2 * x.mag) / x.shape[d])
    else:
        code = _c(g, f"{{out}} = gj.log_softmax({{a0}}, {d})", f"{{out}} = {{a0}}.log_softmax({d})",
                  f"{{out}} = F.log_softmax({{a0}}, dim={d})")
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="softmax",
               mag=2 * x.mag + math.log(x.shape[d]) + 0.01)


# ============================================================================================
# matmul
# ============================================================================================

@spec("matmul", ("matmul", "reshape"), weight=1.5)
def _matmul(g):
    a = g.float_var(lambda v: 1 <= len(v.shape) <= 3 and v.mag <= 30)
    if not 1 <= len(a.shape) <= 3 or a.mag > 30:
        raise SkipSpec("matmul")
    k = a.shape[-1]
    form = g.r.random()
    if len(a.shape) == 1:
        bshape = g.r.choice([(k,), (k, g.r.choice([2, 3])), (2, k, g.r.choice([1, 3]))])
    elif form < 0.5 or len(a.shape) == 3:
        bshape = (k, g.r.choice([1, 2, 3, 4]))
        if len(a.shape) == 3 and g.r.random() < 0.5:
            bshape = (a.shape[0],) + bshape
    elif form < 0.75:
        bshape = (k,)
    else:
        bshape = (g.r.choice([1, 2]), k, g.r.choice([2, 3]))
    b = g.float_var(lambda v: v.mag <= 30, shape=bshape, new=0.5)
    sa, sb = a.shape, b.shape
    a2 = (1,) + sa if len(sa) == 1 else sa
    b2 = sb + (1,) if len(sb) == 1 else sb
    batch = broadcast(a2[:-2], b2[:-2])
    if batch is None:
        raise SkipSpec("matmul")
    out = batch + (a2[-2], b2[-1])
    if len(sa) == 1:
        out = out[:-2] + out[-1:]
    if len(sb) == 1:
        out = out[:-1]
    code = "{out} = {a0} @ {a1}"
    if len(sa) == 2 and len(sb) == 2:
        code = _c(g, code, "{out} = gj.matmul({a0}, {a1})", "{out} = {a0}.mm({a1})",
                  "{out} = gj.mm({a0}, {a1})")
    g.emit(code, [a, b], shape=out, dtype=result_dtype(a, b), spec="matmul", mag=a.mag * b.mag * k)


@spec("linear", ("matmul", "permute", "add"))
def _linear(g):
    x = g.float_var(lambda v: len(v.shape) in (1, 2) and v.mag <= 30)
    if len(x.shape) not in (1, 2) or x.mag > 30:
        raise SkipSpec("linear")
    n_out = g.r.choice([1, 2, 3])
    w = g.float_var(shape=(n_out, x.shape[-1]), new=0.7, role="param")
    if g.r.random() < 0.6:
        b = g.float_var(shape=(n_out,), new=0.7, role="param")
        code = _c(g, "{out} = F.linear({a0}, {a1}, {a2})", "{out} = {a0} @ {a1}.T + {a2}",
                  "{out} = gj.matmul({a0}, {a1}.t()) + {a2}")
        args = [x, w, b]
        mag = x.mag * w.mag * x.shape[-1] + b.mag
    else:
        code = _c(g, "{out} = F.linear({a0}, {a1})", "{out} = {a0} @ {a1}.mT")
        if len(x.shape) == 1:
            code = "{out} = F.linear({a0}, {a1})"
        args = [x, w]
        mag = x.mag * w.mag * x.shape[-1]
    g.emit(code, args, shape=x.shape[:-1] + (n_out,), dtype=result_dtype(*args), spec="linear",
           mag=mag)


@spec("loss_fn", ("sub", "mul", "sum", "div", "abs"), feature="functional", weight=0.6)
def _loss_fn(g):
    x = g.float_var(lambda v: v.shape != () and v.mag <= 30)
    if not x.shape or x.mag > 30:
        raise SkipSpec("loss_fn")
    y = g.float_var(shape=x.shape, new=0.6)
    fn = g.r.choice(["mse_loss", "l1_loss", "mse_loss_sum", "bce"])
    if fn == "mse_loss_sum":
        code, mag = "{out} = F.mse_loss({a0}, {a1}, reduction='sum')", (x.mag + y.mag) ** 2 * x.numel
    elif fn == "bce":
        code, mag = "{out} = F.binary_cross_entropy_with_logits({a0}, {a1}.sigmoid())", x.mag + 1
    else:
        code, mag = f"{{out}} = F.{fn}({{a0}}, {{a1}})", (x.mag + y.mag) ** 2
    g.emit(code, [x, y], shape=(), dtype=result_dtype(x, y), spec="loss_fn", mag=mag)


@spec("cross_entropy", ("index", "exp", "log", "sum", "amax"), feature="functional", weight=0.6)
def _cross_entropy(g):
    x = g.float_var(lambda v: len(v.shape) == 2 and v.shape[1] >= 2 and v.mag <= 30)
    if len(x.shape) != 2 or x.shape[1] < 2 or x.mag > 30:
        raise SkipSpec("cross_entropy")
    t = g.new_input(shape=(x.shape[0],), dtype="int64", role="arg", domain=f"index:{x.shape[1]}")
    code = _c(g, "{out} = F.cross_entropy({a0}, {a1})",
              "{out} = F.cross_entropy({a0}, {a1}, reduction='sum')",
              "{out} = F.nll_loss(F.log_softmax({a0}, 1), {a1})",
              "{out} = F.cross_entropy({a0}, {a1}, label_smoothing=0.1)")
    g.emit(code, [x, t], shape=(), dtype=x.dtype, spec="cross_entropy",
           mag=(2 * x.mag + 2) * x.shape[0])
