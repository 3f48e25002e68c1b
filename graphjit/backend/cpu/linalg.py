"""matmul: BLAS GEMM calls on the flat buffers.

A float product is one ``cblas_?gemm`` call into NumPy's OpenBLAS (blas.py; [The BLAS of
compiled programs] in graphjit/_blas.py), or Numba's ``np.dot(a, b, out)`` on contiguous 2-D
views (SciPy's OpenBLAS) where NumPy has none, so float matmuls run at GEMM speed. A batch of ``a`` over a shared ``b`` (``f32[B,M,K] @ f32[K,N]``, a linear layer
on a batch of sequences) is one GEMM of ``B*M`` rows; other batches loop over GEMMs with
broadcast batch offsets. BLAS has no int64 GEMM, so int64 matmuls are plain loops. A ``gemm`` node ``a @ b.T`` with a
long inner dimension and a small product (a convolution's weight gradient) calls graphjit's
own blocked dot products instead of BLAS ([Dot-product GEMM] in gemm_nt.py).
"""
from __future__ import annotations

from ..._blas import GEMM_SINGLE_THREAD_MAX
from ...shapes import numel
from ..core.indexing import affine, c_strides
from ..core.linalg import batch_strides, matmul_sizes
from .blas import calls_cblas, gemm_call
from .gemm_nt import chunks as dots_chunks
from .gemm_nt import use_dots
from .gemm_nt import version as gemm_nt_version
from .kernel import emits
from .loops import coalesce, loop_nest, parallel_min_elements


@emits("matmul")
def emit_matmul(node, k) -> None:
    a, b = node.inputs
    m, kk, n, batch = matmul_sizes(node)
    if numel(node.out.shape) == 0:
        return
    if kk == 0:
        k.fill("0")  # a sum over nothing
        return
    if not a.dtype.is_floating_point:
        _emit_loops(node, k, m, kk, n, batch)
        return
    a_in, b_in, out = k.ins[0], k.ins[1], k.out
    k.threaded_blas = m * kk * n > GEMM_SINGLE_THREAD_MAX
    if numel(b.shape[:-2]) == 1 and tuple(a.shape[:-2]) == batch:
        rows = numel(batch) * m
        k.threaded_blas = rows * kk * n > GEMM_SINGLE_THREAD_MAX
        k.line(gemm_call(a.dtype.name, False, False, rows, n, kk, a_in, b_in, out) or
               f"np.dot({a_in}.reshape(({rows}, {kk})), {b_in}.reshape(({kk}, {n})), "
               f"{out}.reshape(({rows}, {n})))")
        return
    shape, (sa, sb, so) = _batch_strides(a, b, batch, m, kk, n)
    with loop_nest(k, shape, hint="b") as idx:
        oa, ob, oo = k.fresh("a_at"), k.fresh("b_at"), k.fresh("out_at")
        k.line(f"{oa} = {affine(0, zip(idx, sa))}")
        k.line(f"{ob} = {affine(0, zip(idx, sb))}")
        k.line(f"{oo} = {affine(0, zip(idx, so))}")
        k.line(gemm_call(a.dtype.name, False, False, m, n, kk, a_in, b_in, out, (oa, ob, oo)) or
               f"np.dot({a_in}[{oa}:{oa} + {m * kk}].reshape(({m}, {kk})), "
               f"{b_in}[{ob}:{ob} + {kk * n}].reshape(({kk}, {n})), "
               f"{out}[{oo}:{oo} + {m * n}].reshape(({m}, {n})))")


def _batch_strides(a, b, batch, m, kk, n):
    """Coalesced batch loop and the element offsets of each operand's matrix per batch index."""
    sa, sb = batch_strides(a, b, batch, m, kk, n)
    so = tuple(s * m * n for s in c_strides(batch))
    return coalesce(batch, [sa, sb, so])


def _emit_loops(node, k, m, kk, n, batch) -> None:
    a, b = node.inputs
    shape, (sa, sb, so) = _batch_strides(a, b, batch, m, kk, n)
    acc = k.fresh("acc")
    with loop_nest(k, shape, hint="b") as idx:
        with loop_nest(k, (m, n)) as (i, j):
            k.line(f"{acc} = 0")
            p = k.fresh("p")
            with k.block(f"for {p} in range({kk}):"):
                ia = affine(0, list(zip(idx, sa)) + [(i, kk), (p, 1)])
                ib = affine(0, list(zip(idx, sb)) + [(p, n), (j, 1)])
                k.line(f"{acc} += {k.ins[0]}[{ia}] * {k.ins[1]}[{ib}]")
            k.line(f"{k.out}[{affine(0, list(zip(idx, so)) + [(i, n), (j, 1)])}] = {acc}")


