"""Block specs (no_grad, unrolled loops, branches on .grad) and the program around the
statements: the statement loop, outputs and loss (finish), and the tail: backward or
graphjit.grad, .grad reads and writes, the optimizer step."""
from __future__ import annotations

from ..generator import Gen, SkipSpec, broadcasts_to, result_dtype
from ..program import Stmt
from . import SPECS, _c, spec


# ============================================================================================
# Blocks: no_grad, loops, branches on .grad
# ============================================================================================

@spec("no_grad_block", (), feature="no_grad", weight=1.0)
def _no_grad_block(g):
    if not g.grad_enabled or g.in_loop:
        raise SkipSpec("nested")
    with g.block("no_grad", grad_enabled=False) as blk:
        if g.has("param_inplace") and g.r.random() < 0.5:
            p = g.pick(lambda v: v.role == "param" and v.is_float)
            if p is not None:
                op = _c(g, "{a0}.mul_(0.99)", "{a0}.clamp_(-2.0, 2.0)", "{a0}.add_(0.01)",
                        "{a0} -= 0.01")
                g.emit_inplace(op, p, [], spec="no_grad_block", feature="no_grad",
                               mag=p.mag + 0.01)
        for _ in range(g.r.choice([1, 1, 2])):
            _one_statement(g, inplace_weight=2.0)
    return blk


@spec("loop", (), feature="loop", weight=0.8)
def _loop(g):
    if g.in_loop:
        raise SkipSpec("nested loop")
    c = g.float_var(lambda v: v.shape != ())
    n = g.r.choice([2, 3, 4])
    # carried: c, a new temporary (the loop rebinds it)
    init = g.emit("{out} = {a0} * 1.0", [c], shape=c.shape, dtype=c.dtype, spec="loop",
                  feature="loop", mag=c.mag)
    seq = g.pick(lambda v: v.is_float and len(v.shape) >= 1 and v.shape[0] >= n
                 and broadcasts_to(v.shape[1:], init.shape) and v.name != init.name)
    g.in_loop = True
    try:
        with g.block("loop", count=n) as blk:
            args, terms = [init], ["{a0}"]
            if seq is not None:
                args.append(seq)
                terms.append("{a1}[it]")
            if len(init.shape) >= 1 and g.r.random() < 0.6:
                w = g.float_var(shape=(init.shape[-1], init.shape[-1]), new=0.6, role="param")
                args.append(w)
                terms[0] = "{a0} @ {a%d}" % (len(args) - 1)
            body = " + ".join(terms)
            fn = g.r.choice(["gj.tanh", "gj.sigmoid", "gj.sin", "0.5 * "])
            code = "{out} = " + (f"{fn}({body})" if fn != "0.5 * " else f"0.5 * ({body})")
            mag = 1.0 if fn != "0.5 * " else 4.0
            dt = result_dtype(*args)
            if dt != init.dtype:
                raise SkipSpec("loop dtype")
            if g.r.random() < 0.5:
                _one_statement(g)
            g.emit(code, args, shape=init.shape, dtype=init.dtype, spec="loop", feature="loop",
                   mag=mag, out=init.name,
                   grad=g.grad_enabled and any(a.grad for a in args))
    finally:
        g.in_loop = False
    return blk


@spec("if_grad", (), feature="if_grad", weight=0.4)
def _if_grad(g):
    p = g.pick(lambda v: v.role == "param" and v.grad)
    x = g.pick(lambda v: v.is_float and v.role == "tmp" and not v.view and v.storage == v.name)
    if p is None or x is None:
        raise SkipSpec("if_grad")
    with g.block("if_grad", args=[p.name]):
        g.emit("{out} = {a0} * (1.0 + {a1}.grad.tanh().mean())", [x, p], shape=x.shape,
               dtype=x.dtype, spec="if_grad", feature="if_grad", mag=2 * x.mag, out=x.name,
               grad=x.grad, deps=x.deps)  # (p.grad needs no gradient: p is no dependency)


