"""Elementwise specs: unary ops, powers, binary arithmetic, comparisons, logical ops, where,
casts and integer ops."""
from __future__ import annotations

import math

from ..generator import SkipSpec, Var, broadcast, broadcasts_to, result_dtype
from . import _c, _unary, spec


# ============================================================================================
# Elementwise unary
# ============================================================================================

@spec("exp", ("exp",))
def _exp(g):
    _unary(g, "exp", ["{out} = gj.exp({a0})", "{out} = {a0}.exp()"],
           lambda x: (math.exp(x.mag), math.exp(-x.mag)), pred=lambda v: v.mag <= 4)


@spec("log", ("log",))
def _log(g):
    x = g.positive_var(0.1)
    g.emit(_c(g, "{out} = gj.log({a0})", "{out} = {a0}.log()"), [x], shape=x.shape, dtype=x.dtype,
           spec="log", mag=max(abs(math.log(x.lb)), abs(math.log(x.mag))) + 0.01)


@spec("log1p", ("log1p",))
def _log1p(g):
    x = g.float_var(lambda v: v.lb is not None or v.mag <= 0.75, domain="unit")
    if not (x.lb is not None or x.mag <= 0.75):
        raise SkipSpec("log1p")
    mag = math.log1p(x.mag) if x.lb is not None else -math.log1p(-x.mag)
    g.emit(_c(g, "{out} = gj.log1p({a0})", "{out} = {a0}.log1p()"), [x], shape=x.shape,
           dtype=x.dtype, spec="log1p", mag=mag + 0.01,
           lb=math.log1p(x.lb) if x.lb is not None else None)


@spec("sqrt", ("sqrt",))
def _sqrt(g):
    x = g.positive_var(0.05)
    g.emit(_c(g, "{out} = gj.sqrt({a0})", "{out} = {a0}.sqrt()"), [x], shape=x.shape,
           dtype=x.dtype, spec="sqrt", mag=math.sqrt(x.mag), lb=math.sqrt(x.lb))


@spec("rsqrt", ("rsqrt",))
def _rsqrt(g):
    x = g.positive_var(0.1)
    g.emit(_c(g, "{out} = gj.rsqrt({a0})", "{out} = {a0}.rsqrt()"), [x], shape=x.shape,
           dtype=x.dtype, spec="rsqrt", mag=1 / math.sqrt(x.lb), lb=1 / math.sqrt(x.mag))


def _bounded(name, templates, lb_fn=None):
    def fn(g):
        x = g.float_var(lambda v: v.mag <= 100)
        g.emit(_c(g, *templates), [x], shape=x.shape, dtype=x.dtype, spec=name, mag=1.0,
               lb=lb_fn(x) if lb_fn else None)
    return fn


spec("sin", ("sin",))(_bounded("sin", ["{out} = gj.sin({a0})", "{out} = {a0}.sin()"]))
spec("cos", ("cos",))(_bounded("cos", ["{out} = gj.cos({a0})", "{out} = {a0}.cos()"]))
spec("tanh", ("tanh",))(_bounded("tanh", ["{out} = gj.tanh({a0})", "{out} = {a0}.tanh()",
                                          "{out} = F.tanh({a0})"]))
spec("sigmoid", ("sigmoid",))(_bounded(
    "sigmoid", ["{out} = gj.sigmoid({a0})", "{out} = {a0}.sigmoid()", "{out} = F.sigmoid({a0})"],
    lambda x: 1 / (1 + math.exp(min(x.mag, 30)))))
spec("erf", ("erf",))(_bounded("erf", ["{out} = gj.erf({a0})"]))


@spec("gelu", ("gelu",))
def _gelu(g):
    _unary(g, "gelu", ["{out} = gj.gelu({a0})", "{out} = gj.gelu({a0}, approximate='tanh')",
                       "{out} = F.gelu({a0})"], lambda x: (x.mag + 0.2, None),
           pred=lambda v: v.mag <= 100)


