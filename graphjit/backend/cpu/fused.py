"""Fused nodes: one loop nest computing every step of the body, results stored once.

# NOTE: [Fused loops]
For ``fused(%x: f32[4,5], %b: f32[5], body='t0 = add(i0, i1); t1 = relu(t0)')``:

    for i0 in range(4):
        for i1 in range(5):
            x0 = in0[i0 * 5 + i1]
            x1 = in1[i1]
            t0 = np.float32((x0 + x1))
            t1 = np.float32(max(t0, np.float32(0.0)))
            out0[i0 * 5 + i1] = t1

Each step is its op's own ``OpDef.scalar`` expression (the text the generic elementwise
emitter uses), typed by the dtype that step computes in; intermediate values live in
registers, so the group reads its inputs and writes its results once.

Every value of the body is indexed by the loop domain (see [Fused nodes] in
graphjit/ir/fused.py) through strides (the layout both targets share: core/fused.py): an
input or a step of another shape is read by NumPy broadcasting into the shape of the step
that reads it, a reduced value by dropping the reduced dims. Values are computed at the
coarsest loop level they vary at:
- invariant (INV: 0-d inputs, an optimizer's bias corrections): once, before the loops,
  since LLVM does not hoist libm calls such as ``pow``;
- per row (ROW): a reduction's result and the steps over the reduced shape (``1 / sum``);
- per element (ELEM): the rest.
With an "inner" reduction (the reduced dims are the innermost), the kernel walks the rows;
for each row, pass ``p`` over the row's elements runs the element steps of phase ``p``
(``step_phases``) and accumulates the reductions of that phase, and the per-row steps that
read them run before pass ``p + 1``. Softmax is three passes over a row held in cache:
max; exp and sum; divide (the exp is recomputed rather than stored). Element steps of an
earlier phase that a later one reads are recomputed in it, or, when cheap arithmetic would
not redo them, kept in a scratch array of one row per chunk of rows (allocated once per
kernel call). Column sums (the other dims of a row-reduced body: a
layer norm's affine gradients) accumulate in their result buffers, row after row, and a
total (every dim reduced: a mean loss) adds each row's part, summed like a row reduction,
to one accumulator. Above the parallel threshold the rows run in chunks (see [Parallel
loops] in loops.py): column sums then accumulate per chunk and totals per row, combined
in order after the loop; a body of one long row runs each of its passes in chunks. Sums
accumulate through ``accumulate.add``, whose addition may be reassociated, so LLVM
vectorises the accumulation (nothing else in the kernel is reassociated); float32 sums per
block of 256 elements, the blocks in float64 (see [Blocked sums]). With an "outer"
reduction (the reduced dims are the outermost: a bias gradient), the results are
accumulated in their output buffers, row after row, a loop that vectorises along the kept
dims.
"""

from __future__ import annotations

import contextlib

from ...ir.fused import REDUCTIONS, kept_shapes
from ...shapes import numel
from ..core.fused import ELEM, INV, ROW, BodyWriter, FusedLayout
from ..core.indexing import affine, c_strides
from ..core.literals import np_type
from ..core.reduce import combine, identity
from .elementwise import cpu_scalar
from .kernel import emits
from .loops import loop_nest, parallel_chunks, parallel_min_elements
from .reduce import SUM_BLOCK, accumulate_statements