@emits("gemm")
def emit_gemm(node, k) -> None:
    """A GEMM call on (transposed) operands, then the epilogue over the product in place: see
    [GEMM nodes] in graphjit/ir/gemm.py."""
    from ...ir.gemm import product_type

    a, b = node.inputs[:2]
    ta, tb = node.attrs["trans_a"], node.attrs["trans_b"]
    p = product_type(a.type, b.type, ta, tb)
    m, n = p.shape
    kk = a.shape[0] if ta else a.shape[1]
    if numel(p.shape) == 0:
        return
    target = _product_target(node, k, p)
    if kk == 0:
        with loop_nest(k, (m * n,)) as (i,):
            k.line(f"{target}[{affine(0, [(i, 1)])}] = 0")
    elif tb and not ta and a.dtype.is_floating_point and use_dots(m, n, kk):
        # A weight gradient's shape: blocked dot products beat OpenBLAS ([Dot-product GEMM]).
        _emit_dots(k, k.ins[0], k.ins[1], target, m, n, kk, a.dtype)
    else:
        a_view = f"{k.ins[0]}.reshape(({kk}, {m})).T" if ta else f"{k.ins[0]}.reshape(({m}, {kk}))"
        b_view = f"{k.ins[1]}.reshape(({n}, {kk})).T" if tb else f"{k.ins[1]}.reshape(({kk}, {n}))"
        k.line(gemm_call(a.dtype.name, ta, tb, m, n, kk, k.ins[0], k.ins[1], target) or
               f"np.dot({a_view}, {b_view}, {target}.reshape(({m}, {n})))")
        k.threaded_blas = m * kk * n > GEMM_SINGLE_THREAD_MAX
    _emit_epilogue(node, k, p, target)


def _product_target(node, k, p) -> str:
    """The output buffer a (window) gemm node computes its product ``p`` into ([GEMM
    nodes])."""
    from ...ir.gemm import epilogue_graph, product_output
    epilogue = node.attrs["epilogue"]
    if not epilogue:
        return k.out
    return k.outs[product_output(epilogue_graph(epilogue, p, [v.type for v in node.inputs[2:]]),
                                 p)]


def _emit_epilogue(node, k, p, target) -> None:
    """A (window) gemm node's epilogue over its product in ``target``, in place."""
    from ...ir.fused import FUSED
    from ...ir.graph import Node, Value
    from .fused import emit_fused
    if node.attrs["epilogue"]:
        body_node = Node(FUSED, [Value(p)] + list(node.inputs[2:]),
                         {"body": node.attrs["epilogue"]}, node.out_type)
        emit_fused(body_node, k.view(body_node, [target] + k.ins[2:]))


def _emit_dots(k, a, b, out, m, n, kk, dtype) -> None:
    """``out = a @ b.T`` by ``gemm_nt`` ([Dot-product GEMM] in gemm_nt.py): one call, or, for
    a large product, one per part of the inner dimension in a parallel loop into a scratch
    of partial products, which are then added in part order (the same sums whatever the
    threads)."""
    k.line(f"# gemm_nt.py {gemm_nt_version()}")
    parts = dots_chunks(m, n, kk, 16 * parallel_min_elements())
    if parts == 1:
        k.line(f"gemm_nt({a}, {b}, {out}, 0, 0, 0, {m}, {n}, {kk}, {kk}, {kk})")
        return
    k.parallel = True
    mn = m * n
    partial, c, lo = (k.fresh(v) for v in ("partial", "c", "k0"))
    k.chunk = c
    k.line(f"{partial} = np.empty({parts * mn}, np.{dtype.name})")
    with k.block(f"for {c} in prange({parts}):"):
        k.line(f"{lo} = {c} * {kk} // {parts}")
        k.line(f"gemm_nt({a}, {b}, {partial}, {lo}, {lo}, {c} * {mn}, {m}, {n}, "
               f"({c} + 1) * {kk} // {parts} - {lo}, {kk}, {kk})")
    _emit_sum_of_parts(k, partial, parts, mn, out)


def _emit_sum_of_parts(k, partial, parts: int, size: int, out) -> None:
    """``out[:size]`` = the sum of the ``parts`` partial products stored one after another in
    ``partial``, added in part order (so the result does not depend on which thread computed
    which part)."""
    i, s, p = k.fresh("i"), k.fresh("s"), k.fresh("p")
    with k.block(f"for {i} in range({size}):"):
        k.line(f"{s} = {partial}[{i}]")
        with k.block(f"for {p} in range(1, {parts}):"):
            k.line(f"{s} += {partial}[{p} * {size} + {i}]")
        k.line(f"{out}[{i}] = {s}")


# The bytes of windows a window_gemm unfolds at a time: a chunk of whole images whose windows
# stay in L2 cache for the product that reads them (measured on W7's first convolution, one
# thread: the unfold, forward product and weight gradient took 4.7 ms in chunks of 2 images
# (235 KB), 5.3 ms of 4, 5.6 ms of 8-16, 6.0 ms unfolded whole).
WINDOW_CHUNK_BYTES = 256 * 1024
# A parallel forward window product splits each chunk's GEMM into at most this many parts
# of columns (each small enough to run on its calling thread); beyond, it runs serially.
MAX_GEMM_PARTS = 8