@spec("silu", ("silu",))
def _silu(g):
    _unary(g, "silu", ["{out} = gj.silu({a0})", "{out} = F.silu({a0})"],
           lambda x: (x.mag + 0.3, None), pred=lambda v: v.mag <= 100)


@spec("softplus", ("softplus",))
def _softplus(g):
    x = g.float_var(lambda v: v.mag <= 15, prefer_exact=True)
    if x.mag > 15:
        raise SkipSpec("softplus")
    sp = math.log1p(math.exp(-x.mag))
    if x.exact and g.r.random() < 0.5:
        # The switch to the identity at beta * x > threshold (x > 1): exact inputs keep
        # 1/16 away from it.
        code = "{out} = gj.softplus({a0}, beta=2.0, threshold=2.0)"
    else:
        code = _c(g, "{out} = gj.softplus({a0})", "{out} = F.softplus({a0})")
    g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="softplus", mag=x.mag + 0.7, lb=sp / 2)


@spec("neg", ("neg",))
def _neg(g):
    _unary(g, "neg", ["{out} = -{a0}", "{out} = gj.neg({a0})", "{out} = {a0}.neg()"],
           lambda x: (x.mag, None), keep_exact=True)


# Kinks: applied to exact values by preference (inputs keep 1/16 away from 0, +-0.5, +-1).

@spec("abs", ("abs",))
def _abs(g):
    _unary(g, "abs", ["{out} = {a0}.abs()", "{out} = gj.abs({a0})", "{out} = abs({a0})"],
           lambda x: (x.mag, x.lb or (0.0625 if x.exact else None)), prefer_exact=True,
           keep_exact=True)


@spec("sign", ("sign", "full"))
def _sign(g):
    _unary(g, "sign", ["{out} = gj.sign({a0})", "{out} = {a0}.sign()"], lambda x: (1.0, x.lb and 1.0),
           prefer_exact=True, keep_exact=True)


@spec("relu", ("relu",))
def _relu(g):
    _unary(g, "relu", ["{out} = gj.relu({a0})", "{out} = {a0}.relu()", "{out} = F.relu({a0})"],
           lambda x: (x.mag, x.lb), prefer_exact=True, keep_exact=True)


@spec("leaky_relu", ("leaky_relu",))
def _leaky_relu(g):
    _unary(g, "leaky_relu", ["{out} = gj.leaky_relu({a0}, 0.2)", "{out} = F.leaky_relu({a0})",
                             "{out} = gj.leaky_relu({a0}, negative_slope=0.05)"],
           lambda x: (x.mag, x.lb), prefer_exact=True)


@spec("clamp", ("clamp",))
def _clamp(g):
    lo, hi = g.r.choice([(-0.5, 0.5), (-1.0, 1.0), (-1.0, 0.5), (0.5, 1.0)])
    code = _c(g, f"{{out}} = {{a0}}.clamp({lo}, {hi})", f"{{out}} = gj.clamp({{a0}}, min={lo})",
              f"{{out}} = {{a0}}.clamp(max={hi})", f"{{out}} = gj.clip({{a0}}, {lo}, {hi})")
    _unary(g, "clamp", [code], lambda x: (max(x.mag, 1.0), 0.5 if lo == 0.5 else None),
           prefer_exact=True, keep_exact=True)


@spec("clamp_tensor", ("maximum", "minimum"), feature="broadcast")
def _clamp_tensor(g):
    x = g.float_var(prefer_exact=True)
    lo = g.partner(x.shape, lambda v: v.exact)
    code = _c(g, "{out} = {a0}.clamp(min={a1})", "{out} = gj.clamp({a0}, max={a1})")
    g.emit(code, [x, lo], shape=x.shape, dtype=result_dtype(x, lo), spec="clamp_tensor",
           mag=max(x.mag, lo.mag), exact=x.exact and lo.exact)


