"""Shape rules shared by the ops' infer functions: broadcasting, dims, reductions."""
from __future__ import annotations

from typing import NamedTuple

from .dtypes import DType
from .errors import ShapeError


class TensorType(NamedTuple):
    """The static type of a value: what infer functions take and return."""
    shape: tuple
    dtype: DType

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(str(s) for s in self.shape)}]"


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def broadcast_shapes(op: str, *shapes) -> tuple:
    """NumPy broadcasting of several shapes; the error names the op and every shape."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        size = 1
        for s in shapes:
            j = i - (ndim - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if size == 1:
                size = d
            elif d != size:
                listed = " and ".join(str(tuple(s)) for s in shapes)
                raise ShapeError(f"shapes {listed} cannot be broadcast together "
                                 f"(dimension {i - ndim} has sizes {size} and {d})", op=op)
        out.append(size)
    return tuple(out)


def normalize_dim(op: str, dim: int, ndim: int) -> int:
    """A dim index in ``[-ndim, ndim)`` as a non-negative int (0-d tensors accept 0 and -1)."""
    bound = max(ndim, 1)
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise ShapeError(f"dim must be an int, got {dim!r}", op=op)
    if not -bound <= dim < bound:
        raise ShapeError(f"dim {dim} is out of range for a tensor with {ndim} dims "
                         f"(expected in [{-bound}, {bound - 1}])", op=op)
    return dim % bound if ndim else 0


def normalize_dims(op: str, dim, ndim: int) -> tuple:
    """``None`` -> every dim; an int or a sequence -> a sorted tuple of distinct dims."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    dims = tuple(sorted(normalize_dim(op, d, ndim) for d in dim))
    if len(set(dims)) != len(dims):
        raise ShapeError(f"dim {tuple(dim)} names a dimension twice", op=op)
    if ndim == 0:
        return ()
    return dims


def reduced_shape(shape, dims, keepdim: bool) -> tuple:
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)