class _Kernel(BodyWriter):
    """The body of one fused CPU kernel, and the loops that walk its domain."""

    def __init__(self, node, k):
        super().__init__(FusedLayout.of(node, rows="loop"), k, cpu_scalar, at=k.at)
        self._used = None         # stride vectors of every load and store (see _runs)

    def _strides_used(self) -> list:
        """Every stride vector the kernel indexes with (loads and stores)."""
        layout = self.layout
        used = []
        for s in layout.body.nodes:
            used += [layout.strides(v, layout.read_as(s)) for v in s.inputs if v.node is None]
        used += [layout.store_strides(v) for v in self.outs_of]
        return used

    def _runs(self, dims) -> list:
        """``dims`` (neighbours in the domain) as runs that one loop can walk: size-1 dims
        dropped, and a dim merged into the next when every buffer the kernel touches walks
        the two as one (``stride[d] == stride[d+1] * size[d+1]``), so ``[256,10]`` with all
        operands contiguous is one loop of 2560, long enough to vectorise."""
        if self._used is None:
            self._used = self._strides_used()
        dom = self.layout.dom
        runs = []
        for d in dims:
            if dom[d] == 1:
                continue
            if runs and all(st[runs[-1][-1]] == st[d] * dom[d] for st in self._used):
                runs[-1].append(d)
            else:
                runs.append([d])
        return runs

    def flat_length(self) -> str | None:
        """For a body with no reduction whose every buffer is either one element or walked
        contiguously over the whole domain (an optimizer update, an activation and its
        gradient): the length of such a buffer, as source text, else None. See [Flat trip
        counts]."""
        layout = self.layout
        if layout.dims is not None:
            return None
        full = c_strides(layout.dom)
        if not all(st == full or not any(st) for st in self._strides_used()):
            return None
        for v, outs in self.outs_of.items():
            if tuple(v.shape) == layout.dom:
                return f"len({outs[0]})"
        for v, name in zip(layout.body.inputs, self.k.ins):
            if tuple(v.shape) == layout.dom:
                return f"len({name})"
        return None

    @contextlib.contextmanager
    def loops(self, dims, hint, parallel=False, chunk_start=None, chunk_end=None, block=None):
        """Loops over ``dims`` (see ``loop_nest``), in a scope of their own."""
        dom = self.layout.dom
        with self.scope():
            runs = self._runs(dims)
            sizes = [numel([dom[d] for d in run]) for run in runs]
            flat = self.flat_length()
            if flat is not None and len(runs) == 1 and sorted(runs[0]) == sorted(
                    d for d in range(len(dom)) if dom[d] != 1):
                sizes = [flat]
            with loop_nest(self.k, sizes, hint=hint, parallel=parallel, chunk_start=chunk_start,
                           chunk_end=chunk_end, block=block) as idx:
                for d in dims:
                    self.var[d] = None
                for run, var in zip(runs, idx):
                    self.var[run[-1]] = var  # the run's innermost stride, times the merged index
                yield

    def row_sized(self, s) -> bool:
        """Whether ``s`` has the reduced shape (is stored once per row). A reduction always
        does, also one over size-1 dims only, whose result has the domain's shape (simplify
        turns those into reshapes, but a graph given to the backend directly may hold one)."""
        layout = self.layout
        if layout.dims is None:
            return False
        shape = tuple(s.out.shape)
        return shape in kept_shapes(layout.dom, layout.dims) and (shape != layout.dom
                                                                  or s.op.name in REDUCTIONS)

    def preload_invariants(self) -> None:
        """Load every one-element input before anything is stored: a result computed in
        place into such an input's buffer (a step counter) must not be read back after its
        store."""
        layout = self.layout
        for s in layout.body.nodes:
            for v in s.inputs:
                if v.node is None and not any(layout.strides(v, layout.read_as(s))):
                    self.operand(v, layout.read_as(s))

    def init_result_accumulators(self, reductions) -> None:
        """Fill the result buffers of reductions that accumulate in them with the identity."""
        for r in reductions:
            for out in self.outs_of.get(r.out, ()):
                with loop_nest(self.k, (numel(r.out.shape),), hint="o") as (o,):
                    self.k.line(f"{out}[{affine(0, [(o, 1)])}] = "
                                f"{identity(r.op.name, r.inputs[0].dtype, False)}")


@emits("fused")
def emit_fused(node, k) -> None:
    kern = _Kernel(node, k)
    if numel(kern.layout.dom) == 0:
        return
    if kern.layout.layout == "outer":
        _emit_outer(kern)
    else:
        _Inner(kern).emit()