# ============================================================================================
# Powers
# ============================================================================================

@spec("pow_scalar", ("pow_scalar", "full"))
def _pow_scalar(g):
    e = g.r.choice([2, 3, 0.5, -1, -1.5, 0, 2])
    if e in (0.5, -1, -1.5):
        x = g.positive_var(0.25)
    else:
        x = g.float_var(lambda v: v.mag <= 8)
        if x.mag > 8:
            raise SkipSpec("pow")
    code = _c(g, f"{{out}} = {{a0}} ** {e}", f"{{out}} = gj.pow({{a0}}, {e})",
              f"{{out}} = {{a0}}.pow({e})")
    if e == 0:
        mag, lb = 1.0, 1.0
    elif e > 0:
        mag = x.mag ** e
        lb = x.lb ** e if x.lb else (None if e % 2 else None)
    else:
        mag, lb = x.lb ** e, x.mag ** e
    g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="pow_scalar", mag=mag, lb=lb)


@spec("pow_tensor", ("pow",), feature="broadcast")
def _pow_tensor(g):
    base = g.positive_var(0.25)
    ex = g.partner(base.shape, lambda v: v.mag <= 2)
    if ex.mag > 2:
        raise SkipSpec("pow")
    shape = broadcast(base.shape, ex.shape)
    code = _c(g, "{out} = {a0} ** {a1}", "{out} = gj.pow({a0}, {a1})", "{out} = {a0}.pow({a1})")
    m = max(base.mag, 1 / base.lb) ** ex.mag
    g.emit(code, [base, ex], shape=shape, dtype=result_dtype(base, ex), spec="pow_tensor", mag=m,
           lb=1 / m)


@spec("rpow", ("pow",))
def _rpow(g):
    x = g.float_var(lambda v: v.mag <= 6)
    if x.mag > 6:
        raise SkipSpec("rpow")
    g.emit("{out} = 2.0 ** {a0}", [x], shape=x.shape, dtype=x.dtype, spec="rpow",
           mag=2.0 ** x.mag, lb=2.0 ** -x.mag)


# ============================================================================================
# Binary arithmetic, with broadcasting, Python scalars and 0-d tensors
# ============================================================================================

def _binary_pair(g, pred=None, partner_pred=None):
    a = g.float_var(pred)
    if g.has("broadcast") and g.r.random() < 0.25 and len(a.shape) < 3:
        # the other operand is the bigger one
        big = (g.r.choice([2, 3]),) + a.shape
        b = g.float_var(partner_pred, shape=big, new=0.5)
        return (a, b) if g.r.random() < 0.5 else (b, a)
    if g.has("broadcast"):
        b = g.partner(a.shape, partner_pred)
    else:
        b = g.float_var(partner_pred, shape=a.shape, new=0.3)
    return (a, b) if g.r.random() < 0.7 else (b, a)


@spec("add", ("add",))
def _add(g):
    k = g.r.random()
    if k < 0.25:
        x = g.float_var()
        s = g.r.choice([1.5, -0.75, 2.0, 0.25])
        code = _c(g, f"{{out}} = {{a0}} + {s}", f"{{out}} = {s} + {{a0}}",
                  f"{{out}} = {{a0}}.add({s})")
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="add", mag=x.mag + abs(s),
               lb=x.lb + s if x.lb and s > 0 else None)
        return
    a, b = _binary_pair(g)
    code = _c(g, "{out} = {a0} + {a1}", "{out} = gj.add({a0}, {a1})", "{out} = {a0}.add({a1})",
              "{out} = gj.add({a0}, {a1}, alpha=0.5)")
    alpha = 0.5 if "alpha" in code else 1.0
    g.emit(code, [a, b], shape=broadcast(a.shape, b.shape), dtype=result_dtype(a, b), spec="add",
           mag=a.mag + alpha * b.mag, lb=(a.lb + alpha * b.lb) if a.lb and b.lb else None)


