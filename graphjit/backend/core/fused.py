"""A fused body laid out over its loop domain, and the writer of its steps.

Both targets compile a ``fused`` node (see [Fused nodes] in graphjit/ir/fused.py) the same
way up to how they walk the domain (the CPU's loop nests: [Fused loops] in
backend/cpu/fused.py; CUDA's threads and blocks: [CUDA kernels] in backend/cuda/fused.py):

- ``FusedLayout``: the domain, the row reductions' dims, column sums and total beside
  them, which dims are rows and which are a row's elements, the pass over a row each step
  runs in (``phase``), the level each step varies at (``levels``: INV once, ROW once per
  row, ELEM per element) and the stride vector over the domain of every value as a step
  reads it or as it is stored;
- ``BodyWriter``: loads each input element once per scope, writes each step as its
  scalar expression (typed, rounded to the step's dtype), stores results.
"""
from __future__ import annotations

import contextlib
import functools

from ...ir.fused import (REDUCTIONS, body_graph, column_dims, domain, kept_shapes,
                         reduced_dims, reduction_layout, step_phases, total_dims)
from ...shapes import numel
from .indexing import affine, broadcast_strides, c_strides
from .literals import np_type

INV, ROW, ELEM = 0, 1, 2


def domain_strides(shape, read_as, dom, dims) -> tuple:
    """Strides over the domain dims of a value of ``shape`` read by a step of shape
    ``read_as`` (NumPy broadcasting), the step's element being a domain index mapped to
    ``read_as``: the identity for the domain's shape, dropping reduced dims otherwise. A
    value of one element (a total beside row reductions, kept dims or not: ``[]`` or
    ``[1, 1]``) is the same element everywhere."""
    if numel(shape) == 1:
        return (0,) * len(dom)
    bs = broadcast_strides(shape, read_as)
    if tuple(read_as) == tuple(dom) or dims is None:
        lead = len(dom) - len(read_as)
        return (0,) * lead + bs
    keep, nokeep = kept_shapes(dom, dims)
    if tuple(read_as) == keep:
        return bs
    if tuple(read_as) == nokeep:
        it = iter(bs)
        return tuple(0 if d in dims else next(it) for d in range(len(dom)))
    assert tuple(read_as) == (), read_as
    return (0,) * len(dom)


def reduces(step, dims) -> bool:
    """Whether ``step`` is a reduction over exactly ``dims`` (None: no such set)."""
    return (dims is not None and step.op.name in REDUCTIONS
            and tuple(sorted(step.attrs["dims"])) == dims)


class FusedLayout:
    """Where every value of a fused body lives in its loop domain.

    ``rows``: which dims are the rows (the rest are a row's elements). ``"loop"`` (the
    CPU): the outer loop's, i.e. the kept dims of an inner reduction, the reduced dims of
    an outer one (whose results then accumulate row after row), every dim when nothing is
    reduced. ``"kept"`` (CUDA, a block per row): the kept dims whichever end of the
    domain they are at, and no rows (one row of every element) when nothing is reduced.
    """

    def __init__(self, body, rows: str = "loop"):
        self.body = body
        self.dom = tuple(domain(body))
        self.dims = reduced_dims(body)
        self.cols = column_dims(body)  # column sums beside row reductions (or None)
        self.total = total_dims(body)  # a total beside row reductions (or None)
        self.layout = reduction_layout(self.dom, self.dims) if self.dims is not None else None
        dom = range(len(self.dom))
        if self.dims is None:
            self.row_dims, self.elem_dims = (list(dom), []) if rows == "loop" else ([], list(dom))
        elif self.layout == "outer" and rows == "loop":
            self.row_dims, self.elem_dims = list(self.dims), [d for d in dom if d not in self.dims]
        else:
            self.row_dims, self.elem_dims = [d for d in dom if d not in self.dims], list(self.dims)
        self.index = {s: j for j, s in enumerate(body.nodes)}
        self.input_index = {v: i for i, v in enumerate(body.inputs)}

    @classmethod
    def of(cls, node, rows: str = "loop") -> "FusedLayout":
        """The layout of a ``fused`` node's body."""
        return cls(body_graph(node.attrs["body"], [v.type for v in node.inputs]), rows)

    @functools.cached_property
    def phase(self) -> dict:
        """Step -> the pass over a row it runs in (``step_phases``)."""
        return step_phases(self.body.nodes, self.dom)

    def read_as(self, step) -> tuple:
        """The shape a step reads its inputs as: the domain for a reduction."""
        return self.dom if step.op.name in REDUCTIONS else tuple(step.out.shape)

    def strides(self, v, read_as) -> tuple:
        """The stride vector over the domain of ``v`` read by a step of shape ``read_as``."""
        return domain_strides(v.shape, read_as, self.dom, self.dims)

    def is_column(self, step) -> bool:
        """A column reduction: summed across the rows into its result buffer."""
        return reduces(step, self.cols)

    def is_total(self, step) -> bool:
        """A total beside row reductions: each row's part added to one accumulator."""
        return reduces(step, self.total)

    def store_strides(self, v) -> tuple:
        """The stride vector of a result as it is stored."""
        if tuple(v.shape) == self.dom:
            return c_strides(self.dom)
        if v.node is not None and self.is_column(v.node):
            return domain_strides(v.shape, v.shape, self.dom, self.cols)
        return domain_strides(v.shape, v.shape, self.dom, self.dims)

    def levels(self, per_thread: bool = False) -> dict:
        """Step -> INV (the same for the whole domain), ROW (varies with the rows only) or
        ELEM (varies along a row). A reduction's result is ROW. A step of the domain's
        shape is ELEM once it varies at all, when there are element dims; with
        ``per_thread`` (CUDA, each thread storing the elements it computes) whenever the
        domain has more than one element, an invariant result of the domain's shape too."""
        level = {}
        elem = set(self.elem_dims)
        outputs = set(self.body.outputs) if per_thread else set()
        for s in self.body.nodes:
            if s.op.name in REDUCTIONS:
                level[s] = ROW
                continue
            lv = INV
            for v in s.inputs:
                if v.node is not None:
                    lv = max(lv, level[v.node])
                else:
                    st = self.strides(v, self.read_as(s))
                    if any(st[d] for d in elem):
                        lv = ELEM
                    elif any(st):
                        lv = max(lv, ROW)
            if tuple(s.out.shape) == self.dom:
                if per_thread:
                    if numel(self.dom) > 1 and (lv > INV or s.out in outputs):
                        lv = ELEM
                elif lv > INV and self.elem_dims:
                    lv = ELEM
            level[s] = lv
        return level


