"""The random program generator: what a program is made of, and how it stays valid.

# NOTE: [Generator grammar]
A program (graphjit/fuzz/program.py) is

    build:    parameters, buffers, an optimizer (or none, or a hand-written update)
    prologue: zero_grad (to None / to zeros / none) | nothing
    forward:  stmt+ ; loss = term (+ term)*        (terms: (v * w).sum(), v.mean(), ...)
    tail:     loss.backward() | graphjit.grad(...) ; grad-stmt* ; optimizer step ; zero_grad?
    calls:    1-4 calls with new argument data each (lr decayed between calls, sometimes)

    stmt := op-stmt                      one spec of graphjit/fuzz/specs.py (every registry op)
          | inplace-stmt                 add_/mul_/clamp_/copy_/fill_/... on a temporary, a
                                         buffer, an argument, a view of one, or x[k] = v
          | with gj.no_grad(): stmt+     (parameters may be changed in place there)
          | for it in range(n): c = ...  (unrolled by tracing; c carried across iterations)
          | if p.grad is not None: c = c * (1 + p.grad.tanh().mean())

The generator keeps a table of the variables in scope with what it knows of each value:
shape, dtype, requires_grad, a bound on its magnitude (``mag``) and a positive lower bound
when it has one (``lb``), whether it is exact (input data moved around without rounding:
the only values kinks and ``==`` are applied to by preference, so eager and compiled see
the same side of every kink), which storage it shares (views), and which parameters its
gradient reaches. Ops are only applied where their domain holds (log of positive values,
exp of small ones, var over two or more elements), and magnitudes stay below ~1e3, so a
difference between eager and compiled is a bug, not rounding blown up.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .program import FLOAT_DTYPES, Input, Program, Stmt

MAX_INPUTS = 8
MAX_MAG = 1e3


@dataclass
class Var:
    name: str
    shape: tuple
    dtype: str
    grad: bool = False            # requires grad (part of the autograd graph)
    mag: float = 2.0              # |value| <= mag
    lb: float | None = None       # value >= lb > 0, when known
    exact: bool = True            # input data without rounding (kinks are safe on it)
    storage: str = ""             # the variable whose memory this one shares
    view: bool = False            # a view: in-place changes reach `storage`
    readonly: bool = False        # a broadcast (expand) view
    role: str = "tmp"             # "arg", "param", "buffer" or "tmp"
    deps: frozenset = frozenset()  # parameters its gradient reaches
    high: int = 0                 # int64 index values lie in [0, high)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def leaf(self) -> bool:
        return self.role != "tmp"


class SkipSpec(Exception):
    """A spec does not apply to the current variables (the generator picks another)."""


class Gen:
    """The state of one program's generation."""

    def __init__(self, rng: random.Random, program: Program, features: frozenset):
        self.r = rng
        self.p = program
        self.features = features
        self.vars: dict[str, Var] = {}
        self.order: list[str] = []
        self.grad_enabled = True
        self.in_loop = False
        self.out: list = program.forward       # where statements go (a block's body inside one)
        self.counters: dict[str, int] = {}
        self.unsure_storage: set[str] = set()  # storages some reshape may alias (no in-place)
        # storages a differentiable op has read while autograd recorded: changing them in
        # place before the backward is an error in eager mode if that op saved them
        self.fed_storage: set[str] = set()
        self.spec_uses: dict[str, int] = {}

    # ---- names and inputs ---------------------------------------------------------------

    def name(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0)
        self.counters[prefix] = n + 1
        return f"{prefix}{n}"

    def has(self, feature: str) -> bool:
        return feature in self.features

    def rand_shape(self, rank: int | None = None) -> tuple:
        if rank is None:
            rank = self.r.choices([0, 1, 2, 3], [1, 5, 8, 3])[0]
        dims = tuple(self.r.choice([1, 2, 2, 3, 3, 4]) for _ in range(rank))
        return dims if self.has("unit_dims") else tuple(d if d > 1 else 2 for d in dims)

    def new_input(self, shape=None, dtype=None, role=None, domain="real",
                  requires_grad=None, force: bool = False) -> Var:
        if len(self.p.inputs) >= MAX_INPUTS and not force:
            raise SkipSpec("too many inputs")
        shape = self.rand_shape() if shape is None else tuple(shape)
        dtype = dtype or self.p.dtype
        if role is None:
            if dtype not in FLOAT_DTYPES:
                role = "arg"
            else:
                role = self.r.choices(["param", "arg", "buffer"], [5, 4, 1])[0]
        if requires_grad is None:
            requires_grad = (role == "param" and self.r.random() > 0.05) or (
                role == "arg" and dtype in FLOAT_DTYPES and self.r.random() < 0.3)
        name = self.name({"param": "p", "arg": "x", "buffer": "b"}[role])
        inp = Input(name, role, shape, dtype, domain, requires_grad, seed=self.p.seed * 100003
                    + self.p.index)
        self.p.inputs.append(inp)
        mag, lb = {"positive": (2.0, 0.5), "unit": (0.5, None)}.get(domain, (2.0, None))
        if domain.startswith("index:"):
            high = int(domain.split(":")[1])
            mag, lb = float(high), None
        else:
            high = 0
        v = Var(name, shape, dtype, grad=requires_grad, mag=mag, lb=lb, exact=True,
                storage=name, role=role, deps=frozenset([name]) if requires_grad else frozenset(),
                high=high)
        self._add(v)
        return v

    def _add(self, v: Var) -> None:
        self.vars[v.name] = v
        if v.name in self.order:
            self.order.remove(v.name)
        self.order.append(v.name)

    # ---- choosing operands ----------------------------------------------------------------

    def candidates(self, pred=None) -> list:
        return [self.vars[n] for n in self.order if pred is None or pred(self.vars[n])]

    def pick(self, pred=None, recent: float = 0.5) -> Var | None:
        cands = self.candidates(pred)
        if not cands:
            return None
        if self.r.random() < recent:
            return cands[-1] if self.r.random() < 0.6 else self.r.choice(cands[-3:])
        return self.r.choice(cands)

    def float_var(self, pred=None, shape=None, new: float = 0.25, domain="real",
                  prefer_exact: bool = False, role=None) -> Var:
        """An existing floating variable (satisfying ``pred``, of ``shape``), or a new input."""
        def ok(v):
            return v.is_float and (shape is None or v.shape == tuple(shape)) and (
                pred is None or pred(v))
        if prefer_exact and self.r.random() < 0.7:
            v = self.pick(lambda v: ok(v) and v.exact)
            if v is not None:
                return v
        if self.r.random() >= new:
            v = self.pick(ok)
            if v is not None:
                return v
        try:
            return self._new_input_where(ok, shape, domain, role)
        except SkipSpec:
            v = self.pick(ok)
            if v is None:
                raise
            return v

    def _new_input_where(self, ok, shape, domain, role) -> Var:
        """A new floating input for which ``ok`` holds (tried on a few random shapes)."""
        mag, lb = {"positive": (2.0, 0.5), "unit": (0.5, None)}.get(domain, (2.0, None))
        for _ in range(8):
            s = tuple(shape) if shape is not None else self.rand_shape()
            if ok(Var("?", s, self.p.dtype, mag=mag, lb=lb, storage="?")):
                return self.new_input(shape=s, domain=domain, role=role)
        raise SkipSpec("no input shape fits")

    def positive_var(self, min_lb: float = 0.25, shape=None) -> Var:
        return self.float_var(lambda v: v.lb is not None and v.lb >= min_lb and v.mag <= 50,
                              shape=shape, new=0.4, domain="positive")

    def partner_shape(self, shape: tuple) -> tuple:
        """A shape that broadcasts to ``shape``."""
        shape = tuple(shape)
        k = self.r.random()
        if k < 0.45 or not shape:
            return shape
        if k < 0.7:
            ones = tuple(s if self.r.random() < 0.5 else 1 for s in shape)
            return ones if self.has("unit_dims") else shape
        if k < 0.9:
            return shape[self.r.randrange(len(shape) + 1):]
        return ()

    def partner(self, shape: tuple, pred=None, new: float = 0.3, domain="real") -> Var:
        """A floating variable whose shape broadcasts to ``shape`` (the result keeps it)."""
        def fits(v):
            return v.is_float and broadcasts_to(v.shape, shape) and (pred is None or pred(v))
        if self.r.random() >= new:
            v = self.pick(fits)
            if v is not None:
                return v
        try:
            return self._new_input_where(fits, self.partner_shape(shape), domain, None)
        except SkipSpec:
            v = self.pick(fits)
            if v is None:
                raise
            return v

    # ---- emitting statements ---------------------------------------------------------------

    def emit(self, code: str, args: list, *, shape, dtype, spec: str, feature: str = "ops",
             grad=None, mag: float = 2.0, lb=None, exact: bool = False, view_of: Var | None = None,
             readonly: bool = False, unsure_alias: Var | None = None, high: int = 0,
             out: str | None = None, deps: frozenset | None = None) -> Var:
        """Append ``out = code`` and return the new variable. ``grad``: None propagates
        requires_grad from the floating arguments (False for non-differentiable ops)."""
        shape, mag = tuple(shape), float(mag)
        if not math.isfinite(mag) or mag > MAX_MAG:
            raise SkipSpec(f"{spec}: magnitude {mag:g}")
        if lb is not None and not lb > 0:
            lb = None
        float_args = [a for a in args if a.is_float]
        if grad is None:
            grad = self.grad_enabled and dtype in FLOAT_DTYPES and any(a.grad for a in float_args)
        if deps is None:
            deps = frozenset().union(*[a.deps for a in float_args]) if grad else frozenset()
        name = out or self.name("v")
        storage = view_of.storage if view_of is not None else name
        if unsure_alias is not None:
            storage = unsure_alias.storage
            self.unsure_storage.add(storage)
        v = Var(name, shape, dtype, grad=bool(grad), mag=mag, lb=lb, exact=exact, storage=storage,
                view=view_of is not None, readonly=readonly or bool(view_of and view_of.readonly),
                deps=deps, high=high)
        stmt = Stmt(code, [a.name for a in args], name, spec=spec, feature=feature,
                    types=[(a.shape, a.dtype) for a in args], out_type=(shape, dtype))
        self.out.append(stmt)
        if v.grad:
            self.fed_storage.update(a.storage for a in args)
        self._add(v)
        self.spec_uses[spec] = self.spec_uses.get(spec, 0) + 1
        return v

    def emit_inplace(self, code: str, target: Var, args: list, *, spec: str, feature: str,
                     mag: float, lb=None, grad_from_args: bool = True) -> None:
        """Append an in-place statement on ``target`` (``{a0}`` in ``code``) and update what
        is known of every variable sharing its storage."""
        if not math.isfinite(mag) or mag > MAX_MAG:
            raise SkipSpec(f"{spec}: magnitude {mag:g}")
        if target.role in ("param", "buffer"):
            code = _method_form(code)
        all_args = [target] + list(args)
        stmt = Stmt(code, [a.name for a in all_args], None, spec=spec, feature=feature,
                    types=[(a.shape, a.dtype) for a in all_args])
        self.out.append(stmt)
        self.spec_uses[spec] = self.spec_uses.get(spec, 0) + 1
        gets_grad = self.grad_enabled and grad_from_args and any(a.grad for a in args if a.is_float)
        extra = frozenset().union(*[a.deps for a in args if a.is_float]) if gets_grad else frozenset()
        for v in self.vars.values():
            if v.storage == target.storage:
                v.mag = max(v.mag, mag) if v is not target else mag
                v.lb = None if (lb is None or v.lb is None) else min(v.lb, lb)
                if v is target:
                    v.lb = lb
                v.exact = False
                if gets_grad and v is target:
                    v.grad, v.deps = True, v.deps | extra

    def inplace_target(self, pred=None, views: bool = False) -> Var | None:
        """A variable that may be changed in place here without an autograd error: a
        temporary (not a view unless ``views``), a buffer, an argument without grad, or
        (under no_grad) a parameter. Never a storage a reshape may alias, never read-only."""
        def ok(v):
            if not v.is_float or v.readonly or v.storage in self.unsure_storage:
                return False
            if v.storage in self.fed_storage and not self.has("saved_inplace"):
                return False
            if v.view and not views:
                return False
            if v.view:
                base = self.vars.get(v.storage)
                if base is None or (self.grad_enabled and (base.grad or v.grad)):
                    return False
            elif v.leaf and v.grad and self.grad_enabled:
                return False
            if v.role == "param" and not self.has("param_inplace"):
                return False
            return pred is None or pred(v)
        return self.pick(ok, recent=0.3)

    def block(self, kind: str, count: int = 0, args=(), grad_enabled=None):
        """Context manager: statements emitted inside go into a new block's body."""
        return _Block(self, kind, count, list(args), grad_enabled)