@spec("sub", ("sub", "neg"))
def _sub(g):
    if g.r.random() < 0.25:
        x = g.float_var()
        s = g.r.choice([1.5, -0.75, 3.0])
        code = _c(g, f"{{out}} = {{a0}} - {s}", f"{{out}} = {s} - {{a0}}",
                  f"{{out}} = {{a0}}.sub({s})")
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="sub", mag=x.mag + abs(s))
        return
    a, b = _binary_pair(g)
    code = _c(g, "{out} = {a0} - {a1}", "{out} = gj.sub({a0}, {a1})", "{out} = {a0}.sub({a1})",
              "{out} = gj.sub({a0}, {a1}, alpha=2.0)")
    alpha = 2.0 if "alpha" in code else 1.0
    g.emit(code, [a, b], shape=broadcast(a.shape, b.shape), dtype=result_dtype(a, b), spec="sub",
           mag=a.mag + alpha * b.mag)


@spec("mul", ("mul",))
def _mul(g):
    if g.r.random() < 0.25:
        x = g.float_var()
        s = g.r.choice([0.5, -2.0, 1.5, 3.0])
        code = _c(g, f"{{out}} = {{a0}} * {s}", f"{{out}} = {s} * {{a0}}",
                  f"{{out}} = {{a0}}.mul({s})")
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="mul", mag=x.mag * abs(s),
               lb=x.lb * s if x.lb and s > 0 else None)
        return
    a, b = _binary_pair(g)
    code = _c(g, "{out} = {a0} * {a1}", "{out} = gj.mul({a0}, {a1})", "{out} = {a0}.mul({a1})")
    g.emit(code, [a, b], shape=broadcast(a.shape, b.shape), dtype=result_dtype(a, b), spec="mul",
           mag=a.mag * b.mag, lb=a.lb * b.lb if a.lb and b.lb else None)


@spec("div", ("div",))
def _div(g):
    k = g.r.random()
    if k < 0.2:
        x = g.float_var()
        s = g.r.choice([3.0, -0.5, 4.0])
        g.emit(_c(g, f"{{out}} = {{a0}} / {s}", f"{{out}} = {{a0}}.div({s})"), [x], shape=x.shape,
               dtype=x.dtype, spec="div", mag=x.mag / abs(s), lb=x.lb / s if x.lb and s > 0 else None)
        return
    if k < 0.35:
        x = g.positive_var(0.25)
        g.emit("{out} = 1.5 / {a0}", [x], shape=x.shape, dtype=x.dtype, spec="div",
               mag=1.5 / x.lb, lb=1.5 / x.mag)
        return
    den = g.positive_var(0.25)
    num = g.partner(den.shape) if g.r.random() < 0.5 else g.float_var(
        lambda v: broadcast(v.shape, den.shape) is not None)
    shape = broadcast(num.shape, den.shape)
    if shape is None:
        raise SkipSpec("div")
    code = _c(g, "{out} = {a0} / {a1}", "{out} = gj.div({a0}, {a1})", "{out} = {a0}.div({a1})")
    g.emit(code, [num, den], shape=shape, dtype=result_dtype(num, den), spec="div",
           mag=num.mag / den.lb, lb=num.lb / den.mag if num.lb else None)


@spec("zero_d_operand", ("mul", "add"), feature="broadcast")
def _zero_d(g):
    s = g.float_var(shape=(), new=0.6)
    x = g.float_var(lambda v: v.shape != ())
    code = _c(g, "{out} = {a0} * {a1}", "{out} = {a1} + {a0}", "{out} = {a0} * {a1} + {a1}")
    g.emit(code, [x, s], shape=x.shape, dtype=result_dtype(x, s), spec="zero_d_operand",
           mag=x.mag * s.mag + s.mag)


