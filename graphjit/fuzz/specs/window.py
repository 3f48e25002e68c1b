"""Window and layer specs: convolutions, pooling and F.unfold/F.fold (composites of the
`unfold`/`fold` primitives, graphjit/ops/window.py), layer norm, embedding and attention."""
from __future__ import annotations

import math

from ..generator import SkipSpec
from . import _c, spec


def _image(g, rank: int):
    """An [N, C, H, W] (rank 4) or [N, C, L] (rank 3) floating value, existing or new."""
    def ok(v):
        return len(v.shape) == rank and v.mag <= 20 and all(s <= 5 for s in v.shape) and \
            all(s >= 2 for s in v.shape[2:])
    x = g.pick(lambda v: v.is_float and ok(v))
    if x is None or g.r.random() < 0.4:
        shape = (g.r.choice([1, 2]), g.r.choice([1, 2])) + tuple(
            g.r.choice([3, 4, 5]) for _ in range(rank - 2))
        x = g.float_var(shape=shape, new=1.0)
    if not ok(x):
        raise SkipSpec("no image")
    return x


@spec("conv", ("unfold", "fold", "matmul"), feature="window", weight=0.6)
def _conv(g):
    rank = g.r.choice([3, 4])
    x = _image(g, rank)
    n, c, *space = x.shape
    k = min(g.r.choice([1, 2, 2, 3]), *space)
    stride, padding = g.r.choice([1, 1, 2]), g.r.choice([0, 0, 1])
    out_c = g.r.choice([1, 2, 3])
    w = g.float_var(shape=(out_c, c) + (k,) * (rank - 2), new=0.8, role="param")
    args = [x, w]
    fn = "F.conv2d" if rank == 4 else "F.conv1d"
    bias = ""
    if g.r.random() < 0.5:
        b = g.float_var(shape=(out_c,), new=0.8, role="param")
        args.append(b)
        bias = ", {a2}"
    out_space = tuple((s + 2 * padding - k) // stride + 1 for s in space)
    if any(s < 1 for s in out_space):
        raise SkipSpec("conv output")
    g.emit(f"{{out}} = {fn}({{a0}}, {{a1}}{bias}, stride={stride}, padding={padding})", args,
           shape=(n, out_c) + out_space, dtype=x.dtype if w.dtype == x.dtype else "float64",
           spec="conv", mag=x.mag * w.mag * c * k ** (rank - 2) + (2.0 if bias else 0.0))


@spec("pool", ("unfold", "fold", "argmax", "sum"), feature="window", weight=0.5)
def _pool(g):
    rank = g.r.choice([3, 4])
    x = _image(g, rank)
    n, c, *space = x.shape
    k = min(2, *space)
    kind = g.r.choice(["max", "avg"])
    d = "2d" if rank == 4 else "1d"
    stride = g.r.choice([None, 1])
    st = "" if stride is None else f", stride={stride}"
    s = k if stride is None else stride
    out_space = tuple((v - k) // s + 1 for v in space)
    if kind == "max" and not x.exact and g.r.random() < 0.7:
        raise SkipSpec("max pool of inexact values")  # (ties in a window: see compare)
    g.emit(f"{{out}} = F.{kind}_pool{d}({{a0}}, {k}{st})", [x], shape=(n, c) + out_space,
           dtype=x.dtype, spec="pool", mag=x.mag, exact=x.exact and kind == "max")


@spec("unfold_fold", ("unfold", "fold"), feature="window", weight=0.3)
def _unfold_fold(g):
    x = _image(g, 4)
    n, c, h, w = x.shape
    k = 2
    cols = g.emit(f"{{out}} = F.unfold({{a0}}, {k})", [x], shape=(n, c * k * k,
                                                                  (h - k + 1) * (w - k + 1)),
                  dtype=x.dtype, spec="unfold_fold", mag=x.mag, exact=x.exact)
    if g.r.random() < 0.6:
        g.emit(f"{{out}} = F.fold({{a0}}, ({h}, {w}), {k})", [cols], shape=(n, c, h, w),
               dtype=x.dtype, spec="unfold_fold", mag=x.mag * k * k)


@spec("layer_norm", ("sum", "rsqrt"), feature="functional", weight=0.4)
def _layer_norm(g):
    x = g.float_var(lambda v: len(v.shape) >= 1 and v.shape[-1] >= 2 and v.mag <= 30)
    if not x.shape or x.shape[-1] < 2 or x.mag > 30:
        raise SkipSpec("layer_norm")
    n = x.shape[-1]
    if g.r.random() < 0.5:
        wt = g.float_var(shape=(n,), new=0.8, role="param")
        b = g.float_var(shape=(n,), new=0.8, role="param")
        g.emit(f"{{out}} = F.layer_norm({{a0}}, ({n},), {{a1}}, {{a2}})", [x, wt, b],
               shape=x.shape, dtype=x.dtype, spec="layer_norm",
               mag=math.sqrt(n) * wt.mag + b.mag)
    else:
        g.emit(f"{{out}} = F.layer_norm({{a0}}, ({n},))", [x], shape=x.shape, dtype=x.dtype,
               spec="layer_norm", mag=math.sqrt(n))


@spec("embedding", ("index", "index_backward"), feature="functional", weight=0.3)
def _embedding(g):
    rows, dim = g.r.choice([3, 4, 5]), g.r.choice([2, 3])
    table = g.float_var(shape=(rows, dim), new=0.8, role="param")
    i = g.new_input(shape=(g.r.choice([2, 3, 4]),), dtype="int64", role="arg",
                    domain=f"index:{rows}")
    g.emit("{out} = F.embedding({a0}, {a1})", [i, table], shape=i.shape + (dim,),
           dtype=table.dtype, spec="embedding", mag=table.mag, exact=table.exact)


@spec("attention", ("matmul", "exp", "sum", "div"), feature="functional", weight=0.3)
def _attention(g):
    q = g.float_var(lambda v: len(v.shape) in (2, 3) and v.shape[-1] >= 2 and v.mag <= 10)
    if len(q.shape) not in (2, 3) or q.shape[-1] < 2 or q.mag > 10:
        raise SkipSpec("attention")
    d = q.shape[-1]
    kv_shape = q.shape[:-2] + (g.r.choice([2, 3]), d)
    k = g.float_var(shape=kv_shape, new=0.7)
    v = g.float_var(shape=kv_shape, new=0.7)
    causal = ", is_causal=True" if q.shape[-2] == kv_shape[-2] and g.r.random() < 0.4 else ""
    code = _c(g, f"{{out}} = F.scaled_dot_product_attention({{a0}}, {{a1}}, {{a2}}{causal})")
    g.emit(code, [q, k, v], shape=q.shape, dtype=q.dtype if q.dtype == k.dtype == v.dtype
           else "float64", spec="attention", mag=v.mag)


@spec("random", ("rand_uniform",), feature="random", weight=0.3)
def _random(g):
    """Random numbers in the program: every mode's build() seeds graphjit's counter-based
    generator alike, so eager and compiled must draw the same values."""
    x = g.float_var()
    code = _c(g, "{out} = F.dropout({a0}, p=0.5, training=True)",
              "{out} = {a0} * gj.rand_like({a0})", "{out} = F.dropout({a0}, p=0.25)")
    g.emit(code, [x], shape=x.shape, dtype=x.dtype, spec="random", mag=x.mag * 2)


@spec("custom_function", ("tanh", "mul"), feature="custom_function",
      weight=0.3)
def _custom_function(g):
    """A user's autograd.Function with a hand-written backward (USER_FUNCTION in program.py)."""
    x = g.float_var(lambda v: v.mag <= 100)
    g.emit("{out} = UserXTanh.apply({a0})", [x], shape=x.shape, dtype=x.dtype,
           spec="custom_function", mag=x.mag)
