"""``out = a @ b.T`` as blocked dot products: the weight gradient of a convolution.

# NOTE: [Dot-product GEMM]
A convolution's weight gradient is ``dW[OC, C*KH*KW] = dY[OC, B*OH*OW] @ cols[C*KH*KW,
B*OH*OW].T``: few rows and columns, and an inner dimension as long as the batch's output
positions (W7's first layer: 6 x 75 over 50176). OpenBLAS packs both operands and runs a
microkernel built for large square tiles; on this shape it reached 11-15 GFLOP/s (3.1-4.0
ms on one core). Both operands have the inner dimension contiguous, so each output is a dot
product of two contiguous rows, and a 2 x 3 block of outputs shares its loads: per inner
index 5 loads feed 6 multiply-adds, which LLVM vectorises (16 lanes) when the sums may be
reassociated. Measured on the development VM (AMD EPYC, AVX-512, one thread):

    a [6, 50176] @ b [75, 50176].T    OpenBLAS 3.10 ms    gemm_nt 1.24 ms
    a [16, 6400] @ b [150, 6400].T    OpenBLAS 0.75 ms    gemm_nt 0.38 ms

``use_dots`` (``dots_shaped`` in graphjit/ir/gemm.py) says when the emitter calls it instead
of BLAS (benchmarks/gemm_nt.py measures the table it is drawn from). The inner dimension is summed in blocks of ``BLOCK`` (so the
block of both operands' rows stays in L2 cache), partial sums per block added to ``out``:
the order of a sum differs from OpenBLAS's, as any two GEMMs' do. Only the product's sums
are reassociated and contracted (fast-math flags "reassoc" and "contract"); NaN and inf
propagate as in any product.

Ragged edges: a block whose rows (columns) run past ``m`` (``n``) reads the last row
(column) again in their place and stores only the valid outputs, so one loop body serves
every shape.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np
from numba import njit

from ...ir.gemm import dots_shaped
from .kernel import kernel_import
from .loops import PARALLEL_CHUNKS

BLOCK = 1024          # inner indices per block: 2 x 1024 + 3 x 1024 floats, 20 KiB
ROWS, COLS = 2, 3     # the register block of outputs


# (With a CPython wrapper, unlike kernels: benchmarks/gemm_nt.py and the tests call it.)
@njit(fastmath={"reassoc", "contract"}, boundscheck=False, error_model="numpy", cache=True)
def gemm_nt(a, b, out, a_at, b_at, out_at, m, n, k, lda, ldb):
    """``out[out_at:][:m*n] = A @ B.T`` on flat buffers, where row ``i`` of ``A`` is
    ``a[a_at + i*lda:][:k]`` and row ``j`` of ``B`` is ``b[b_at + j*ldb:][:k]`` (offsets in
    elements; ``lda == ldb == k`` for whole matrices, larger for a slice of their columns, as
    the parts of a parallel product are). Unsigned indices: Numba's check for negative ones
    would keep the inner loop from vectorising."""
    u = np.uint64
    lda_ = u(lda)
    ldb_ = u(ldb)
    for i in range(m * n):
        out[out_at + i] = 0
    for k0 in range(0, k, BLOCK):
        k1 = u(min(k0 + BLOCK, k))
        for i in range(0, m, ROWS):
            i1 = min(i + 1, m - 1)
            r0 = u(a_at) + u(i) * lda_
            r1 = u(a_at) + u(i1) * lda_
            for j in range(0, n, COLS):
                j1 = min(j + 1, n - 1)
                j2 = min(j + 2, n - 1)
                c0 = u(b_at) + u(j) * ldb_
                c1 = u(b_at) + u(j1) * ldb_
                c2 = u(b_at) + u(j2) * ldb_
                s00 = a.dtype.type(0)
                s01 = s00
                s02 = s00
                s10 = s00
                s11 = s00
                s12 = s00
                for p in range(u(k0), k1):
                    x0 = a[r0 + p]
                    x1 = a[r1 + p]
                    y0 = b[c0 + p]
                    y1 = b[c1 + p]
                    y2 = b[c2 + p]
                    s00 += x0 * y0
                    s01 += x0 * y1
                    s02 += x0 * y2
                    s10 += x1 * y0
                    s11 += x1 * y1
                    s12 += x1 * y2
                o = out_at + i * n + j
                out[o] += s00
                if j + 1 < n:
                    out[o + 1] += s01
                if j + 2 < n:
                    out[o + 2] += s02
                if i + 1 < m:
                    out[o + n] += s10
                    if j + 1 < n:
                        out[o + n + 1] += s11
                    if j + 2 < n:
                        out[o + n + 2] += s12


kernel_import("gemm_nt", "from graphjit.backend.cpu.gemm_nt import gemm_nt")


def chunks(m: int, n: int, k: int, min_work: int) -> int:
    """How many parts of the inner dimension a kernel computes ``a[m, k] @ b[n, k].T`` in,
    each its own ``gemm_nt`` in a parallel loop, their partial products added in part order
    afterwards: 1 (serial) below ``min_work`` multiply-adds or two blocks. The count depends
    on the shape only, never on the threads, so neither does the result."""
    if m * n * k < min_work or k < 2 * BLOCK:
        return 1
    return min(PARALLEL_CHUNKS, k // BLOCK)


# Whether a product ``a[m, k] @ b[n, k].T`` calls gemm_nt: a rule of the IR's, since
# passes/gemm decides by it too which convolutions read their windows in chunks.
use_dots = dots_shaped


@functools.cache
def version() -> str:
    """A hash of this file: the kernels that call ``gemm_nt`` have its code compiled into
    their cache entries, so their text names the version they were built with."""
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]