@spec("maximum", ("maximum",))
def _maximum(g):
    a, b = _binary_pair(g)
    g.emit(_c(g, "{out} = gj.maximum({a0}, {a1})", "{out} = {a0}.maximum({a1})"), [a, b],
           shape=broadcast(a.shape, b.shape), dtype=result_dtype(a, b), spec="maximum",
           mag=max(a.mag, b.mag), lb=max(a.lb or 0, b.lb or 0) or None, exact=a.exact and b.exact)


@spec("minimum", ("minimum",))
def _minimum(g):
    a, b = _binary_pair(g)
    g.emit(_c(g, "{out} = gj.minimum({a0}, {a1})", "{out} = {a0}.minimum({a1})"), [a, b],
           shape=broadcast(a.shape, b.shape), dtype=result_dtype(a, b), spec="minimum",
           mag=max(a.mag, b.mag), lb=min(a.lb, b.lb) if a.lb and b.lb else None,
           exact=a.exact and b.exact)


# ============================================================================================
# Comparisons, logical ops, where
# ============================================================================================

_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _compare(g, op=None) -> Var:
    op = op or g.r.choice(list(_CMP))
    # Exact operands only: an ulp of difference must not flip a comparison.
    a = g.float_var(lambda v: v.exact, prefer_exact=True)
    if not a.exact:
        raise SkipSpec("compare")
    if g.r.random() < 0.4:
        s = g.r.choice([0.5, -0.5, 1.0, 0.0])
        code = _c(g, f"{{out}} = {{a0}} {_CMP[op]} {s}", f"{{out}} = gj.{op}({{a0}}, {s})")
        return g.emit(code, [a], shape=a.shape, dtype="bool", spec="compare", grad=False)
    b = g.partner(a.shape, lambda v: v.exact)
    if not b.exact:
        raise SkipSpec("compare")
    code = _c(g, f"{{out}} = {{a0}} {_CMP[op]} {{a1}}", f"{{out}} = gj.{op}({{a0}}, {{a1}})",
              f"{{out}} = {{a0}}.{op}({{a1}})")
    return g.emit(code, [a, b], shape=broadcast(a.shape, b.shape), dtype="bool", spec="compare",
                  grad=False)


for _op in _CMP:
    spec(f"compare_{_op}", (_op,), weight=0.3)(lambda g, _op=_op: _compare(g, _op))


def _bool_var(g, shape=None) -> Var:
    def ok(v):
        return v.dtype == "bool" and (shape is None or broadcasts_to(v.shape, shape))
    v = g.pick(ok)
    if v is not None and g.r.random() < 0.7:
        return v
    if g.r.random() < 0.3:
        try:
            return g.new_input(shape=g.partner_shape(shape) if shape else None, dtype="bool",
                               role="arg", domain="mask")
        except SkipSpec:
            pass
    c = _compare(g)
    if shape is not None and not broadcasts_to(c.shape, shape):
        raise SkipSpec("bool var")
    return c


@spec("logical", ("logical_and", "logical_or", "logical_not"), weight=0.5)
def _logical(g):
    a = _bool_var(g)
    k = g.r.random()
    if k < 0.3:
        g.emit(_c(g, "{out} = ~{a0}", "{out} = gj.logical_not({a0})"), [a], shape=a.shape,
               dtype="bool", spec="logical", grad=False)
        return
    b = _bool_var(g, a.shape)
    op = g.r.choice(["and", "or"])
    code = _c(g, "{out} = {a0} & {a1}" if op == "and" else "{out} = {a0} | {a1}",
              f"{{out}} = gj.logical_{op}({{a0}}, {{a1}})")
    g.emit(code, [a, b], shape=a.shape, dtype="bool", spec="logical", grad=False)