# ---- driving the generation -----------------------------------------------------------------

def _usable(g: Gen, place: str):
    return [s for s in SPECS if s.feature in g.features and (
        s.place == place or (place == "op" and s.place == "inplace"))]


def _one_statement(g: Gen, inplace_weight: float = 1.0) -> None:
    pool = _usable(g, "op")
    weights = [s.weight * (inplace_weight if s.place == "inplace" else 1.0) for s in pool]
    for _ in range(20):
        s = g.r.choices(pool, weights)[0]
        mark = (len(g.out), len(g.p.inputs), dict(g.vars), list(g.order))
        try:
            s.fn(g)
            return
        except SkipSpec:
            # undo any partial work of the spec
            del g.out[mark[0]:]
            del g.p.inputs[mark[1]:]
            g.vars, g.order = mark[2], mark[3]
            continue


def forward_statements(g: Gen, n: int) -> None:
    for _ in range(n):
        _one_statement(g)


def finish(g: Gen) -> None:
    """Outputs and the loss."""
    p = g.p
    used = {a for s in p.statements() for a in s.args}
    tmps = [v for v in g.vars.values() if v.role == "tmp"]
    sinks = [v for v in tmps if v.name not in used]
    outs = sinks + [v for v in tmps if v not in sinks and g.r.random() < 0.2]
    p.outputs = [v.name for v in outs][:6]
    terms = [v for v in tmps if v.grad and v.is_float]
    if not terms:
        # make one: every program differentiates something
        prm = g.pick(lambda v: v.role == "param" and v.grad and v.is_float)
        if prm is None:  # (the generator starts with a parameter, so there is one)
            raise AssertionError("no parameter")
        x = g.float_var(shape=prm.shape, new=0.5)
        g.out = p.forward
        terms = [g.emit("{out} = {a0} * {a1}", [prm, x], shape=prm.shape, dtype=result_dtype(prm, x),
                        spec="mul", mag=prm.mag * x.mag)]
    sinks_g = [v for v in terms if v.name not in used] or terms
    chosen = sinks_g[-2:] if len(sinks_g) > 1 and g.r.random() < 0.5 else sinks_g[-1:]
    loss_terms = []
    for v in chosen:
        form = g.r.random()
        if form < 0.5:
            try:
                w = g.new_input(shape=v.shape, dtype=v.dtype, role="arg", requires_grad=False,
                                force=len(p.inputs) < 10)
            except SkipSpec:
                w = None
            if w is not None:
                name = g.name("l")
                p.forward.append(Stmt("{out} = ({a0} * {a1}).sum()", [v.name, w.name], name,
                                      spec="loss", types=[(v.shape, v.dtype), (w.shape, w.dtype)],
                                      out_type=((), v.dtype)))
                loss_terms.append(name)
                continue
        name = g.name("l")
        code = g.r.choice(["{out} = {a0}.sum()", "{out} = {a0}.mean()",
                           "{out} = ({a0} * {a0}).mean()", "{out} = {a0}.tanh().sum()"])
        p.forward.append(Stmt(code, [v.name], name, spec="loss", types=[(v.shape, v.dtype)],
                              out_type=((), v.dtype)))
        loss_terms.append(name)
    p.loss = Stmt("{a0}", loss_terms, "loss", spec="loss", variadic=True,
                  types=[((), "float")] * len(loss_terms), out_type=((), p.dtype))
    g.loss_deps = frozenset().union(*[v.deps for v in chosen])