class _Inner:
    """An inner-reduction (or reduction-free) fused kernel, written in phases (see [Fused
    loops]): the invariant steps; the accumulators that live across rows (column sums,
    totals, and their per-chunk parts when the rows run in parallel); the scratch rows;
    the loop over the rows, each row's passes over its elements, the per-row steps between
    them; then the chunks' parts combined in order."""

    def __init__(self, kern):
        self.kern, self.k = kern, kern.k
        layout = self.layout = kern.layout
        self.dom, self.steps = layout.dom, layout.body.nodes
        kern.preload_invariants()
        self.level = layout.levels()
        self.phase = layout.phase
        self.on_domain = [s for s in self.steps
                          if tuple(s.out.shape) == self.dom and s.op.name not in REDUCTIONS]
        self.n_passes = 1 + max([self.phase[s] for s in self.steps
                                 if self.level[s] == ELEM or s.op.name in REDUCTIONS], default=0)
        self.columns = [s for s in self.steps if layout.is_column(s)]

    def emit(self) -> None:
        self.invariants()
        self.kern.init_result_accumulators(self.columns)
        self.choose_parallel()
        self.accumulators()
        self.scratch_rows()
        self.row_loop()
        self.combine_parts()

    # ---- 1. before the loops ----------------------------------------------------------------

    def invariants(self) -> None:
        """The invariant steps, once; those of neither the domain's nor a row's shape (0-d
        results) stored at once."""
        kern, steps, level = self.kern, self.steps, self.level
        for s in steps:
            if level[s] == INV:
                kern.compute(s)
        for s in steps:
            if level[s] == INV and tuple(s.out.shape) != self.dom and not kern.row_sized(s):
                kern.store(s.out)
        self.done = {s for s in steps if level[s] == INV}

    def choose_parallel(self) -> None:
        """Rows run in parallel chunks above the threshold (see [Parallel loops] in
        loops.py). Whatever accumulates across rows is then kept per chunk (column sums,
        scratch rows) or per row (totals) and combined in chunk order after the loop, so
        the result does not depend on the number of threads. One long row (a full sum over
        every element) runs each pass over it in parallel chunks instead, the chunks'
        partial reductions combined in chunk order after it."""
        kern, dom = self.kern, self.dom
        self.rows = numel([dom[d] for d in self.layout.row_dims])
        big = numel(dom) >= parallel_min_elements()
        self.parallel = self.rows > 1 and big
        self.split_row = self.rows == 1 and bool(self.layout.elem_dims) and big
        def chunks_of(dims):  # the chunks of the outermost loop over ``dims``
            return parallel_chunks(numel([dom[d] for d in kern._runs(dims)[0]]))
        self.row_parts = chunks_of(self.layout.elem_dims) if self.split_row else 1
        self.chunks = chunks_of(self.layout.row_dims) if self.parallel else 1

    def accumulators(self) -> None:
        """A total (every dim reduced, beside row reductions) sums each row's part,
        accumulated like a row reduction, into one accumulator across the rows (serial),
        or into one element per row, added up after the loop (parallel); parallel column
        sums accumulate per chunk."""
        k = self.k
        self.totals = {s: k.fresh(f"total{self.layout.index[s]}") for s in self.steps
                       if self.layout.is_total(s)}
        for r, var in self.totals.items():
            if self.parallel:
                k.line(f"{var} = np.empty({self.rows}, {_acc_type(r)})")
            else:
                k.line(f"{var} = {identity(r.op.name, r.inputs[0].dtype, True)}")
        self.partial = {}
        if self.parallel:
            for r in self.columns:
                n = numel(r.out.shape)
                self.partial[r] = k.fresh(f"part{self.layout.index[r]}")
                k.line(f"{self.partial[r]} = np.empty({self.chunks * n}, {np_type(r.out.dtype)})")
                with loop_nest(k, (self.chunks * n,), hint="o") as (o,):
                    k.line(f"{self.partial[r]}[{o}] = "
                           f"{identity(r.op.name, r.inputs[0].dtype, False)}")

    def needed(self, p, saved_first) -> set:
        """Element steps pass ``p`` computes: those of its phase and what they read,
        recomputed when of an earlier pass unless kept in a row scratch array."""
        steps, level, phase = self.steps, self.level, self.phase
        reds = [s for s in steps if s.op.name in REDUCTIONS and phase[s] == p]
        need, stack = set(), [s for s in steps if level[s] == ELEM and phase[s] == p]
        stack += [r.inputs[0].node for r in reds]
        while stack:
            s = stack.pop()
            if s is None or s in need or level[s] != ELEM:
                continue
            need.add(s)
            if saved_first.get(s, p) < p:
                continue  # loaded from its scratch row
            stack.extend(v.node for v in s.inputs)
        return need

    def scratch_rows(self) -> None:
        """An expensive element step that several passes read (gelu's tanh before a layer
        norm's three passes) is kept in a scratch array of one row (per chunk) instead of
        recomputed."""
        k, dom, elem_dims = self.k, self.dom, self.layout.elem_dims
        self.saved_first = {}
        self.row_len = numel([dom[d] for d in elem_dims])
        if 0 < self.row_len <= SCRATCH_MAX_ELEMENTS:
            uses = {}
            for p in range(self.n_passes):
                for s in self.needed(p, {}):
                    uses.setdefault(s, []).append(p)
            self.saved_first = {s: ps[0] for s, ps in uses.items()
                                if len(ps) > 1 and s.op.name not in CHEAP_TO_RECOMPUTE}
        self.scratch = {}
        for s in self.steps:
            if s in self.saved_first:
                self.scratch[s] = k.fresh(f"row{self.layout.index[s]}")
                k.line(f"{self.scratch[s]} = np.empty({self.chunks * self.row_len}, "
                       f"{np_type(s.out.dtype)})")
        self.row_off = tuple(0 if d not in elem_dims else st for d, st in enumerate(
            _elem_strides(dom, elem_dims)))

    def in_chunk(self, stride) -> list:
        """Terms selecting the running chunk's part of a per-chunk buffer."""
        return [(self.k.chunk, stride)] if self.parallel else []

    # ---- 2. the rows ------------------------------------------------------------------------

    def row_loop(self) -> None:
        kern = self.kern
        with kern.loops(self.layout.row_dims, "i", parallel=self.parallel):
            self.stored = {s for s in self.done
                           if not kern.row_sized(s) and tuple(s.out.shape) != self.dom}
            self.row_steps(0)
            if not self.layout.elem_dims:
                return
            for p in range(self.n_passes):
                self.element_pass(p)
                self.row_steps(p + 1)

    def row_steps(self, before_pass) -> None:
        """The per-row steps that can run before pass ``before_pass``; then per-row
        results, and with no element loop every result, once they exist."""
        kern, level, phase = self.kern, self.level, self.phase
        for s in self.steps:
            if s not in self.done and level[s] == ROW and s.op.name not in REDUCTIONS \
                    and phase[s] <= before_pass:
                kern.compute(s)
                self.done.add(s)
        for s in self.steps:
            if s in self.done and s not in self.stored and (not self.layout.elem_dims
                                                             or kern.row_sized(s)):
                kern.store(s.out)
                self.stored.add(s)

    def element_pass(self, p) -> None:
        """Pass ``p`` over a row's elements: its element steps, its stores, its reductions
        (row ones into accumulators, column sums into their buffers or chunk parts); then
        the row reductions finished (see [Blocked sums] for float32 sums)."""
        k, kern, steps, phase, dom = self.k, self.kern, self.steps, self.phase, self.dom
        reductions = [s for s in steps if s.op.name in REDUCTIONS and phase[s] == p
                      and not self.layout.is_column(s)]
        col_sums = [s for s in self.columns if phase[s] == p]
        need = self.needed(p, self.saved_first)
        to_store = [s for s in self.on_domain if s not in self.stored and
                    ((self.level[s] == ELEM and phase[s] == p)
                     or (self.level[s] < ELEM and s in self.done))]
        if not need and not reductions and not to_store and not col_sums:
            return
        accs, starts, parts = {}, {}, {}
        for r in reductions:
            accs[r] = k.fresh(f"acc{self.layout.index[r]}")
            starts[r] = f"{accs[r]} = {identity(r.op.name, r.inputs[0].dtype, True)}"
            if self.split_row:
                parts[r] = k.fresh(f"part{self.layout.index[r]}")
                k.line(f"{parts[r]} = np.empty({self.row_parts}, {_acc_type(r)})")
            else:
                k.line(starts[r])
        # float32 sums: per block in float32, added to the float64 accumulator after each
        # block (see [Blocked sums]).
        blocked = {r: k.fresh(f"blk{self.layout.index[r]}") for r in reductions
                   if _blocked_sum(r)}
        block = (SUM_BLOCK, lambda: [f"{b} = np.float32(0.0)" for b in blocked.values()],
                 lambda: [f"{accs[r]} += {b}" for r, b in blocked.items()]) \
            if blocked else None
        outer_names = dict(kern.names)
        chunk_start = (lambda c: [starts[r] for r in reductions]) if self.split_row else None
        chunk_end = (lambda c: [f"{parts[r]}[{c}] = {accs[r]}" for r in reductions]) \
            if self.split_row else None
        with kern.loops(self.layout.elem_dims, "j", parallel=self.split_row,
                        chunk_start=chunk_start, chunk_end=chunk_end, block=block):
            for s in steps:
                if s in need:
                    self.element_step(s, p)
            for s in to_store:
                kern.store(s.out)
                self.stored.add(s)
            for r in reductions:
                value = kern.operand(r.inputs[0], dom)
                for stmt in accumulate_statements(r.op.name, blocked.get(r, accs[r]), value,
                                                  r.inputs[0].dtype):
                    k.line(stmt)
            for r in col_sums:
                self.column_sum(r)
        kern.names = outer_names
        for r, part in parts.items():  # the chunks' parts, in chunk order
            k.line(starts[r])
            with loop_nest(k, (self.row_parts,), hint="c") as (c,):
                for stmt in combine(r.op.name, accs[r], f"{part}[{c}]"):
                    k.line(stmt)
        for r in reductions:
            self.finish_reduction(r, accs[r])

    def element_step(self, s, p) -> None:
        """Step ``s`` in pass ``p``: loaded from its scratch row when an earlier pass kept
        it there, else computed (and kept, when later passes read it)."""
        k, kern = self.k, self.kern
        at = f"{kern.offset(self.row_off, self.in_chunk(self.row_len))}"
        if self.saved_first.get(s, p) < p:
            var = k.fresh(f"t{self.layout.index[s]}")
            k.line(f"{var} = {self.scratch[s]}[{at}]")
            kern.names[s.out] = var
            return
        kern.compute(s)
        if s in self.saved_first:
            k.line(f"{self.scratch[s]}[{at}] = {kern.names[s.out]}")

    def column_sum(self, r) -> None:
        """Column reduction ``r`` accumulated into its result (its chunk's part, when the
        rows run in parallel)."""
        kern = self.kern
        value = kern.operand(r.inputs[0], self.dom)
        at = self.layout.store_strides(r.out)
        targets = ([f"{self.partial[r]}[{kern.offset(at, self.in_chunk(numel(r.out.shape)))}]"]
                   if self.parallel else
                   [f"{out}[{kern.offset(at)}]" for out in kern.outs_of.get(r.out, ())])
        for target in targets:
            for stmt in accumulate_statements(r.op.name, target, value, r.inputs[0].dtype,
                                              in_buffer=True):
                self.k.line(stmt)

    def finish_reduction(self, r, acc) -> None:
        """A row reduction's accumulator after the pass: its row's part of a total, or the
        row's value, rounded to its dtype."""
        k, kern = self.k, self.kern
        if r in self.totals and self.parallel:
            at = kern.offset(_elem_strides(self.dom, self.layout.row_dims))
            k.line(f"{self.totals[r]}[{at}] = {acc}")
            return
        if r in self.totals:
            for stmt in combine(r.op.name, self.totals[r], acc):
                k.line(stmt)
            return
        var = k.fresh(f"t{self.layout.index[r]}")
        cast = np_type(r.out.dtype) if r.out.dtype.is_floating_point else ""
        k.line(f"{var} = {cast}({acc})")
        kern.names[r.out] = var
        self.done.add(r)

    # ---- 3. after the loop ------------------------------------------------------------------

    def combine_parts(self) -> None:
        """The chunks' column sums, and the rows' parts of totals, in order."""
        k, kern = self.k, self.kern
        if not self.layout.elem_dims:
            return  # (no reductions: the row loop returned early)
        for r, part in self.partial.items():
            n = numel(r.out.shape)
            for out in kern.outs_of.get(r.out, ()):
                with loop_nest(k, (n,), hint="o") as (o,):
                    with loop_nest(k, (self.chunks,), hint="c") as (c,):
                        for stmt in combine(r.op.name, f"{out}[{o}]",
                                            f"{part}[{affine(0, [(c, n), (o, 1)])}]"):
                            k.line(stmt)
        for r, var in self.totals.items():
            if self.parallel:  # the rows' parts, in row order
                acc = k.fresh(f"acc{self.layout.index[r]}")
                k.line(f"{acc} = {identity(r.op.name, r.inputs[0].dtype, True)}")
                with loop_nest(k, (self.rows,), hint="o") as (o,):
                    for stmt in combine(r.op.name, acc, f"{var}[{o}]"):
                        k.line(stmt)
                var = acc
            cast = np_type(r.out.dtype) if r.out.dtype.is_floating_point else ""
            for out in kern.outs_of.get(r.out, ()):
                k.line(f"{out}[0] = {cast}({var})")


