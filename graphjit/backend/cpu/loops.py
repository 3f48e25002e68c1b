"""CPU loop nests: dim coalescing, ``for`` loops over a shape, parallel chunks.

Shapes are static, so every loop bound and stride is a constant in the generated source
(the index arithmetic both targets share is in core/indexing.py).
"""
from __future__ import annotations

import contextlib

from ...shapes import numel


def coalesce(shape, strides_list):
    """Fewer, longer loops: drop size-1 dims and merge neighbours that every operand walks
    as one (``stride[d] == stride[d+1] * shape[d+1]``). Returns ``(shape, strides_list)``.

    ``f32[4,5] + f32[4,5]`` becomes one loop of 20; ``f32[4,5] + f32[5]`` stays 4 x 5.
    """
    shape = tuple(shape)
    if numel(shape) == 0:
        return (0,), [(0,) for _ in strides_list]
    dims = [(n, [s[d] for s in strides_list]) for d, n in enumerate(shape) if n != 1]
    merged = []
    for n, st in dims:
        if merged:
            pn, pst = merged[-1]
            if all(ps == s * n for ps, s in zip(pst, st)):
                merged[-1] = (pn * n, st)
                continue
        merged.append((n, st))
    new_shape = tuple(n for n, _ in merged)
    new_strides = [tuple(st[i] for _, st in merged) for i in range(len(strides_list))]
    return new_shape, new_strides


# NOTE: [Parallel loops]
# A kernel whose loop nest covers at least PARALLEL_MIN_ELEMENTS elements runs its outermost
# loop in chunks over the machine's cores, in a kernel compiled with ``parallel=True``:
#
#     for c in prange(32):                                  # chunk c of 32
#         for i0 in range(c * 4096 // 32, (c + 1) * 4096 // 32):
#             for j0 in range(1024):
#                 x0 = in0[np.uint64(i0 * 1024 + j0)]
#
# Every index is an unsigned integer: Numba wraps negative signed indices (Python's
# ``x[-1]``), and once LLVM cannot prove an index non-negative (a chunk's bounds, a prange's
# own index, come at run time) that check keeps the loops inside from vectorising. Measured
# on the 2-core development VM, quiet, float32: a row-wise sum of tanh over [4096, 1024]
# serial 3.6 ms; prange over rows with signed indices 7.7 ms, with np.uint64 indices 1.8 ms;
# 4M elementwise tanh chunked 5.7 ms signed, 1.5 ms unsigned; a 4M multiply-add 0.94 ms
# serial, 0.47 ms chunked. The chunks make the partial sums of a parallel reduction (column
# sums, the parts of one long row) a fixed number, combined in chunk order: the result does
# not depend on the number of threads. Below the threshold, threads cost more than they
# save (elementwise float32: 4K elements 1.3 us serial vs 2.6 us parallel, 64K 11.7 vs
# 8.5 us); a parallel kernel costs about 0.2 s more to compile. ``GRAPHJIT_PARALLEL_MIN``
# overrides the threshold (``0`` disables parallel loops).
def parallel_min_elements() -> int:
    import os
    value = os.environ.get("GRAPHJIT_PARALLEL_MIN", "").strip()
    if not value:
        return PARALLEL_MIN_ELEMENTS
    value = int(value)
    return value if value > 0 else 1 << 62


PARALLEL_MIN_ELEMENTS = 1 << 16
PARALLEL_CHUNKS = 32


def parallel_chunks(n: int) -> int:
    """The number of chunks a parallel loop of ``n`` trips runs in."""
    return min(n, PARALLEL_CHUNKS)


@contextlib.contextmanager
def loop_nest(k, shape, hint: str = "i", parallel: bool = False, chunk_start=None,
              chunk_end=None, block=None):
    """Open one ``for`` loop per dim of ``shape`` in kernel ``k``; yields the loop variables.
    Dims of size 1 get no loop, and None as their variable (see ``affine``). With
    ``parallel``, the outermost loop runs in chunks under a ``prange`` (see [Parallel
    loops]): ``k.chunk`` is then the chunk's variable, and indices must go through
    ``k.at`` (unsigned). ``chunk_start(c)``/``chunk_end(c)`` give source lines for the
    start and the end of each chunk (a chunk's partial sums). ``block``, ``(size,
    start(), end())``: the innermost loop runs in blocks of at most ``size`` trips, with
    ``start()``'s lines before and ``end()``'s after each block (see [Blocked sums] in
    fused.py)."""
    names = []
    dims = [n for n in shape if n != 1]
    with contextlib.ExitStack() as stack:
        if block is not None and not dims:  # no loop: one block of one trip
            for text in block[1]():
                k.line(text)
            stack.callback(lambda: [k.line(t) for t in block[2]()])
        for n in shape:  # an int, or a length as source text (see [Flat trip counts])
            if n == 1:
                names.append(None)
                continue
            var = k.fresh(f"{hint}{sum(1 for v in names if v is not None)}")
            first = not any(v is not None for v in names)
            last = len([v for v in names if v is not None]) == len(dims) - 1
            names.append(var)
            lo, hi = "0", str(n)
            if parallel and first:
                k.parallel = True
                chunks = parallel_chunks(n) if isinstance(n, int) else PARALLEL_CHUNKS
                k.chunk = k.fresh("c")
                stack.enter_context(k.block(f"for {k.chunk} in prange({chunks}):"))
                for text in (chunk_start(k.chunk) if chunk_start else ()):
                    k.line(text)
                if chunk_end:
                    stack.callback(lambda c=k.chunk: [k.line(t) for t in chunk_end(c)])
                lo, hi = f"{k.chunk} * {n} // {chunks}", f"({k.chunk} + 1) * {n} // {chunks}"
            if last and block is not None:
                size, start, end = block
                whole = lo == "0" and isinstance(n, int)
                if not (whole and n <= size):
                    base = k.fresh(f"{var}b")
                    stack.enter_context(k.block(f"for {base} in range({lo}, {hi}, {size}):"))
                    lo = base
                    hi = (f"{base} + {size}" if whole and n % size == 0
                          else f"min({base} + {size}, {hi})")
                for text in start():
                    k.line(text)
                stack.callback(lambda: [k.line(t) for t in end()])
            header = f"range({hi})" if lo == "0" else f"range({lo}, {hi})"
            stack.enter_context(k.block(f"for {var} in {header}:"))
        yield names
    for var in names:
        if var is not None:
            k.release(var)
