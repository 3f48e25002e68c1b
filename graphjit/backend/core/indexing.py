"""Static index arithmetic: shapes are constants in generated code, so every stride is too.

An operand is described per loop dim by its stride (0 for a broadcast dim); its element is
``buf[base + i0 * s0 + i1 * s1 ...]`` (see [Flat buffers] in graphjit/ir/buffers.py).
"""
from __future__ import annotations


def c_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of ``shape``."""
    strides, acc = [], 1
    for n in reversed(tuple(shape)):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


def broadcast_strides(in_shape, out_shape) -> tuple:
    """Strides of a C-contiguous ``in_shape`` read along the dims of ``out_shape`` by NumPy
    broadcasting: missing leading dims and size-1 dims get stride 0."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    lead = len(out_shape) - len(in_shape)
    own = c_strides(in_shape)
    return tuple(0 if d < lead or in_shape[d - lead] == 1 else own[d - lead]
                 for d in range(len(out_shape)))


def affine(base: int, terms) -> str:
    """``base + v0 * s0 + ...`` as source text; ``terms`` are (var or None, stride) pairs.
    A None var (a loop of one trip) or a zero stride contributes nothing."""
    parts = []
    for var, stride in terms:
        if var is None or stride == 0:
            continue
        parts.append(var if stride == 1 else f"{var} * {stride}")
    if base or not parts:
        parts.append(str(base))
    return " + ".join(parts)


def slice_region(shape, starts, steps):
    """``(base offset, per-dim strides)`` of the region ``[start::step, ...]`` of a
    C-contiguous array of ``shape`` (a ``slice`` reads it, ``slice_backward`` writes it)."""
    strides = c_strides(shape)
    base = sum(a * s for a, s in zip(starts, strides))
    return base, tuple(s * c for s, c in zip(strides, steps))
