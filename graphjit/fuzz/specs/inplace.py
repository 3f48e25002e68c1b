"""In-place specs: add_/mul_/clamp_/copy_/fill_/... on temporaries, buffers, arguments and
(under no_grad) parameters; through views; x[k] = v; running statistics; statements eager
mode rejects; .item()/.numpy() of tensors inside the program."""
from __future__ import annotations

import math

from ..generator import SkipSpec, Var, broadcasts_to
from . import _c, spec
from .shape import basic_key


# ============================================================================================
# .item() / .numpy() of tensors inside the program
# ============================================================================================

@spec("item", ("mul",), feature="item", weight=0.15)
def _item(g):
    x = g.float_var()
    k = g.r.random()
    if k < 0.6:
        # A 0-d buffer the program itself counts up in place: its value changes every call.
        b = g.pick(lambda v: v.role == "buffer" and v.shape == () and v.is_float)
        if b is None:
            b = g.new_input(shape=(), role="buffer", domain="positive", requires_grad=False)
        with g.block("no_grad", grad_enabled=False):
            g.emit_inplace("{a0}.add_(0.25)", b, [], spec="item", feature="item",
                           mag=b.mag + 1.0, lb=b.lb)
        code = _c(g, "{out} = {a0} * {a1}.item()", "{out} = {a0} * float({a1}.numpy())",
                  "{out} = {a0} + {a1}.tolist()")
        g.emit(code, [x, b], shape=x.shape, dtype=x.dtype, spec="item", mag=x.mag * (b.mag + 1)
               + b.mag + 1)
    else:
        # .item() of a traced value: compiled mode refuses it with a TraceError.
        g.emit("{out} = {a0} * ({a0}.sum() * 0 + 1).item()", [x], shape=x.shape, dtype=x.dtype,
               spec="item", mag=x.mag)


# ============================================================================================
# In-place statements
# ============================================================================================

def _inplace_operand(g, target: Var) -> Var:
    """An operand for an in-place op on ``target``: broadcasts to its shape, another storage,
    no gradient into a leaf (a buffer or argument would join this call's graph and keep it
    alive into the next call)."""
    def ok(v):
        return v.storage != target.storage and v.dtype in (target.dtype, "float32") and not (
            target.leaf and g.grad_enabled and v.grad)
    v = g.partner(target.shape, ok, new=0.3)
    if not ok(v):
        raise SkipSpec("in-place operand")
    return v


@spec("inplace", ("add", "mul", "sub", "div", "clamp", "full"), feature="inplace",
      weight=2.0, place="inplace")
def _inplace(g):
    t = g.inplace_target()
    if t is None:
        raise SkipSpec("no in-place target")
    k = g.r.randrange(12)
    if k == 0:
        g.emit_inplace(_c(g, "{a0}.mul_(0.5)", "{a0} *= 0.5", "{a0}.div_(2.0)"), t, [],
                       spec="inplace", feature="inplace", mag=t.mag / 2, lb=t.lb and t.lb / 2)
    elif k == 1:
        g.emit_inplace(_c(g, "{a0}.add_(1.5)", "{a0} += 1.5", "{a0}.sub_(-1.5)"), t, [],
                       spec="inplace", feature="inplace", mag=t.mag + 1.5, lb=t.lb and t.lb + 1.5)
    elif k == 2:
        lo, hi = g.r.choice([(-1.0, 1.0), (-0.5, 0.5)])
        g.emit_inplace(f"{{a0}}.clamp_({lo}, {hi})", t, [], spec="inplace", feature="inplace",
                       mag=min(t.mag, 1.0), lb=None)
    elif k == 3:
        g.emit_inplace(_c(g, "{a0}.fill_(0.75)", "{a0}.zero_()"), t, [], spec="inplace",
                       feature="inplace", mag=0.75, lb=None)
        t.exact = True
    elif k == 4:
        g.emit_inplace(_c(g, "{a0}.neg_()", "{a0}.mul_(-1.0)"), t, [], spec="inplace",
                       feature="inplace", mag=t.mag)
    elif k == 5 and t.lb:
        g.emit_inplace(_c(g, "{a0}.sqrt_()", "{a0}.pow_(2)"), t, [], spec="inplace",
                       feature="inplace", mag=max(math.sqrt(t.mag), t.mag ** 2),
                       lb=min(math.sqrt(t.lb), t.lb ** 2))
    elif k in (6, 7):
        v = _inplace_operand(g, t)
        g.emit_inplace(_c(g, "{a0}.add_({a1})", "{a0} += {a1}", "{a0}.sub_({a1}, alpha=0.5)",
                          "{a0}.mul_({a1})", "{a0} *= {a1}", "{a0} -= {a1}"), t, [v],
                       spec="inplace", feature="inplace", mag=t.mag * v.mag + t.mag + v.mag)
    elif k == 8:
        v = g.positive_var(0.25, shape=None)
        if not broadcasts_to(v.shape, t.shape):
            raise SkipSpec("div_")
        g.emit_inplace(_c(g, "{a0}.div_({a1})", "{a0} /= {a1}"), t, [v], spec="inplace",
                       feature="inplace", mag=t.mag / v.lb)
    elif k == 9:
        v, w = _inplace_operand(g, t), _inplace_operand(g, t)
        g.emit_inplace(_c(g, "{a0}.addcmul_({a1}, {a2}, value=0.5)", "{a0}.lerp_({a1}, 0.25)"),
                       t, [v, w], spec="inplace", feature="inplace",
                       mag=t.mag + v.mag * w.mag + v.mag)
    elif k == 10:
        v = _inplace_operand(g, t)
        w = g.positive_var(0.25)
        if not broadcasts_to(w.shape, t.shape):
            raise SkipSpec("addcdiv_")
        g.emit_inplace("{a0}.addcdiv_({a1}, {a2}, value=0.5)", t, [v, w], spec="inplace",
                       feature="inplace", mag=t.mag + v.mag / w.lb)
    else:
        v = _inplace_operand(g, t)
        g.emit_inplace("{a0}.copy_({a1})", t, [v], spec="inplace", feature="inplace", mag=v.mag,
                       lb=v.lb)


