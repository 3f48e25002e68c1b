"""What an emitter writes through (``KernelWriter``), the emitter tables, the graph check.

An emitter is ``emit(node, k)``: it writes the body of the kernel ``k(in0, in1, ...,
out)`` (``out0, out1, ...`` for a node with several results) through ``k.line``,
``k.block`` and ``k.fresh``, or says what the driver does instead: fill an output with a
literal first (``k.fills``), run no kernel at all (``k.no_kernel``). Each target has one
``Emitters`` table; ``@EMITTERS.emits("op", ...)`` registers an emitter in the file named
like the op's family in graphjit/ops/ (``backend/cpu/reduce.py``, ``backend/cuda/reduce.py``).
Elementwise ops with a scalar expression share the target's generic emitter; the flat
views (reshape, detach) need none ([Flat buffers] in graphjit/ir/buffers.py).
"""
from __future__ import annotations

import inspect
import os
import re

from ...errors import GraphjitError
from ...ir.buffers import aliases_input
from ...ir.printer import format_node, value_names
from ..writer import Namer, SourceWriter


class KernelWriter:
    """The kernel being written for ``node``: its name, parameter names and body text, and
    what the driver does around it. ``reserved``: names the kernel's module defines."""

    def __init__(self, node, name: str, reserved=()):
        self.node = node
        self.name = name
        self.ins = [f"in{i}" for i in range(len(node.inputs))]
        # One output parameter, ``out``; a node with several results has ``out0, out1...``.
        self.outs = ["out"] if len(node.outs) == 1 else [f"out{j}" for j in range(len(node.outs))]
        self.code = SourceWriter(indent=1)
        self.fills = {}         # output position -> literal the driver fills it with first
        self.no_kernel = False  # the fills (or nothing) compute the node
        self._names = Namer(list(reserved) + self.ins + self.outs)

    @property
    def out(self) -> str:
        return self.outs[0]

    @out.setter
    def out(self, name: str) -> None:
        self.outs[0] = name

    def line(self, text: str = "") -> None:
        self.code.line(text)

    def block(self, header: str):
        """``header`` (ending in ``:``) and an indented body: ``with k.block("if a:"):``."""
        return self.code.block(header)

    def fresh(self, hint: str) -> str:
        """A local variable name unused so far in this kernel."""
        return self._names.fresh(hint)

    def release(self, name: str) -> None:
        """Let a later loop reuse ``name`` (its loop has ended)."""
        self._names.release(name)

    def fill(self, literal: str, j: int = 0) -> None:
        """The driver fills output ``j`` with ``literal`` before the kernel runs (zeros
        to accumulate into; a ``full`` node, with ``no_kernel``)."""
        self.fills[j] = literal

    @property
    def body(self) -> str:
        return self.code.text() if self.code.lines else "    pass\n"


class Emitters:
    """One target's emitters, by op name; ``generic`` handles elementwise ops that have a
    scalar expression and no emitter of their own; ``overrides``: op name -> the target's
    own scalar expression for an op, ``calls``: how the target renames ``math.*`` calls in
    scalar expressions (see core/scalar.py)."""

    def __init__(self, target: str):
        self.target = target
        self.table: dict = {}
        self.generic = None
        self.overrides: dict = {}
        self.calls = None

    def emits(self, *op_names):
        """Decorator: register the function as the emitter of ``op_names``."""
        def register(fn):
            for name in op_names:
                if name in self.table:
                    raise ValueError(f"op {name!r} has two {self.target} emitters")
                self.table[name] = fn
            return fn
        return register

    def emits_generic(self, fn):
        """Decorator: the emitter of elementwise ops with a scalar expression."""
        self.generic = fn
        return fn

    def for_op(self, op):
        """The emitter of ``op`` (an OpDef), or None: the target cannot compile it (or it
        needs no kernel: a flat view, see ``needs_kernel``)."""
        if op.name in self.table:
            return self.table[op.name]
        if op.kind == "elementwise" and op.scalar is not None:
            return self.generic
        return None

    def describe(self, op) -> list:
        """Lines saying where ``op``'s kernel comes from on this target (``graphjit
        describe``): its emitter's file:line, and any override of its scalar expression."""
        head = f"{self.target}: "
        if aliases_input(op):
            return [head + "no kernel, its result is its input's buffer ([Flat buffers] at "
                           f"{_where(aliases_input)})"]
        fn = self.for_op(op)
        if fn is None:
            return [head + "none (this target cannot compile the op)"]
        generic = fn is self.generic and op.name not in self.table
        lines = [head + f"{fn.__name__} at {_where(fn)}"
                 + (" (the generic one, over the op's scalar expression)" if generic else "")]
        if op.name in self.overrides:
            override = self.overrides[op.name]
            lines.append(f"  scalar expression overridden: {override.__name__} at "
                         f"{_where(override)}")
        elif generic and self.calls is not None:
            for name in _math_calls(op):
                renamed = [(dt, self.calls(f"math.{name}", dt)) for dt in ("float32", "float64")]
                renamed = [f"{new} ({dt})" for dt, new in renamed if new is not None]
                if renamed:
                    lines.append(f"  math.{name} as {', '.join(renamed)}: {_where(self.calls)}")
        return lines


def _math_calls(op) -> list:
    """The ``math.*`` functions an op's scalar expression calls (for ops whose expression
    needs no attributes)."""
    try:
        n = sum(1 for p in inspect.signature(op.scalar).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        text = op.scalar(*[f"x{i}" for i in range(n)])
    except Exception:
        return []
    return sorted(set(re.findall(r"\bmath\.(\w+)", text)))


def _where(fn) -> str:
    try:
        path = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return "?"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    return f"{os.path.relpath(path, root)}:{line}"


def needs_kernel(op) -> bool:
    """False for the flat views: their result is their input's buffer."""
    return not aliases_input(op)


def check_graph(graph, emitters, what: str) -> None:
    """Raise a GraphjitError naming the first node the target cannot compile: a gradient
    request autodiff has not expanded, or an op with no emitter. ``what``: the target as
    the message names it ("CPU")."""
    names = None
    for node in graph.nodes:
        if node.op.name == "grad":
            names = names or value_names(graph)
            raise GraphjitError(
                f"the graph {graph.name!r} still holds a gradient request "
                f"({format_node(node, names)}); run the autodiff pass (passes/autodiff) to expand "
                "it into backward nodes before compiling", op="grad")
        if needs_kernel(node.op) and emitters.for_op(node.op) is None:
            names = names or value_names(graph)
            raise GraphjitError(f"the {what} backend has no emitter for op {node.op.name!r} "
                                f"({format_node(node, names)})", op=node.op.name)
