"""What an emitter receives: a ``KernelWriter`` for one node, and the emitter table.

# NOTE: [Flat buffers]
Every buffer of a CPU program is a 1-D C-contiguous NumPy array holding its value in C
order; shapes exist only in the generated index arithmetic, where they are constants.
So ``reshape`` (and ``detach``) cost nothing: the output *is* the input's buffer
(``KernelWriter.alias``). Kernels never allocate; the driver allocates their output buffers
(empty, zeroed, or filled with a constant) and passes them in.

An emitter is ``emit(node, k)``; it writes the body of the kernel ``k.name(in0, in1, ...,
out)`` through ``k.line``/``k.block``, or says the node needs no kernel (``k.alias``,
``k.fill``). Emitters are registered per op name with ``@emits("op", ...)``; elementwise
ops with a ``scalar`` expression share one generic emitter (``elementwise.py``).
"""
from __future__ import annotations

import copy

from ...ir.printer import format_node
from ..writer import Namer, SourceWriter
from . import vmath

EMITTERS: dict = {}

# Names the generated module defines at top level; kernel locals must not shadow them.
MODULE_GLOBALS = ("math", "np", "numba", "njit", "prange", "kernel", "parallel_kernel",
                  "acc_add", "run_kernel", "import_sibling") + vmath.NAMES


# Functions kernel bodies may call that live in a module of their own: name -> import line
# (``kernel_import``); a kernel module imports those its body uses.
KERNEL_IMPORTS: dict = {}


def kernel_import(name: str, line: str) -> None:
    """Let kernel bodies call ``name``, imported by ``line`` (an emitter's helper)."""
    KERNEL_IMPORTS[name] = line


# Ops whose emitter may make the output a view of an input's buffer (``KernelWriter.alias``):
# code generation asks only their emitters which buffers are shared before it emits kernels.
MAY_ALIAS = set()


def emits(*op_names, may_alias: bool = False):
    """Register the decorated function as the CPU emitter of ``op_names``; ``may_alias``:
    it may call ``k.alias`` (no other emitter can)."""
    def register(fn):
        for name in op_names:
            if name in EMITTERS:
                raise ValueError(f"op {name!r} has two CPU emitters")
            EMITTERS[name] = fn
            if may_alias:
                MAY_ALIAS.add(name)
        return fn
    return register


class KernelWriter:
    """The kernel being written for ``node``: its name, parameter names and body text."""

    def __init__(self, node, name: str, names: dict):
        self.node = node
        self.name = name
        self.ir_line = format_node(node, names)
        self.ins = [f"in{i}" for i in range(len(node.inputs))]
        # One output parameter, ``out``; a node with several results has ``out0, out1...``.
        self.outs = ["out"] if len(node.outs) == 1 else [f"out{j}" for j in range(len(node.outs))]
        self.code = SourceWriter(indent=1)
        self.alias_of: int | None = None   # output is input i's buffer (no kernel)
        self.fill_value = None              # driver fills the output with this literal (no kernel)
        self.zero_output = False            # driver zeroes the output before the kernel runs
        self.parallel = False               # its outer loop is a prange (see [Parallel loops])
        # it calls BLAS on products large enough for OpenBLAS's threads ([Threads under load])
        self.threaded_blas = False
        self.chunk = None                   # the prange's chunk variable
        self._names = Namer(list(MODULE_GLOBALS) + self.ins + self.outs)

    @property
    def out(self) -> str:
        return self.outs[0]

    @out.setter
    def out(self, name: str) -> None:
        self.outs[0] = name

    # ---- writing the body -------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        self.code.line(text)

    def block(self, header: str):
        return self.code.block(header)

    def fresh(self, hint: str) -> str:
        """A local variable name unused so far in this kernel."""
        return self._names.fresh(hint)

    def at(self, index: str) -> str:
        """``index`` (an element offset) as written in ``buf[...]``: unsigned in a parallel
        kernel, where Numba's check for negative indices would keep loops from vectorising
        (see [Parallel loops] in loops.py)."""
        return f"np.uint64({index})" if self.parallel and not index.isdigit() else index

    def release(self, name: str) -> None:
        """Let a later loop reuse ``name`` (its loop has ended)."""
        self._names.release(name)

    def view(self, node, ins) -> "KernelWriter":
        """A writer for ``node`` whose inputs are the variables ``ins``, writing into this
        kernel's body, names and outputs (an epilogue emitted inside a GEMM kernel)."""
        sub = copy.copy(self)
        sub.node, sub.ins = node, list(ins)
        return sub

    # ---- no kernel needed -------------------------------------------------------------------

    def alias(self, i: int) -> None:
        """The output is input ``i``'s buffer, unchanged (a free reshape, see [Flat buffers])."""
        if self.node.op.name not in MAY_ALIAS:
            raise AssertionError(f"the emitter of {self.node.op.name!r} aliases its output "
                                 "but was not registered with emits(..., may_alias=True)")
        self.alias_of = i

    def fill(self, literal: str) -> None:
        """The driver allocates the output filled with ``literal`` (a typed source literal)."""
        self.fill_value = literal

    @property
    def body(self) -> str:
        return self.code.text() if self.code.lines else "    pass\n"