class BodyWriter:
    """Writes a fused body's steps into the kernel ``k``.

    ``scalar(step, operands)``: the step's expression (the target's, see core/scalar.py);
    ``at(index)``: an element offset as the kernel indexes with it (the CPU's unsigned
    indices in parallel loops); ``suffix``: appended to the names of loaded inputs
    (``x0``) and steps (``t3``). ``var`` maps each domain dim to the loop (or thread) index
    variable of the current scope, None for a dim of size 1.
    """

    def __init__(self, layout, k, scalar, at=None, suffix: str = ""):
        self.layout = layout
        self.k = k
        self.scalar = scalar
        self.at = at or (lambda index: index)
        self.suffix = suffix
        self.outs_of = {}
        for v, out in zip(layout.body.outputs, k.outs):
            self.outs_of.setdefault(v, []).append(out)
        self.names = {}           # step value -> variable holding it in the current scope
        self.scopes = [{}]        # (input index, strides) -> loaded variable, per scope
        self.var = {}             # domain dim -> index variable (None for a size-1 dim)

    def offset(self, strides, extra=()) -> str:
        """The index of an element: a stride vector over the domain's index variables, plus
        ``extra`` (variable, stride) terms (a chunk's slice of a partial buffer)."""
        terms = [(self.var.get(d), st) for d, st in enumerate(strides) if st]
        return self.at(affine(0, terms + list(extra)))

    @contextlib.contextmanager
    def scope(self):
        """Inputs loaded inside are loaded again after it (a loop or a branch)."""
        self.scopes.append({})
        try:
            yield
        finally:
            self.scopes.pop()

    def operand(self, v, read_as) -> str:
        """The variable holding ``v`` as read by a step of shape ``read_as``."""
        if v.node is not None:
            return self.names[v]
        key = (self.layout.input_index[v], self.layout.strides(v, read_as))
        for scope in self.scopes:
            if key in scope:
                return scope[key]
        var = self.k.fresh(f"x{key[0]}{self.suffix}")
        self.k.line(f"{var} = {self.k.ins[key[0]]}[{self.offset(key[1])}]")
        self.scopes[-1][key] = var
        return var

    def compute(self, step) -> None:
        operands = [self.operand(v, self.layout.read_as(step)) for v in step.inputs]
        if step.op.name == "expand":
            # Its input read by broadcasting into the step's shape: the operand itself.
            self.names[step.out] = operands[0]
            return
        expr = self.scalar(step, operands)
        if step.out.dtype.is_floating_point:
            # What storing the step's buffer did before fusion: e.g. Numba's math.exp of a
            # float32 is a float64, which the next step must see rounded to float32.
            expr = f"{np_type(step.out.dtype)}({expr})"
        var = self.k.fresh(f"t{self.layout.index[step]}{self.suffix}")
        self.k.line(f"{var} = {expr}")
        self.names[step.out] = var

    def store(self, v, guard: str | None = None) -> None:
        """Store ``v`` into every output parameter that returns it; ``guard``: only where
        that condition holds (one thread of a block)."""
        outs = self.outs_of.get(v, ())
        if not outs:
            return
        lines = [f"{out}[{self.offset(self.layout.store_strides(v))}] = {self.names[v]}"
                 for out in outs]
        with self.k.block(f"if {guard}:") if guard else contextlib.nullcontext():
            for text in lines:
                self.k.line(text)

