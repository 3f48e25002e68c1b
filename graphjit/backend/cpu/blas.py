"""The GEMM calls of generated kernels: NumPy's OpenBLAS, called by a symbol LLVM resolves.

Which library and why: [The BLAS of compiled programs] in graphjit/_blas.py. A kernel calls

    cblas_sgemm(101, 111, 112, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb,
                0.0, out.ctypes.data, ldc)

(row-major, ``a`` as is, ``b`` transposed; the pointers are the flat buffers' addresses plus
element offsets), where ``cblas_sgemm`` is a Numba ``ExternalFunction``: the compiled code
names the symbol ``graphjit_cblas_sgemm64``, and LLVM resolves it when the code is loaded, to
the address ``cblas()`` registered for it in this process (NumPy's library is loaded with
local symbols, so the name could not be found otherwise). The machine code holds no address,
so Numba's cache and kernel bundles keep working across processes; what they need is that
``cblas()`` has run before a kernel's code is loaded: this module runs it on import, which a
kernel module does (it imports ``cblas_sgemm`` from here), and kernel_bundle.py imports this
module before it loads code.

The integer arguments are 64-bit (ILP64: the library's ``64_`` symbols), the enums 32-bit.
``GRAPHJIT_BLAS=numba`` makes kernels call Numba's ``np.dot`` (SciPy's OpenBLAS) instead,
as they do where NumPy has no such OpenBLAS.
"""
from __future__ import annotations

import functools
import os

from numba import types

from .kernel import kernel_import

# The symbols the kernels' code names (a name of graphjit's own: the library's names are
# not visible to LLVM, and ours says what the code expects: the ILP64 interface).
SYMBOLS = {"float32": "graphjit_cblas_sgemm64", "float64": "graphjit_cblas_dgemm64"}
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

_i32, _i64, _ptr = types.int32, types.int64, types.uintp
cblas_sgemm = types.ExternalFunction(SYMBOLS["float32"], types.void(
    _i32, _i32, _i32, _i64, _i64, _i64, types.float32, _ptr, _i64, _ptr, _i64, types.float32,
    _ptr, _i64))
cblas_dgemm = types.ExternalFunction(SYMBOLS["float64"], types.void(
    _i32, _i32, _i32, _i64, _i64, _i64, types.float64, _ptr, _i64, _ptr, _i64, types.float64,
    _ptr, _i64))
FUNCTIONS = {"float32": "cblas_sgemm", "float64": "cblas_dgemm"}
for _name in FUNCTIONS.values():
    kernel_import(_name, f"from graphjit.backend.cpu.blas import {_name}")


def enabled() -> bool:
    return os.environ.get("GRAPHJIT_BLAS", "").strip().lower() != "numba"


@functools.lru_cache(maxsize=None)
def cblas():
    """NumPy's OpenBLAS (graphjit/_blas.py), its GEMMs registered with LLVM under
    ``SYMBOLS``; None where it is missing or ``GRAPHJIT_BLAS=numba``: kernels then call
    ``np.dot``."""
    if not enabled():
        return None
    from ..._blas import numpy_openblas
    lib = numpy_openblas()
    if lib is None:
        return None
    import llvmlite.binding as llvm
    for dtype, symbol in SYMBOLS.items():  # (the kernels' names are the library's)
        llvm.add_symbol(symbol, lib.address(FUNCTIONS[dtype]))
    return lib


def program_openblas():
    """The OpenBLAS that compiled programs' matrix products call ([The BLAS of compiled
    programs] in graphjit/_blas.py): NumPy's, else SciPy's (Numba's ``np.dot``), or None."""
    from ..._blas import numba_openblas
    return cblas() or numba_openblas()


def calls_cblas(dtype: str) -> bool:
    """Whether kernels compute ``dtype`` products with ``cblas_?gemm`` (``gemm_call`` gives
    a line), not Numba's ``np.dot``."""
    return dtype in FUNCTIONS and cblas() is not None


def gemm_call(dtype: str, trans_a: bool, trans_b: bool, m: int, n: int, k: int,
              a: str, b: str, out: str, offsets=("0", "0", "0"), ldb=None,
              ldc=None) -> str | None:
    """The kernel line computing ``out = op(a) @ op(b)`` ([m, n], inner size ``k``) on the
    flat buffers ``a``, ``b``, ``out`` from the element ``offsets`` (expressions, non-negative)
    on, or None where kernels call ``np.dot`` (another dtype, no NumPy OpenBLAS). ``ldb``,
    ``ldc``: the distance between rows of ``b`` and ``out`` (by default a whole matrix's;
    more: some of its columns)."""
    if not calls_cblas(dtype):
        return None
    itemsize = 4 if dtype == "float32" else 8

    def pointer(buf, offset):
        if offset == "0":
            return f"{buf}.ctypes.data"
        return f"{buf}.ctypes.data + np.uint64(({offset}) * {itemsize})"

    lda = m if trans_a else k
    if ldb is None:
        ldb = k if trans_b else n
    one, zero = (("np.float32(1)", "np.float32(0)") if dtype == "float32" else ("1.0", "0.0"))
    return (f"{FUNCTIONS[dtype]}({ROW_MAJOR}, {TRANS if trans_a else NO_TRANS}, "
            f"{TRANS if trans_b else NO_TRANS}, {m}, {n}, {k}, {one}, {pointer(a, offsets[0])}, "
            f"{lda}, {pointer(b, offsets[1])}, {ldb}, {zero}, {pointer(out, offsets[2])}, "
            f"{n if ldc is None else ldc})")


cblas()  # registers the symbols before any kernel module that imports from here is loaded
