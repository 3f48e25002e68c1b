"""The op registry: one ``OpDef`` per primitive op, holding everything about it.

Where is op X? ``graphjit/ops/<family>.py``, in its ``register(OpDef(name="X", ...))``
call; ``graphjit.ops.describe("X")`` prints the file and line.

An OpDef carries
- ``infer(*input_types, **attrs) -> TensorType``: static shape and dtype, raising
  ShapeError/DTypeError that name the op and the shapes;
- ``impl(*arrays, **attrs) -> ndarray``: the eager NumPy kernel;
- ``vjp(g, out, *inputs, **attrs) -> tuple``: the gradient rule, written with graphjit ops
  (``graphjit.ops.api``), one entry per input, ``None`` for "no gradient work"; the same rule
  serves the eager tape, the compiler's autodiff pass and higher-order gradients;
- ``saves``: which values the vjp reads (indices of inputs, "out", "1:" for every input
  after the first). Unsaved inputs
  reach the vjp as shape/dtype-only stand-ins, so the tape keeps no memory alive for them
  and the in-place-modification check only fires for values the rule really reads;
- ``scalar(*operand_exprs, **attrs) -> str``: for elementwise ops, a scalar expression in
  Python/Numba syntax (``math.*`` functions) that code generators inline into fused loops;
- ``cost(out_type, *input_types, **attrs) -> (flops, bytes)``;
- ``kind``: "elementwise", "reduce", "matmul", "shape", "index" or "opaque".

# NOTE: [Interpreters]
``bind(op, *inputs, **attrs)`` hands the op to the interpreter on top of a context-local
stack: the eager interpreter (NumPy + autograd tape, installed by graphjit/autograd_tape.py) by
default, a graph builder while tracing. The registry imports neither, so ops/ sits below
both in the layering.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
from dataclasses import dataclass, field
from typing import Callable

from ..shapes import TensorType, numel


def _default_cost(out: TensorType, *inputs: TensorType, **attrs):
    moved = sum(numel(t.shape) * t.dtype.itemsize for t in inputs)
    moved += numel(out.shape) * out.dtype.itemsize
    return numel(out.shape), moved


@dataclass(frozen=True, eq=False)
class OpDef:
    name: str
    kind: str
    infer: Callable
    impl: Callable
    vjp: Callable | None
    saves: tuple = ()
    scalar: Callable | None = None
    cost: Callable = _default_cost
    # Why an op has no vjp (comparisons, argmax, integer results); shown by describe().
    no_grad_reason: str | None = None
    # True when impl may return a view of input 0 (the output then shares its version counter).
    view: bool = False
    # Ops with a variable number of inputs (cat, index) say so; infer checks the count.
    variadic: bool = False
    # For a composite op (gelu, silu): ``decompose(*inputs, **attrs)`` rebuilds its value
    # from simpler ops through ``graphjit.ops.api`` (like a VJP rule), so that the compiler
    # (passes/decompose) can share its parts with the backward graph. It must compute what
    # ``impl`` computes, in the same order of operations.
    decompose: Callable | None = None
    source: str = field(default="")

    def __repr__(self) -> str:
        return f"<op {self.name}>"

    def saves_input(self, i: int) -> bool:
        """Whether the vjp reads the value of input ``i`` ("1:" in saves: every input after x)."""
        return i in self.saves or (i >= 1 and "1:" in self.saves)


_OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in _OPS:
        raise ValueError(f"op {op.name!r} is registered twice")
    if op.vjp is None and op.no_grad_reason is None:
        raise ValueError(f"op {op.name!r} has no vjp and no no_grad_reason")
    # The op's home is the module-level line that declared it (past helpers like _unary).
    frame = inspect.currentframe().f_back
    while frame.f_back is not None and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    object.__setattr__(op, "source", f"{frame.f_code.co_filename}:{frame.f_lineno}")
    _OPS[op.name] = op
    return op


def get(name: str) -> OpDef:
    try:
        return _OPS[name]
    except KeyError:
        raise KeyError(f"no op named {name!r} is registered") from None


def all_ops() -> dict[str, OpDef]:
    return dict(_OPS)


def describe(name: str) -> str:
    """Where an op is defined, and what it has: ``graphjit.ops.describe("exp")``."""
    op = get(name)
    lines = [f"op {op.name} ({op.kind}) defined at {op.source}"]
    for attr in ("infer", "impl", "vjp", "scalar", "cost"):
        fn = getattr(op, attr)
        if fn is None:
            note = f" ({op.no_grad_reason})" if attr == "vjp" and op.no_grad_reason else ""
            lines.append(f"  {attr}: none{note}")
            continue
        try:
            where = f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
        except (OSError, TypeError):
            where = "?"
        lines.append(f"  {attr}: {getattr(fn, '__qualname__', fn)} at {where}")
    lines.append(f"  saves: {op.saves}")
    return "\n".join(lines)


# ---- interpreters -----------------------------------------------------------------------

_default_interpreter = None
_stack: contextvars.ContextVar[tuple] = contextvars.ContextVar("graphjit_interpreters", default=())


def set_default_interpreter(interp) -> None:
    global _default_interpreter
    _default_interpreter = interp


def current_interpreter():
    stack = _stack.get()
    return stack[-1] if stack else _default_interpreter


@contextlib.contextmanager
def interpreter(interp):
    """Make ``interp`` the target of ``bind`` inside the block (used by tracing)."""
    token = _stack.set(_stack.get() + (interp,))
    try:
        yield interp
    finally:
        _stack.reset(token)


def bind(op: OpDef, *inputs, **attrs):
    return current_interpreter().apply(op, inputs, attrs)