@spec("where", ("where",))
def _where(g):
    a = g.float_var()
    c = _bool_var(g, a.shape) if g.r.random() < 0.8 else _bool_var(g)
    if g.r.random() < 0.3:
        shape = broadcast(c.shape, a.shape)
        if shape is None:
            raise SkipSpec("where")
        g.emit(_c(g, "{out} = gj.where({a0}, {a1}, 0.0)", "{out} = gj.where({a0}, 1.5, {a1})"),
               [c, a], shape=shape, dtype=a.dtype, spec="where", mag=max(a.mag, 1.5))
        return
    b = g.partner(a.shape)
    shape = broadcast(broadcast(c.shape, a.shape) or (), b.shape)
    if shape is None or broadcast(c.shape, a.shape) is None:
        raise SkipSpec("where")
    g.emit("{out} = gj.where({a0}, {a1}, {a2})", [c, a, b], shape=shape,
           dtype=result_dtype(a, b), spec="where", mag=max(a.mag, b.mag),
           exact=a.exact and b.exact)


# ============================================================================================
# Casts, integers and bools
# ============================================================================================

@spec("cast_float", ("cast",), feature="float64_mix")
def _cast_float(g):
    x = g.float_var()
    if x.dtype == "float32":
        code = _c(g, "{out} = {a0}.double()", "{out} = {a0}.to(gj.float64)")
        dtype = "float64"
    else:
        # float64 -> float32 rounds: only for exact values (multiples of 1/128 stay exact)
        if not x.exact:
            raise SkipSpec("cast")
        code = _c(g, "{out} = {a0}.float()", "{out} = {a0}.to(gj.float32)")
        dtype = "float32"
    g.emit(code, [x], shape=x.shape, dtype=dtype, spec="cast_float", mag=x.mag, lb=x.lb,
           exact=x.exact)


@spec("cast_int", ("cast",), weight=0.5)
def _cast_int(g):
    x = g.float_var(lambda v: v.exact, prefer_exact=True)
    if not x.exact:
        raise SkipSpec("cast_int")
    k = g.r.random()
    if k < 0.4:
        v = g.emit(_c(g, "{out} = {a0}.long()", "{out} = {a0}.to(gj.int64)"), [x], shape=x.shape,
                   dtype="int64", spec="cast_int", grad=False, mag=x.mag, exact=True)
    elif k < 0.6:
        v = g.emit("{out} = {a0}.bool()", [x], shape=x.shape, dtype="bool", spec="cast_int",
                   grad=False, exact=True)
    else:
        v = g.emit("{out} = ({a0} * 2.0).long()", [x], shape=x.shape, dtype="int64",
                   spec="cast_int", grad=False, mag=2 * x.mag, exact=True)
    # and back to floating point, mixing with a float value of the same shape (promotion)
    y = g.float_var(shape=v.shape, new=0.5)
    code = _c(g, "{out} = {a0}.float() * {a1}", "{out} = {a0} * {a1}", "{out} = {a1} + {a0}",
              "{out} = {a0}.type_as({a1}) - {a1}")
    g.emit(code, [v, y], shape=v.shape, dtype=result_dtype(y, Var("_", v.shape, "float32"))
           if "float()" in code else y.dtype, spec="cast_int", mag=(v.mag + 1) * y.mag + y.mag)


@spec("int_ops", ("sum", "add", "argmax"), weight=0.4)
def _int_ops(g):
    i = g.pick(lambda v: v.dtype in ("int64", "bool"))
    if i is None:
        x = g.float_var(prefer_exact=True)
        i = g.emit("{out} = {a0}.argmax(-1)" if x.shape else "{out} = {a0}.argmax()", [x],
                   shape=x.shape[:-1], dtype="int64", spec="int_ops", grad=False,
                   mag=max(x.shape or (1,)), exact=True)
    code = _c(g, "{out} = {a0}.sum()", "{out} = ({a0} + 1).sum()", "{out} = gj.sum({a0})")
    g.emit(code, [i], shape=(), dtype="int64", spec="int_ops", grad=False,
           mag=(i.mag + 1) * max(i.numel, 1), exact=True)
