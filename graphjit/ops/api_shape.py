"""The shape functions of graphjit.ops.api: reshape, permute, transpose, expand, squeeze,
unsqueeze, flatten, cat, stack, slices, narrow, split, chunk.

Like the rest of the api they run on whatever values the active interpreter uses: each
resolves ``-1`` sizes and negative dims into a primitive op's static attributes, or builds
the function from primitives (``flatten`` is a ``reshape``, ``stack`` an ``unsqueeze`` of
each input and a ``cat``). They build on api_values.py only and are imported into
graphjit.ops.api, where callers find them (``api.reshape``).
"""
from __future__ import annotations

import builtins

from ..errors import ShapeError
from ..shapes import normalize_dim, normalize_dims, numel
from .api_values import _promote, _value
from .registry import bind, get

# ---- shapes ---------------------------------------------------------------------------------

def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def reshape(x, shape):
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ShapeError(f"only one dim can be -1, got {shape}", op="reshape")
    if -1 in shape:
        known = numel([s for s in shape if s != -1])
        total = numel(x.shape)
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape a tensor of shape {tuple(x.shape)} ({total} elements) "
                             f"into shape {shape}", op="reshape")
        shape = tuple(total // known if s == -1 else s for s in shape)
    if shape == tuple(x.shape):
        return x
    return bind(get("reshape"), x, shape=shape)


def permute(x, dims):
    dims = tuple(normalize_dim("permute", d, len(x.shape)) for d in dims)
    if dims == tuple(range(len(x.shape))):
        return x
    return bind(get("permute"), x, dims=dims)


def transpose(x, dim0, dim1):
    n = len(x.shape)
    d0, d1 = normalize_dim("transpose", dim0, n), normalize_dim("transpose", dim1, n)
    dims = list(range(n))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, dims)


def t(x):
    if len(x.shape) > 2:
        raise ShapeError(f"expects a tensor of <= 2 dims, got shape {tuple(x.shape)}", op="t")
    return transpose(x, 0, 1) if len(x.shape) == 2 else x


def expand(x, shape):
    shape = tuple(int(s) for s in shape)
    lead = len(shape) - len(x.shape)
    if lead < 0:
        raise ShapeError(f"cannot expand shape {tuple(x.shape)} to fewer dims {shape}", op="expand")
    shape = tuple(x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
    if shape == tuple(x.shape):
        return x
    return bind(get("expand"), x, shape=shape)


def broadcast_to(x, shape):
    return expand(x, shape)


def squeeze(x, dim=None):
    n = len(x.shape)
    if dim is None:
        dims = tuple(i for i, s in enumerate(x.shape) if s == 1)
    else:
        dims = normalize_dims("squeeze", dim, n)
        dims = tuple(d for d in dims if x.shape[d] == 1)  # PyTorch ignores dims of size != 1
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in dims))


def unsqueeze(x, dim):
    n = len(x.shape) + 1
    d = normalize_dim("unsqueeze", dim, n)
    shape = list(x.shape)
    shape.insert(d, 1)
    return reshape(x, tuple(shape))


def flatten(x, start_dim=0, end_dim=-1):
    n = len(x.shape)
    if n == 0:
        return reshape(x, (1,))
    s = normalize_dim("flatten", start_dim, n)
    e = normalize_dim("flatten", end_dim, n)
    if s > e:
        raise ShapeError(f"start_dim {start_dim} comes after end_dim {end_dim}", op="flatten")
    shape = tuple(x.shape[:s]) + (numel(x.shape[s:e + 1]),) + tuple(x.shape[e + 1:])
    return reshape(x, shape)


def cat(tensors, dim=0):
    tensors = [_value(t) for t in tensors]
    if not tensors:
        raise ShapeError("needs a non-empty list of tensors", op="cat")
    # PyTorch skips 1-D empty tensors in cat (legacy behaviour users rely on).
    for i, t in enumerate(tensors):
        if len(t.shape) == 0:
            raise ShapeError(f"zero-dimensional tensor {i} cannot be concatenated; use "
                             "graphjit.stack for scalars", op="cat")
    kept = [t for t in tensors if not (len(t.shape) == 1 and t.shape[0] == 0)] or tensors[:1]
    kept = _promote(*kept) if len({t.dtype for t in kept}) > 1 else kept
    d = normalize_dim("cat", dim, len(kept[0].shape))
    if len(kept) == 1:
        return kept[0]
    return bind(get("cat"), *kept, dim=d)


def stack(tensors, dim=0):
    tensors = [_value(t) for t in tensors]
    if not tensors:
        raise ShapeError("needs a non-empty list of tensors", op="stack")
    first = tuple(tensors[0].shape)
    for i, t in enumerate(tensors[1:], 1):
        if tuple(t.shape) != first:
            raise ShapeError(f"all tensors must have one shape, got {first} (tensor 0) and "
                             f"{tuple(t.shape)} (tensor {i})", op="stack")
    d = normalize_dim("stack", dim, len(first) + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


def slice_(x, starts, stops, steps):
    starts, stops, steps = tuple(starts), tuple(stops), tuple(steps)
    if all(a == 0 and b == s and c == 1 for a, b, c, s in zip(starts, stops, steps, x.shape)):
        return x
    return bind(get("slice"), x, starts=starts, stops=stops, steps=steps)


def slice_backward(g, shape, starts, stops, steps):
    return bind(get("slice_backward"), g, shape=tuple(shape), starts=tuple(starts),
                stops=tuple(stops), steps=tuple(steps))


def narrow(x, dim, start, length):
    n = len(x.shape)
    d = normalize_dim("narrow", dim, n)
    starts = [0] * n
    stops = list(x.shape)
    starts[d], stops[d] = start, start + length
    return slice_(x, starts, stops, [1] * n)


def split(x, split_size_or_sections, dim=0):
    d = normalize_dim("split", dim, len(x.shape))
    size = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [builtins.min(step, size - i) for i in range(0, size, step)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != size:
            raise ShapeError(f"section sizes {sizes} do not add up to dim {dim} of size {size}",
                             op="split")
    out, offset = [], 0
    for s in sizes:
        out.append(narrow(x, d, offset, s))
        offset += s
    return tuple(out)




def chunk(x, chunks, dim=0):
    d = normalize_dim("chunk", dim, len(x.shape))
    size = -(-x.shape[d] // chunks)
    return split(x, size, d)