def window_chunk(images: int, image_bytes: int) -> int:
    """Images per chunk: the largest divisor of ``images`` whose windows fit
    WINDOW_CHUNK_BYTES (at least 1)."""
    fits = max(1, WINDOW_CHUNK_BYTES // max(image_bytes, 1))
    return max(d for d in range(1, images + 1) if images % d == 0 and d <= fits)


@emits("window_gemm")
def emit_window_gemm(node, k) -> None:
    """A product whose right operand is the windows of an image, unfolded a chunk of images
    at a time into a scratch ([Window GEMM nodes] in graphjit/ir/gemm.py), then the
    epilogue over the product in place, as ``gemm``'s."""
    from ...ir.gemm import product_type, windows_type
    from ...ops.window import window_counts
    from .window import emit_windows

    a, x = node.inputs[:2]
    attrs = node.attrs
    ta, tb = attrs["trans_a"], attrs["trans_b"]
    b = windows_type(x.type, attrs["kernel"], attrs["dilation"], attrs["stride"],
                     attrs["padding"], attrs["pad_value"])
    p = product_type(a.type, b, ta, tb)
    m, n = p.shape
    rows, columns = b.shape  # C*KH*KW, N*OH*OW
    if numel(p.shape) == 0:
        return
    images, channels, height, width = x.shape
    counts = window_counts("unfold", (height, width), attrs["kernel"], attrs["dilation"],
                           attrs["stride"], attrs["padding"], x.shape)
    per_image = columns // images
    nb = window_chunk(images, rows * per_image * x.dtype.itemsize)
    chunks, cn = images // nb, nb * per_image  # chunks, and the columns of each
    dtype = f"np.{x.dtype.name}"
    target = _product_target(node, k, p)
    scratch, ch = k.fresh("windows"), k.fresh("chunk")
    x_at = f"{ch} * {nb * channels * height * width}"

    def unfold_chunk():
        emit_windows(k, k.ins[1], scratch, (nb, channels, height, width), attrs, "CN", counts,
                     x.dtype, x_at=x_at)

    # Parallel over the chunks where the product is large; each chunk's forward GEMM then
    # in parts of columns small enough for OpenBLAS to run on the calling thread (its
    # threads woken for each of 64 small GEMMs had cost W7 1.3 ms a step on two cores).
    parallel = chunks > 1 and m * rows * columns >= 16 * parallel_min_elements()
    parts = -(-m * rows * cn // GEMM_SINGLE_THREAD_MAX)
    if not tb and parallel and parts <= MAX_GEMM_PARTS and calls_cblas(a.dtype.name):
        k.parallel, k.chunk = True, ch
        part_columns = -(-cn // parts)
        with k.block(f"for {ch} in prange({chunks}):"):
            k.line(f"{scratch} = np.empty({rows * cn}, {dtype})")
            unfold_chunk()
            for lo in range(0, cn, part_columns):
                k.line(gemm_call(a.dtype.name, ta, False, m, min(part_columns, cn - lo), rows,
                                 k.ins[0], scratch, target, ("0", str(lo), f"{ch} * {cn} + {lo}"),
                                 ldb=cn, ldc=n))
    elif not tb:  # the forward product: each chunk's columns of the result, one GEMM each
        k.threaded_blas = m * rows * cn > GEMM_SINGLE_THREAD_MAX
        k.line(f"{scratch} = np.empty({rows * cn}, {dtype})")
        call = gemm_call(a.dtype.name, ta, False, m, cn, rows, k.ins[0], scratch, target,
                         ("0", "0", f"{ch} * {cn}"), ldc=n)
        if call is None:
            part = k.fresh("part")
            k.line(f"{part} = np.empty(({m}, {cn}), {dtype})")
        a_view = (f"{k.ins[0]}.reshape(({rows}, {m})).T" if ta
                  else f"{k.ins[0]}.reshape(({m}, {rows}))")
        with k.block(f"for {ch} in range({chunks}):"):
            unfold_chunk()
            if call is not None:
                k.line(call)
            else:  # np.dot writes a whole matrix: the chunk's part, then its columns
                k.line(f"np.dot({a_view}, {scratch}.reshape(({rows}, {cn})), {part})")
                i = k.fresh("i")
                with k.block(f"for {i} in range({m}):"):
                    k.line(f"{target}[{i} * {n} + {ch} * {cn}:{i} * {n} + ({ch} + 1) * {cn}]"
                           f" = {part}[{i}]")
    else:  # a @ windows.T, a weight gradient: each chunk's dot products, added in order
        k.line(f"# gemm_nt.py {gemm_nt_version()}")
        partial = k.fresh("partial")
        k.line(f"{partial} = np.empty({chunks * m * n}, {dtype})")
        if parallel:
            k.parallel, k.chunk = True, ch
        with k.block(f"for {ch} in {'prange' if parallel else 'range'}({chunks}):"):
            k.line(f"{scratch} = np.empty({rows * cn}, {dtype})")
            unfold_chunk()
            k.line(f"gemm_nt({k.ins[0]}, {scratch}, {partial}, {ch} * {cn}, 0, "
                   f"{ch} * {m * n}, {m}, {n}, {cn}, {columns}, {cn})")
        _emit_sum_of_parts(k, partial, chunks, m * n, target)
    _emit_epilogue(node, k, p, target)