@spec("inplace_view", ("slice", "add", "mul", "detach"), feature="view_inplace",
      weight=1.0, place="inplace")
def _inplace_view(g):
    """In-place changes through a view: x[a:b].add_(..), x.detach().mul_(..), p.data.mul_(..)."""
    def base_ok(v):
        if not v.is_float or v.view or v.readonly or v.storage in g.unsure_storage:
            return False
        return not (g.grad_enabled and v.grad) or g.r.random() < 0.0
    base = g.pick(lambda v: base_ok(v) and v.shape != ())
    if base is None:
        base = g.pick(lambda v: v.role == "param" and v.shape != ())
        if base is None:
            raise SkipSpec("no base")
    k = g.r.random()
    if base.role == "param" and g.grad_enabled:
        form = "{a0}.data"
    elif k < 0.6:
        key, _ = basic_key(g, base)
        if "None" in key:
            key = "0:1"
        form = "{a0}[" + key + "]"
    elif k < 0.8:
        form = "{a0}.detach()"
    else:
        form = _c(g, "{a0}.data", "{a0}.T" if len(base.shape) == 2 else "{a0}.unsqueeze(0)")
    op = _c(g, "add_(0.5)", "mul_(1.5)", "fill_(0.25)", "neg_()", "zero_()")
    g.emit_inplace(f"{form}.{op}", base, [], spec="inplace_view", feature="view_inplace",
                   mag=base.mag * 1.5 + 0.5, grad_from_args=False)


@spec("setitem", (), feature="setitem", weight=0.6, place="inplace")  # NumPy writes in eager
def _setitem(g):
    # (graphjit's eager mode refuses x[k] = v while autograd records on x)
    t = g.inplace_target(lambda v: v.shape != () and not (g.grad_enabled and v.grad))
    if t is None:
        raise SkipSpec("setitem")
    key, shape = basic_key(g, t)
    if "None" in key:
        raise SkipSpec("setitem None")
    if g.r.random() < 0.5:
        g.emit_inplace(f"{{a0}}[{key}] = 0.5", t, [], spec="setitem", feature="setitem",
                       mag=max(t.mag, 0.5), grad_from_args=False)
    else:
        v = g.float_var(lambda v: broadcasts_to(v.shape, shape) and not v.grad, new=0.3,
                        shape=None)
        if not broadcasts_to(v.shape, shape) or (v.grad and g.grad_enabled):
            raise SkipSpec("setitem value")
        g.emit_inplace(f"{{a0}}[{key}] = {{a1}}", t, [v], spec="setitem", feature="setitem",
                       mag=max(t.mag, v.mag), grad_from_args=False)


@spec("running_stat", ("mul", "add", "detach", "sum"), feature="inplace", weight=0.6,
      place="inplace")
def _running_stat(g):
    """A buffer updated from the batch, as batch norm's running mean is."""
    x = g.float_var(lambda v: v.shape != ())
    if not x.shape:
        raise SkipSpec("running_stat")
    shape = x.shape[1:]
    b = g.pick(lambda v: v.role == "buffer" and v.shape == shape and v.is_float and (
        g.has("saved_inplace") or v.storage not in g.fed_storage))
    if b is None:
        b = g.new_input(shape=shape, role="buffer", requires_grad=False)
    code = _c(g, "{a0}.mul_(0.9).add_({a1}.detach().mean(0), alpha=0.1)",
              "{a0}.mul_(0.9).add_(0.1 * {a1}.detach().mean(0))")
    g.emit_inplace(code, b, [x], spec="running_stat", feature="inplace", mag=max(b.mag, x.mag),
                   grad_from_args=False)


@spec("inplace_leaf_error", (), feature="errors", weight=0.15, place="inplace")
def _inplace_leaf_error(g):
    """An in-place op on a leaf that requires grad, with grad mode on: eager raises."""
    if not g.grad_enabled:
        raise SkipSpec("no_grad")
    p = g.pick(lambda v: v.leaf and v.grad)
    if p is None:
        raise SkipSpec("no leaf")
    g.emit_inplace("{a0}.mul_(0.5)", p, [], spec="inplace_leaf_error", feature="errors",
                   mag=p.mag)


@spec("shape_error", ("add",), feature="errors", weight=0.1)
def _shape_error(g):
    """Operands that do not broadcast: eager raises a ShapeError."""
    a = g.float_var(lambda v: len(v.shape) >= 1 and v.shape[-1] >= 2)
    if not a.shape or a.shape[-1] < 2:
        raise SkipSpec("shape_error")
    b = g.float_var(shape=(a.shape[-1] + 1,), new=0.8)
    g.emit("{out} = {a0} + {a1}", [a, b], shape=a.shape, dtype=a.dtype, spec="shape_error",
           mag=a.mag + b.mag)