def tail_statements(g: Gen) -> None:
    """backward (or graphjit.grad), .grad reads and writes, the optimizer step."""
    p, r = g.p, g.r
    deps = sorted(getattr(g, "loss_deps", frozenset()))
    params = [d for d in deps if g.vars[d].role == "param"]
    if p.loss is None:
        return
    if r.random() < 0.08 and params:
        inputs = params[:2]  # (arguments are not visible in tail())
        p.tail.append(Stmt("gs = gj.grad(loss, [" + ", ".join("{a%d}" % (i + 1) for i in
                                                              range(len(inputs))) + "])",
                           ["loss"] + inputs, "gs", spec="backward", feature="ops"))
        p.tail_outputs += [f"gs[{i}]" for i in range(len(inputs))]
        return
    code = r.choices(["{a0}.backward()", "{a0}.backward(retain_graph=True)",
                      # twice: the second backward accumulates into .grad
                      "{a0}.backward(retain_graph=True)\n{a0}.backward()",
                      "{a0}.backward(gj.ones_like({a0}) * 0.5)"], [16, 2, 1, 1])[0]
    p.tail.append(Stmt(code, ["loss"], None, spec="backward"))
    if "grad_rw" in g.features and params:
        for _ in range(r.choice([0, 0, 1, 1, 2])):
            q = r.choice(params)
            k = r.random()
            if k < 0.3:
                name = g.name("g")
                code = r.choice(["{out} = {a0}.grad * 1.0", "{out} = {a0}.grad.clone()",
                                 "{out} = {a0}.grad.sum()"])
                if "clone" in code and "clone" not in g.features:
                    code = "{out} = {a0}.grad * 1.0"
                p.tail.append(Stmt(code, [q], name, spec="grad_read", feature="grad_rw"))
                p.tail_outputs.append(name)
            elif k < 0.5:
                p.tail.append(Stmt(r.choice(["{a0}.grad.mul_(0.5)", "{a0}.grad.clamp_(-1.0, 1.0)",
                                             "{a0}.grad.add_({a0}.detach(), alpha=0.01)"]),
                                   [q], None, spec="grad_write", feature="grad_rw"))
            elif k < 0.7 and "grad_assign" in g.features:
                p.tail.append(Stmt(r.choice(["{a0}.grad = {a0}.grad * 2.0",
                                             "{a0}.grad = {a0}.grad.clamp(-1.0, 1.0)"]),
                                   [q], None, spec="grad_assign", feature="grad_assign"))
            elif k < 0.8 and "grad_assign" in g.features:
                p.tail.append(Stmt("{a0}.grad = None", [q], None, spec="grad_assign",
                                   feature="grad_assign"))
                params = [x for x in params if x != q]
                if not params:
                    break
            else:
                fn = r.choice(["gj.nn.utils.clip_grad_norm_([{ps}], 1.0, compiled=False)",
                               "gj.nn.utils.clip_grad_value_([{ps}], 0.5, compiled=False)"])
                ps = ", ".join("{a%d}" % i for i in range(len(params)))
                p.tail.append(Stmt(fn.replace("{ps}", ps), list(params), None, spec="grad_clip",
                                   feature="grad_rw"))
    if p.optimizer is not None and p.optimizer.kind == "manual":
        lr = p.optimizer.options["lr"]
        blk = Stmt(block="no_grad", spec="manual_step", feature="optimizer")
        if params and r.random() < 0.5:
            # the tutorials' loop (q is a local name, so `-=` works in place)
            names = ", ".join("{a%d}" % i for i in range(len(params)))
            blk.body.append(Stmt(f"for q in [{names}]:\n    q -= {lr} * q.grad", list(params),
                                 None, spec="manual_step", feature="optimizer"))
        else:
            for q in params:
                blk.body.append(Stmt(r.choice([f"{{a0}}.sub_({{a0}}.grad, alpha={lr})",
                                               f"{{a0}}.add_({{a0}}.grad * {-lr})"]),
                                     [q], None, spec="manual_step", feature="optimizer"))
        if blk.body:
            p.tail.append(blk)
    elif p.optimizer is not None:
        p.tail.append(Stmt("{a0}.step()", ["opt"], None, spec="opt_step", feature="optimizer"))
