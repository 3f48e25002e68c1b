"""Movement and view specs (reshape, permute, squeeze, expand, repeat, cat/stack, split,
basic and advanced indexing, gather, one_hot), creation, clone and detach."""
from __future__ import annotations

import numpy as np

from ..generator import SkipSpec, Var, result_dtype
from . import _c, spec


# ============================================================================================
# Movement and views
# ============================================================================================

def _view_kw(x: Var):
    return dict(dtype=x.dtype, mag=x.mag, lb=x.lb, exact=x.exact)


@spec("reshape", ("reshape",), feature="views")
def _reshape(g):
    x = g.float_var(lambda v: v.numel >= 2)
    n = x.numel
    shapes = [(n,)] + [(a, n // a) for a in (2, 3, 4) if n % a == 0 and n // a > 1]
    shapes += [(1,) + x.shape, x.shape + (1,)] if len(x.shape) < 3 else []
    target = g.r.choice(shapes)
    if target == x.shape:
        raise SkipSpec("reshape")
    spelled = ", ".join(map(str, target))
    if len(target) == 2 and g.r.random() < 0.4:
        spelled = f"-1, {target[1]}"
    code = _c(g, f"{{out}} = {{a0}}.reshape({spelled})", f"{{out}} = {{a0}}.view({spelled})",
              f"{{out}} = gj.reshape({{a0}}, ({', '.join(map(str, target))},))")
    if target == (n,):
        code = _c(g, code, "{out} = {a0}.flatten()", "{out} = {a0}.view(-1)")
    # NumPy's reshape is a view or a copy depending on the layout: no in-place through it.
    g.emit(code, [x], shape=target, spec="reshape", unsure_alias=x, **_view_kw(x))


@spec("permute", ("permute",), feature="views")
def _permute(g):
    x = g.float_var(lambda v: len(v.shape) >= 2)
    if len(x.shape) < 2:
        raise SkipSpec("permute")
    n = len(x.shape)
    if n == 2:
        code = _c(g, "{out} = {a0}.T", "{out} = {a0}.t()", "{out} = {a0}.transpose(0, 1)",
                  "{out} = gj.transpose({a0}, -1, -2)", "{out} = {a0}.mT", "{out} = {a0}.permute(1, 0)")
        shape = x.shape[::-1]
    else:
        perm = list(range(n))
        while perm == list(range(n)):
            g.r.shuffle(perm)
        shape = tuple(x.shape[i] for i in perm)
        code = _c(g, f"{{out}} = {{a0}}.permute({', '.join(map(str, perm))})",
                  f"{{out}} = gj.permute({{a0}}, ({', '.join(map(str, perm))},))")
    g.emit(code, [x], shape=shape, spec="permute", view_of=x, **_view_kw(x))


@spec("squeeze_unsqueeze", ("reshape",), feature="views")
def _squeeze(g):
    x = g.float_var(lambda v: len(v.shape) <= 3)
    ones = [i for i, s in enumerate(x.shape) if s == 1]
    if ones and g.r.random() < 0.5:
        d = g.r.choice(ones)
        code = _c(g, f"{{out}} = {{a0}}.squeeze({d})", "{out} = {a0}.squeeze()",
                  f"{{out}} = gj.squeeze({{a0}}, {d})")
        shape = tuple(s for i, s in enumerate(x.shape) if (i != d if "squeeze()" not in code
                                                           else s != 1))
    else:
        d = g.r.randrange(len(x.shape) + 1)
        code = _c(g, f"{{out}} = {{a0}}.unsqueeze({d})", f"{{out}} = gj.unsqueeze({{a0}}, {d})",
                  f"{{out}} = {{a0}}.unsqueeze({d - len(x.shape) - 1})")
        shape = x.shape[:d] + (1,) + x.shape[d:]
    g.emit(code, [x], shape=shape, spec="squeeze_unsqueeze", unsure_alias=x, **_view_kw(x))


@spec("expand", ("expand", "sum"), feature="views")
def _expand(g):
    x = g.float_var(lambda v: len(v.shape) <= 2)
    if len(x.shape) > 2:
        raise SkipSpec("expand")
    shape = tuple(g.r.choice([2, 3]) if s == 1 else s for s in x.shape)
    if g.r.random() < 0.6 or shape == x.shape:
        shape = (g.r.choice([2, 3]),) + shape
    spelled = ", ".join(map(str, shape))
    code = _c(g, f"{{out}} = {{a0}}.expand({spelled})", f"{{out}} = gj.expand({{a0}}, ({spelled},))",
              f"{{out}} = gj.broadcast_to({{a0}}, ({spelled},))")
    if len(shape) > len(x.shape) and shape[1:] == x.shape and g.r.random() < 0.3:
        code = f"{{out}} = {{a0}}.expand(-1{', -1' * len(x.shape)})".replace("-1", str(shape[0]), 1)
    g.emit(code, [x], shape=shape, spec="expand", view_of=x, readonly=True, **_view_kw(x))


@spec("repeat", ("reshape", "expand"), feature="views", weight=0.4)
def _repeat(g):
    x = g.float_var(lambda v: 1 <= len(v.shape) <= 2)
    if not 1 <= len(x.shape) <= 2:
        raise SkipSpec("repeat")
    reps = tuple(g.r.choice([1, 2]) for _ in x.shape)
    if g.r.random() < 0.4:
        reps = (2,) + reps
    shape = tuple(r * s for r, s in zip(reps, (1,) * (len(reps) - len(x.shape)) + x.shape))
    g.emit(f"{{out}} = {{a0}}.repeat({', '.join(map(str, reps))})", [x], shape=shape,
           spec="repeat", **_view_kw(x))


@spec("cat_stack", ("cat", "slice"), feature="views")
def _cat(g):
    a = g.float_var(lambda v: v.shape != ())
    if not a.shape:
        raise SkipSpec("cat")
    if g.r.random() < 0.35:
        b = g.float_var(shape=a.shape, new=0.4)
        d = g.r.randrange(len(a.shape) + 1)
        code = _c(g, f"{{out}} = gj.stack([{{a0}}, {{a1}}], {d})",
                  f"{{out}} = gj.stack(({{a0}}, {{a1}}), dim={d})")
        shape = a.shape[:d] + (2,) + a.shape[d:]
    else:
        d = g.r.randrange(len(a.shape))
        other = a.shape[:d] + (g.r.choice([1, 2]),) + a.shape[d + 1:]
        b = g.float_var(shape=other, new=0.7) if g.r.random() < 0.8 else a
        code = _c(g, f"{{out}} = gj.cat([{{a0}}, {{a1}}], {d})",
                  f"{{out}} = gj.cat(({{a0}}, {{a1}}), dim={d - len(a.shape)})")
        shape = a.shape[:d] + (a.shape[d] + b.shape[d],) + a.shape[d + 1:]
    g.emit(code, [a, b], shape=shape, dtype=result_dtype(a, b), spec="cat_stack",
           mag=max(a.mag, b.mag), exact=a.exact and b.exact)


@spec("split_narrow", ("slice",), feature="views")
def _split(g):
    x = g.float_var(lambda v: any(s >= 2 for s in v.shape))
    dims = [i for i, s in enumerate(x.shape) if s >= 2]
    if not dims:
        raise SkipSpec("split")
    d = g.r.choice(dims)
    size = x.shape[d]
    k = g.r.random()
    if k < 0.35:
        part = g.r.randrange(2)
        code = f"{{out}} = {{a0}}.split(1, {d})[{part}]"
        new = 1
    elif k < 0.6:
        code = f"{{out}} = gj.chunk({{a0}}, 2, {d})[0]"
        new = -(-size // 2)
    else:
        start = g.r.randrange(size - 1)
        length = g.r.randrange(1, size - start + 1)
        if start == 0 and length == size and not g.has("noop_views"):
            raise SkipSpec("narrow of the whole dim")
        code = _c(g, f"{{out}} = {{a0}}.narrow({d}, {start}, {length})",
                  f"{{out}} = gj.narrow({{a0}}, {d}, {start}, {length})")
        new = length
    shape = x.shape[:d] + (new,) + x.shape[d + 1:]
    g.emit(code, [x], shape=shape, spec="split_narrow", view_of=x, **_view_kw(x))


def basic_key(g, x: Var):
    """A basic index (slices, ints, None, ...) for x: (key text, result shape)."""
    parts, shape = [], []
    for s in x.shape:
        k = g.r.random()
        if k < 0.3 and s >= 2:
            a = g.r.randrange(s - 1)
            b = g.r.randrange(a + 1, s + 1)
            parts.append(f"{a}:{b}")
            shape.append(b - a)
        elif k < 0.45 and s >= 2:
            parts.append("::2")
            shape.append(-(-s // 2))
        elif k < 0.6:
            i = g.r.randrange(s)
            parts.append(str(i - s if g.r.random() < 0.3 else i))
        elif k < 0.7 and s >= 2:
            parts.append("-1:" if g.r.random() < 0.5 else "1:")
            shape.append(1 if parts[-1] == "-1:" else s - 1)
        else:
            parts.append(":")
            shape.append(s)
    if g.r.random() < 0.15:
        at = g.r.randrange(len(parts) + 1)
        parts.insert(at, "None")
        shape.insert(len([p for p in parts[:at] if not p.lstrip("-").isdigit()]), 1)
    while parts and parts[-1] == ":" and g.r.random() < 0.7:
        parts.pop()
    if not parts:
        parts = ["..."]
    key = ", ".join(parts)
    # the result's shape by NumPy's rules (which graphjit's basic indexing follows)
    a = np.empty(x.shape)
    b = a[eval(f"np.s_[{key}]")]  # noqa: S307 - our own text
    if b.shape == a.shape and b.strides == a.strides and not g.has("noop_views"):
        raise SkipSpec("an index that selects everything")  # (graphjit returns x itself)
    return key, b.shape


@spec("getitem_basic", ("slice", "slice_backward", "reshape"), feature="views", weight=1.5)
def _getitem(g):
    x = g.float_var(lambda v: v.shape != ())
    if not x.shape:
        raise SkipSpec("getitem")
    key, shape = basic_key(g, x)
    g.emit(f"{{out}} = {{a0}}[{key}]", [x], shape=shape, spec="getitem_basic", view_of=x,
           **_view_kw(x))


@spec("getitem_index", ("index", "index_backward"), weight=1.0)
def _getitem_index(g):
    x = g.float_var(lambda v: v.shape != ())
    if not x.shape:
        raise SkipSpec("index")
    n0 = x.shape[0]
    k = g.r.random()
    if k < 0.35:
        idx = [g.r.randrange(-n0, n0) for _ in range(g.r.choice([1, 2, 3]))]
        g.emit(f"{{out}} = {{a0}}[{idx}]", [x], shape=(len(idx),) + x.shape[1:], spec="getitem_index",
               **_view_kw(x))
        return
    if k < 0.75 or len(x.shape) < 2:
        i = g.new_input(shape=(g.r.choice([1, 2, 3, 4]),), dtype="int64", role="arg",
                        domain=f"index:{n0}")
        g.emit("{out} = {a0}[{a1}]", [x, i], shape=i.shape + x.shape[1:], spec="getitem_index",
               **_view_kw(x))
        return
    n1 = x.shape[1]
    i = g.new_input(shape=(n0,), dtype="int64", role="arg", domain=f"index:{n1}")
    code = _c(g, "{out} = {a0}[gj.arange(" + str(n0) + ", device={dev}), {a1}]",
              "{out} = {a0}[:, {a1}]")
    shape = (n0,) + x.shape[2:] if "arange" in code else (n0, n0) + x.shape[2:]
    g.emit(code, [x, i], shape=shape, spec="getitem_index", **_view_kw(x))


@spec("gather", ("index", "index_backward", "iota"))
def _gather(g):
    x = g.float_var(lambda v: len(v.shape) >= 1)
    if not x.shape:
        raise SkipSpec("gather")
    d = g.r.randrange(len(x.shape))
    ishape = tuple(g.r.choice([1, 2, 3]) if i == d else g.r.randint(1, s)
                   for i, s in enumerate(x.shape))
    i = g.new_input(shape=ishape, dtype="int64", role="arg", domain=f"index:{x.shape[d]}")
    code = _c(g, f"{{out}} = {{a0}}.gather({d}, {{a1}})", f"{{out}} = gj.gather({{a0}}, {d}, {{a1}})")
    g.emit(code, [x, i], shape=ishape, spec="gather", **_view_kw(x))


@spec("one_hot", ("eq", "cast"), weight=0.3)
def _one_hot(g):
    n = g.r.choice([2, 3, 4])
    i = g.new_input(shape=(g.r.choice([2, 3]),), dtype="int64", role="arg", domain=f"index:{n}")
    oh = g.emit(f"{{out}} = gj.one_hot({{a0}}, {n})", [i], shape=i.shape + (n,), dtype="int64",
                spec="one_hot", grad=False, mag=1.0, exact=True)
    y = g.partner(oh.shape)
    g.emit("{out} = {a0} * {a1}", [oh, y], shape=oh.shape, dtype=result_dtype(y), spec="one_hot",
           mag=y.mag)


# ============================================================================================
# Creation, clone, detach, composite losses
# ============================================================================================

@spec("full", (), weight=0.5)  # creation functions: arrays in eager mode, constants in traces
def _full(g):
    x = g.float_var()
    k = g.r.random()
    if k < 0.5:
        code = _c(g, "{out} = gj.zeros_like({a0}) + {a0}", "{out} = gj.ones_like({a0}) * {a0}",
                  "{out} = gj.full_like({a0}, 0.75) - {a0}")
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="full", mag=x.mag + 0.75)
        return
    shape = x.shape
    dt = g.r.choice(["", ", dtype=gj.float64", ", dtype=gj.float32"])
    code = _c(g, f"{{out}} = gj.full({shape!r}, 1.5{dt}, device={{dev}}) * {{a0}}",
              f"{{out}} = gj.ones({shape!r}{dt}, device={{dev}}) + {{a0}}",
              f"{{out}} = {{a0}} - gj.zeros({shape!r}{dt}, device={{dev}})")
    dtype = "float64" if ("float64" in dt or x.dtype == "float64") else "float32"
    g.emit(code, [x], shape=shape, dtype=dtype, spec="full", mag=x.mag * 1.5 + 1)


@spec("clone", ("clone",), feature="clone")
def _clone(g):
    x = g.float_var()
    code = _c(g, "{out} = {a0}.clone()", "{out} = {a0}.clone()", "{out} = {a0}.detach().clone()")
    g.emit(code, [x], shape=x.shape, grad=False if "detach" in code else None, spec="clone",
           feature="clone", **_view_kw(x))


@spec("detach", ("detach",), feature="detach")
def _detach(g):
    x = g.float_var()
    code = _c(g, "{out} = {a0}.detach()", "{out} = {a0}.detach() * {a0}",
              "{out} = {a0} - {a0}.detach()")
    if code == "{out} = {a0}.detach()":
        g.emit(code, [x], shape=x.shape, spec="detach", grad=False, view_of=x, **_view_kw(x))
    else:
        g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="detach", mag=x.mag * x.mag + x.mag)


@spec("contiguous", (), feature="noop_views", weight=0.2)
def _contiguous(g):
    x = g.float_var()
    g.emit("{out} = {a0}.contiguous()", [x], shape=x.shape, spec="contiguous", view_of=x,
           **_view_kw(x))