_AUGMENTED = {"+=": "add_", "-=": "sub_", "*=": "mul_", "/=": "div_"}


def _method_form(code: str) -> str:
    """``{a0} += v`` as ``{a0}.add_(v)``: an augmented assignment to a name of the enclosing
    function (a parameter or buffer made in build()) would make it a local variable of the
    nested function (UnboundLocalError)."""
    for op, method in _AUGMENTED.items():
        prefix = "{a0} " + op + " "
        if code.startswith(prefix):
            return "{a0}." + method + "(" + code[len(prefix):] + ")"
    return code


class _Block:
    def __init__(self, g: Gen, kind, count, args, grad_enabled):
        self.g, self.kind, self.count, self.args, self.grad_enabled = g, kind, count, args, \
            grad_enabled
        self.stmt = Stmt(block=kind, count=count, args=args, spec=kind, feature=kind)

    def __enter__(self):
        g = self.g
        self.saved = (g.out, g.grad_enabled)
        g.out.append(self.stmt)
        g.out = self.stmt.body
        if self.grad_enabled is not None:
            g.grad_enabled = self.grad_enabled
        return self.stmt

    def __exit__(self, *exc):
        self.g.out, self.g.grad_enabled = self.saved
        if exc[0] is None and not self.stmt.body:
            self.g.out.remove(self.stmt)
        return False


def broadcasts_to(small: tuple, big: tuple) -> bool:
    """Whether ``small`` broadcasts to exactly ``big``."""
    if len(small) > len(big):
        return False
    for s, b in zip(reversed(small), reversed(big)):
        if s != b and s != 1:
            return False
    return True


def broadcast(a: tuple, b: tuple) -> tuple | None:
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(max(x, y))
    return tuple(reversed(out))


def result_dtype(*vs) -> str:
    """Promotion among floating variables (0-d tensors are weak, as in PyTorch)."""
    dims = [v for v in vs if v.shape]
    pool = dims or list(vs)
    return "float64" if any(v.dtype == "float64" for v in pool) else "float32"