def _emit_outer(kern) -> None:
    """Reduced dims outermost: results accumulate in their buffers, row after row."""
    k, layout = kern.k, kern.layout
    body, dom = layout.body, layout.dom
    kern.init_result_accumulators([r for r in body.nodes if r.op.name in REDUCTIONS])
    kern.preload_invariants()
    level = layout.levels()
    for s in body.nodes:
        if level[s] == INV and s.op.name not in REDUCTIONS:
            kern.compute(s)
            if tuple(s.out.shape) != dom:
                kern.store(s.out)
    with kern.loops(layout.row_dims + layout.elem_dims, "i"):
        for s in body.nodes:
            if s.op.name in REDUCTIONS:
                value = kern.operand(s.inputs[0], dom)
                for out in kern.outs_of.get(s.out, ()):
                    target = f"{out}[{kern.offset(layout.store_strides(s.out))}]"
                    for stmt in accumulate_statements(s.op.name, target, value,
                                                      s.inputs[0].dtype, in_buffer=True):
                        k.line(stmt)
                continue
            if level[s] != INV:
                kern.compute(s)
            if tuple(s.out.shape) == dom:
                kern.store(s.out)


# NOTE: [Blocked sums]
# A float32 sum over a row accumulates in float32 within blocks of SUM_BLOCK consecutive
# elements, through ``acc_add`` (LLVM may keep several partial sums, so the loop
# vectorises), and each block's sum is added to a float64 accumulator:
#
#     acc15 = 0.0
#     for j0b in range(0, 4096, 256):
#         blk15 = np.float32(0.0)
#         for j0 in range(j0b, j0b + 256):
#             ...
#             blk15 = acc_add(blk15, t14)
#         acc15 += blk15
#
# Accumulating every element in float64 is more accurate still, but LLVM's loop vectoriser
# gives up on a loop that mixes a float64 accumulator with a long float32 body (a tanh or
# exp inlined from vmath), at least on AVX2: measured on a Zen 3 VM (AVX2, no AVX-512), 4M
# float32 tanh with a row sum took 15.1 ms with float64 accumulation (scalar code), 7-8 ms
# blocked (vectorised; 6.1 ms for the tanh alone); W4's fused kernel serial 31 -> 18 ms, W4's
# step on both cores 22 -> 8.9 ms. Within a block each partial sum adds 256 / 32 elements
# or so in float32 (LLVM keeps 8 lanes x 4 partial sums), a tree combines them: a few ulps
# of the block's sum, like NumPy's pairwise summation (8 partials over blocks of 128).
# tests/backend/cpu/test_blocked_sums.py. The stand-alone sum kernel (reduce.py) sums its rows
# the same way; SUM_BLOCK lives there.


