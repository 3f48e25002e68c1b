"""What a CPU emitter receives: a ``KernelWriter`` for one node, and the emitter table.

Every buffer is a flat 1-D array ([Flat buffers] in graphjit/ir/buffers.py). An emitter
``emit(node, k)`` writes the body of the ``@njit`` kernel ``k(in0, in1, ..., out)`` (see
core/kernel.py); registered per op name with ``@emits("op", ...)`` in the file named like
the op's family in graphjit/ops/, elementwise ops with a ``scalar`` expression sharing one
generic emitter (``elementwise.py``).
"""
from __future__ import annotations

import copy

from ...ir.printer import format_node
from ..core.kernel import Emitters
from ..core.kernel import KernelWriter as _KernelWriter
from . import vmath

EMITTERS = Emitters("cpu")
emits = EMITTERS.emits

# Names the generated module defines at top level; kernel locals must not shadow them.
MODULE_GLOBALS = ("math", "np", "numba", "njit", "prange", "kernel", "parallel_kernel",
                  "acc_add", "run_kernel", "buffer_view", "load_address", "run_row",
                  "import_sibling") + vmath.NAMES

# Functions kernel bodies may call that live in a module of their own: name -> import line
# (``kernel_import``); a kernel module imports those its body uses.
KERNEL_IMPORTS: dict = {}


def kernel_import(name: str, line: str) -> None:
    """Let kernel bodies call ``name``, imported by ``line`` (an emitter's helper)."""
    KERNEL_IMPORTS[name] = line


class KernelWriter(_KernelWriter):
    """The kernel being written for ``node`` (see core/kernel.py), and what the CPU adds:
    whether it runs a parallel loop, whether it calls a threaded BLAS, unsigned indices."""

    def __init__(self, node, name: str, names: dict):
        super().__init__(node, name, MODULE_GLOBALS)
        self.ir_line = format_node(node, names)
        self.parallel = False               # its outer loop is a prange (see [Parallel loops])
        # it calls BLAS on products large enough for OpenBLAS's threads ([Threads under load])
        self.threaded_blas = False
        self.chunk = None                   # the prange's chunk variable

    def at(self, index: str) -> str:
        """``index`` (an element offset) as written in ``buf[...]``: unsigned in a parallel
        kernel, where Numba's check for negative indices would keep loops from vectorising
        (see [Parallel loops] in loops.py)."""
        return f"np.uint64({index})" if self.parallel and not index.isdigit() else index

    def view(self, node, ins) -> "KernelWriter":
        """A writer for ``node`` whose inputs are the variables ``ins``, writing into this
        kernel's body, names and outputs (an epilogue emitted inside a GEMM kernel)."""
        sub = copy.copy(self)
        sub.node, sub.ins = node, list(ins)
        return sub