def _blocked_sum(r) -> bool:
    """Whether reduction ``r`` accumulates in blocks (see [Blocked sums])."""
    return r.op.name == "sum" and r.inputs[0].dtype.name == "float32"


def _acc_type(r) -> str:
    """The type of a reduction's scalar accumulator (float32 sums accumulate in float64)."""
    dtype = r.inputs[0].dtype
    if r.op.name == "sum":
        return "np.float64" if dtype.is_floating_point else "np.int64"
    return np_type(dtype)


# NOTE: [Flat trip counts]
# Shapes are constants in the generated index arithmetic, with one exception: a fused loop
# with no reduction whose buffers are all either one element or contiguous over the whole
# domain (one flat loop, no index arithmetic beyond ``i``) takes its trip count from a
# buffer, ``for i0 in range(len(out0))``. Its text then no longer depends on the size, so
# the optimizer update of every parameter (and the activation of every layer) that
# computes the same expression is one kernel, compiled once ([Kernel modules] in
# codegen.py): the W2 MLP's six Adam updates were five kernels of ~0.3 s of Numba compile
# each, now two (serial and parallel). A flat loop vectorises without a constant trip count.

# Elements of the row scratch arrays (see _Inner.scratch_rows): 64 KiB of float32 per saved step.
SCRATCH_MAX_ELEMENTS = 16384
# Steps recomputed in later passes rather than kept in a scratch row.
CHEAP_TO_RECOMPUTE = frozenset({"add", "sub", "mul", "neg", "cast", "expand", "abs", "relu",
                                "maximum", "minimum", "where", "eq", "ne", "lt", "le", "gt",
                                "ge", "full"})


def _elem_strides(dom, elem_dims) -> tuple:
    """C-order strides of a row (the element dims) as a vector over the domain's dims."""
    inner = c_strides([dom[d] for d in elem_dims])
    by_dim = dict(zip(elem_dims, inner))
    return tuple(by_dim.get(d, 0) for d in range(len(dom)))
