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
graphjit/ir/fused.py) through strides: an input or a step of another shape is read by
NumPy broadcasting into the shape of the step that reads it, a reduced value by dropping
the reduced dims. Values are computed at the coarsest loop level they vary at:
- invariant (0-d inputs, an optimizer's bias corrections): once, before the loops, since
  LLVM does not hoist libm calls such as ``pow``;
- per row: a reduction's result and the steps over the reduced shape (``1 / sum``);
- per element: the rest.
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

from ...ir.fused import (REDUCTIONS, body_graph, column_dims, domain, kept_shapes,
                         reduced_dims, reduction_layout, step_phases, total_dims)
from ...shapes import numel
from .elementwise import scalar_expression
from .kernel import emits
from .loops import (affine, broadcast_strides, c_strides, loop_nest, np_type, parallel_chunks,
                    parallel_min_elements)
from .reduce import accumulate_statements, combine, identity

INV, ROW, ELEM = 0, 1, 2


def _domain_strides(shape, read_as, dom, dims) -> tuple:
    """Strides over the domain dims of a value of ``shape`` read by a step of shape
    ``read_as`` (NumPy broadcasting), the step's element being a domain index mapped to
    ``read_as``: the identity for the domain's shape, dropping reduced dims otherwise."""
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


def _split(dom, dims, layout):
    """The domain's dims as (row dims, element dims), size-1 dims included."""
    if dims is None:
        return list(range(len(dom))), []
    if layout == "inner":
        return [d for d in range(len(dom)) if d not in dims], list(dims)
    return list(dims), [d for d in range(len(dom)) if d not in dims]


class _Kernel:
    """The body of one fused kernel: its steps, where each is computed and stored."""

    def __init__(self, node, k):
        self.k = k
        self.body = body = body_graph(node.attrs["body"], [v.type for v in node.inputs])
        self.dom = tuple(domain(body))
        self.dims = reduced_dims(body)
        self.cols = column_dims(body)  # column sums beside row reductions (or None)
        self.total = total_dims(body)  # a total beside row reductions (or None)
        self.layout = reduction_layout(self.dom, self.dims) if self.dims is not None else None
        self.row_dims, self.elem_dims = _split(self.dom, self.dims, self.layout)
        self.index = {s: j for j, s in enumerate(body.nodes)}
        self.input_index = {v: i for i, v in enumerate(body.inputs)}
        self.outs_of = {}
        for v, out in zip(body.outputs, k.outs):
            self.outs_of.setdefault(v, []).append(out)
        self.names = {}           # step value -> variable holding it in the current scope
        self.scopes = [{}]        # (input index, strides) -> loaded variable, per loop level
        self.var = {}             # domain dim -> loop variable (or None for a size-1 dim)
        self._used = None         # stride vectors of every load and store (see _runs)

    # ---- indexing ---------------------------------------------------------------------------

    def strides(self, v, read_as):
        return _domain_strides(v.shape, read_as, self.dom, self.dims)

    def offset(self, strides, extra=()) -> str:
        """The index of an element: a stride vector over the domain's loop variables, plus
        ``extra`` (variable, stride) terms (a chunk's slice of a partial buffer)."""
        terms = [(self.var.get(d), st) for d, st in enumerate(strides) if st]
        return self.k.at(affine(0, terms + list(extra)))

    def is_column(self, step) -> bool:
        """A column reduction: summed across the rows into its result buffer."""
        return _reduces(step, self.cols)

    def is_total(self, step) -> bool:
        """A total beside row reductions: each row's part added to one accumulator."""
        return _reduces(step, self.total)

    def store_strides(self, v):
        if tuple(v.shape) == self.dom:
            return c_strides(self.dom)
        if v.node is not None and self.is_column(v.node):
            return _domain_strides(v.shape, v.shape, self.dom, self.cols)
        return _domain_strides(v.shape, v.shape, self.dom, self.dims)

    # ---- emitting ---------------------------------------------------------------------------

    def operand(self, v, read_as) -> str:
        """The variable holding ``v`` as read by a step of shape ``read_as``."""
        if v.node is not None:
            return self.names[v]
        key = (self.input_index[v], self.strides(v, read_as))
        for scope in self.scopes:
            if key in scope:
                return scope[key]
        var = self.k.fresh(f"x{key[0]}")
        self.k.line(f"{var} = {self.k.ins[key[0]]}[{self.offset(key[1])}]")
        self.scopes[-1][key] = var
        return var

    def compute(self, step) -> None:
        var = self.k.fresh(f"t{self.index[step]}")
        operands = [self.operand(v, step.out.shape) for v in step.inputs]
        if step.op.name == "expand":
            # Its input read by broadcasting into the step's shape: the operand itself.
            self.names[step.out] = operands[0]
            return
        expr = scalar_expression(step, operands)
        if step.out.dtype.is_floating_point:
            # What storing the step's buffer did before fusion: e.g. Numba's math.exp of a
            # float32 is a float64, which the next step must see rounded to float32.
            expr = f"{np_type(step.out.dtype)}({expr})"
        self.k.line(f"{var} = {expr}")
        self.names[step.out] = var

    def store(self, v) -> None:
        for out in self.outs_of.get(v, ()):
            self.k.line(f"{out}[{self.offset(self.store_strides(v))}] = {self.names[v]}")

    def _strides_used(self) -> list:
        """Every stride vector the kernel indexes with (loads and stores)."""
        used = []
        for s in self.body.nodes:
            read_as = self.dom if s.op.name in REDUCTIONS else s.out.shape
            used += [self.strides(v, read_as) for v in s.inputs if v.node is None]
        used += [self.store_strides(v) for v in self.outs_of]
        return used

    def _runs(self, dims) -> list:
        """``dims`` (neighbours in the domain) as runs that one loop can walk: size-1 dims
        dropped, and a dim merged into the next when every buffer the kernel touches walks
        the two as one (``stride[d] == stride[d+1] * size[d+1]``), so ``[256,10]`` with all
        operands contiguous is one loop of 2560, long enough to vectorise."""
        if self._used is None:
            self._used = self._strides_used()
        runs = []
        for d in dims:
            if self.dom[d] == 1:
                continue
            if runs and all(st[runs[-1][-1]] == st[d] * self.dom[d] for st in self._used):
                runs[-1].append(d)
            else:
                runs.append([d])
        return runs

    def flat_length(self) -> str | None:
        """For a body with no reduction whose every buffer is either one element or walked
        contiguously over the whole domain (an optimizer update, an activation and its
        gradient): the length of such a buffer, as source text, else None. See [Flat trip
        counts]."""
        if self.dims is not None:
            return None
        full = c_strides(self.dom)
        if not all(st == full or not any(st) for st in self._strides_used()):
            return None
        for v, outs in self.outs_of.items():
            if tuple(v.shape) == self.dom:
                return f"len({outs[0]})"
        for v, name in zip(self.body.inputs, self.k.ins):
            if tuple(v.shape) == self.dom:
                return f"len({name})"
        return None

    @contextlib.contextmanager
    def loops(self, dims, hint, parallel=False, chunk_start=None, chunk_end=None, block=None):
        self.scopes.append({})
        runs = self._runs(dims)
        sizes = [numel([self.dom[d] for d in run]) for run in runs]
        flat = self.flat_length()
        if flat is not None and len(runs) == 1 and sorted(runs[0]) == sorted(
                d for d in range(len(self.dom)) if self.dom[d] != 1):
            sizes = [flat]
        with loop_nest(self.k, sizes, hint=hint,
                       parallel=parallel, chunk_start=chunk_start, chunk_end=chunk_end,
                       block=block) as idx:
            for d in dims:
                self.var[d] = None
            for run, var in zip(runs, idx):
                self.var[run[-1]] = var  # the run's innermost stride, times the merged index
            yield
        self.scopes.pop()


def _reduces(step, dims) -> bool:
    """Whether ``step`` is a reduction over exactly ``dims`` (None: no such set)."""
    return (dims is not None and step.op.name in REDUCTIONS
            and tuple(sorted(step.attrs["dims"])) == dims)


def _levels(kern) -> dict:
    """Step -> INV (computed once), ROW (once per row) or ELEM (per element)."""
    level = {}
    for s in kern.body.nodes:
        if s.op.name in REDUCTIONS:
            level[s] = ROW
            continue
        lv = INV
        for v in s.inputs:
            if v.node is not None:
                lv = max(lv, level[v.node])
            elif any(kern.strides(v, s.out.shape)):
                lv = max(lv, ROW)
        if lv > INV and kern.elem_dims and tuple(s.out.shape) == kern.dom:
            lv = ELEM
        level[s] = lv
    return level


@emits("fused")
def emit_fused(node, k) -> None:
    kern = _Kernel(node, k)
    if numel(kern.dom) == 0:
        return
    if kern.layout == "outer":
        _emit_outer(kern)
    else:
        _emit_inner(kern)


def _preload_invariants(kern) -> None:
    """Load every one-element input before anything is stored: a result computed in place
    into such an input's buffer (a step counter) must not be read back after its store."""
    for s in kern.body.nodes:
        read_as = kern.dom if s.op.name in REDUCTIONS else s.out.shape
        for v in s.inputs:
            if v.node is None and not any(kern.strides(v, read_as)):
                kern.operand(v, read_as)


def _emit_inner(kern) -> None:
    k, body, dom = kern.k, kern.body, kern.dom
    _preload_invariants(kern)
    level = _levels(kern)
    phase = step_phases(body.nodes, dom)
    steps = body.nodes
    on_domain = [s for s in steps if tuple(s.out.shape) == dom and s.op.name not in REDUCTIONS]
    for s in steps:
        if level[s] == INV:
            kern.compute(s)
    for s in steps:
        if level[s] == INV and tuple(s.out.shape) != dom and not _row_sized(kern, s):
            kern.store(s.out)
    n_passes = 1 + max([phase[s] for s in steps if level[s] == ELEM or s.op.name in REDUCTIONS],
                       default=0)
    done = {s for s in steps if level[s] == INV}
    # Column sums accumulate in their result buffers across rows (starting from the identity).
    columns = [s for s in steps if kern.is_column(s)]
    _init_result_accumulators(kern, columns)
    # Rows run in parallel chunks above the threshold (see [Parallel loops] in loops.py).
    # Whatever accumulates across rows is then kept per chunk (column sums, scratch rows)
    # or per row (totals) and combined in chunk order after the loop, so the result does
    # not depend on the number of threads.
    rows = numel([dom[d] for d in kern.row_dims])
    parallel = rows > 1 and numel(dom) >= parallel_min_elements()
    # One long row (a full sum over every element): each pass over it runs in parallel
    # chunks instead, the chunks' partial reductions combined in chunk order after it.
    split_row = rows == 1 and bool(kern.elem_dims) and numel(dom) >= parallel_min_elements()
    row_parts = (parallel_chunks(numel([dom[d] for d in kern._runs(kern.elem_dims)[0]]))
                 if split_row else 1)
    chunks = (parallel_chunks(numel([dom[d] for d in kern._runs(kern.row_dims)[0]]))
              if parallel else 1)
    # A total (every dim reduced, beside row reductions) sums each row's part, accumulated
    # like a row reduction, into one accumulator across the rows (serial), or into one
    # element per row, added up after the loop (parallel).
    totals = {s: k.fresh(f"total{kern.index[s]}") for s in steps if kern.is_total(s)}
    for r, var in totals.items():
        if parallel:
            k.line(f"{var} = np.empty({rows}, {_acc_type(r)})")
        else:
            k.line(f"{var} = {identity(r.op.name, r.inputs[0].dtype, True)}")
    partial = {}
    if parallel:
        for r in columns:
            n = numel(r.out.shape)
            partial[r] = k.fresh(f"part{kern.index[r]}")
            k.line(f"{partial[r]} = np.empty({chunks * n}, {np_type(r.out.dtype)})")
            with loop_nest(k, (chunks * n,), hint="o") as (o,):
                k.line(f"{partial[r]}[{o}] = {identity(r.op.name, r.inputs[0].dtype, False)}")

    def needed(p, saved_first):
        """Element steps pass ``p`` computes: those of its phase and what they read,
        recomputed when of an earlier pass unless kept in a row scratch array."""
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

    # An expensive element step that several passes read (gelu's tanh before a layer
    # norm's three passes) is kept in a scratch array of one row (per chunk) instead of
    # recomputed.
    saved_first = {}
    row_len = numel([dom[d] for d in kern.elem_dims])
    if 0 < row_len <= SCRATCH_MAX_ELEMENTS:
        uses = {}
        for p in range(n_passes):
            for s in needed(p, {}):
                uses.setdefault(s, []).append(p)
        saved_first = {s: ps[0] for s, ps in uses.items()
                       if len(ps) > 1 and s.op.name not in CHEAP_TO_RECOMPUTE}
    scratch = {}
    for s in steps:
        if s in saved_first:
            scratch[s] = k.fresh(f"row{kern.index[s]}")
            k.line(f"{scratch[s]} = np.empty({chunks * row_len}, {np_type(s.out.dtype)})")
    row_off = tuple(0 if d not in kern.elem_dims else st for d, st in enumerate(
        _elem_strides(dom, kern.elem_dims)))

    def in_chunk(stride):
        """Terms selecting the running chunk's part of a per-chunk buffer."""
        return [(k.chunk, stride)] if parallel else []
    with kern.loops(kern.row_dims, "i", parallel=parallel):
        def row_steps(before_pass):
            for s in steps:
                if s not in done and level[s] == ROW and s.op.name not in REDUCTIONS \
                        and phase[s] <= before_pass:
                    kern.compute(s)
                    done.add(s)
            # Per-row results, and with no element loop every result, once they exist.
            for s in steps:
                if s in done and s not in stored and (not kern.elem_dims or _row_sized(kern, s)):
                    kern.store(s.out)
                    stored.add(s)

        stored = {s for s in done if not _row_sized(kern, s) and tuple(s.out.shape) != dom}
        row_steps(0)
        if not kern.elem_dims:
            return
        for p in range(n_passes):
            reductions = [s for s in steps if s.op.name in REDUCTIONS and phase[s] == p
                          and not kern.is_column(s)]
            col_sums = [s for s in columns if phase[s] == p]
            need = needed(p, saved_first)
            to_store = [s for s in on_domain if s not in stored and
                        ((level[s] == ELEM and phase[s] == p) or (level[s] < ELEM and s in done))]
            if not need and not reductions and not to_store and not col_sums:
                continue
            accs, starts, parts = {}, {}, {}
            for r in reductions:
                accs[r] = k.fresh(f"acc{kern.index[r]}")
                starts[r] = f"{accs[r]} = {identity(r.op.name, r.inputs[0].dtype, True)}"
                if split_row:
                    parts[r] = k.fresh(f"part{kern.index[r]}")
                    k.line(f"{parts[r]} = np.empty({row_parts}, {_acc_type(r)})")
                else:
                    k.line(starts[r])
            # float32 sums: per block in float32, added to the float64 accumulator after
            # each block (see [Blocked sums]).
            blocked = {r: k.fresh(f"blk{kern.index[r]}") for r in reductions
                       if _blocked_sum(r)}
            block = (SUM_BLOCK, lambda: [f"{b} = np.float32(0.0)" for b in blocked.values()],
                     lambda: [f"{accs[r]} += {b}" for r, b in blocked.items()]) \
                if blocked else None
            outer_names = dict(kern.names)
            chunk_start = (lambda c: [starts[r] for r in reductions]) if split_row else None
            chunk_end = (lambda c: [f"{parts[r]}[{c}] = {accs[r]}" for r in reductions]) \
                if split_row else None
            with kern.loops(kern.elem_dims, "j", parallel=split_row, chunk_start=chunk_start,
                            chunk_end=chunk_end, block=block):
                for s in steps:
                    if s not in need:
                        continue
                    if saved_first.get(s, p) < p:
                        var = k.fresh(f"t{kern.index[s]}")
                        k.line(f"{var} = {scratch[s]}[{kern.offset(row_off, in_chunk(row_len))}]")
                        kern.names[s.out] = var
                        continue
                    kern.compute(s)
                    if s in saved_first:
                        k.line(f"{scratch[s]}[{kern.offset(row_off, in_chunk(row_len))}] = "
                               f"{kern.names[s.out]}")
                for s in to_store:
                    kern.store(s.out)
                    stored.add(s)
                for r in reductions:
                    value = kern.operand(r.inputs[0], dom)
                    for stmt in accumulate_statements(r.op.name, blocked.get(r, accs[r]), value,
                                                      r.inputs[0].dtype):
                        k.line(stmt)
                for r in col_sums:
                    value = kern.operand(r.inputs[0], dom)
                    at = kern.store_strides(r.out)
                    targets = ([f"{partial[r]}[{kern.offset(at, in_chunk(numel(r.out.shape)))}]"]
                               if parallel else
                               [f"{out}[{kern.offset(at)}]" for out in kern.outs_of.get(r.out, ())])
                    for target in targets:
                        for stmt in accumulate_statements(r.op.name, target, value,
                                                          r.inputs[0].dtype, in_buffer=True):
                            k.line(stmt)
            kern.names = outer_names
            for r, part in parts.items():  # the chunks' parts, in chunk order
                k.line(starts[r])
                with loop_nest(k, (row_parts,), hint="c") as (c,):
                    for stmt in combine(r.op.name, accs[r], f"{part}[{c}]"):
                        k.line(stmt)
            for r in reductions:
                if r in totals and parallel:
                    k.line(f"{totals[r]}[{kern.offset(_elem_strides(dom, kern.row_dims))}] = "
                           f"{accs[r]}")
                    continue
                if r in totals:
                    for stmt in combine(r.op.name, totals[r], accs[r]):
                        k.line(stmt)
                    continue
                var = k.fresh(f"t{kern.index[r]}")
                cast = np_type(r.out.dtype) if r.out.dtype.is_floating_point else ""
                k.line(f"{var} = {cast}({accs[r]})")
                kern.names[r.out] = var
                done.add(r)
            row_steps(p + 1)
    for r, part in partial.items():  # the chunks' column sums, in chunk order
        n = numel(r.out.shape)
        for out in kern.outs_of.get(r.out, ()):
            with loop_nest(k, (n,), hint="o") as (o,):
                with loop_nest(k, (chunks,), hint="c") as (c,):
                    for stmt in combine(r.op.name, f"{out}[{o}]", f"{part}[{affine(0, [(c, n), (o, 1)])}]"):
                        k.line(stmt)
    for r, var in totals.items():
        if parallel:  # the rows' parts, in row order
            acc = k.fresh(f"acc{kern.index[r]}")
            k.line(f"{acc} = {identity(r.op.name, r.inputs[0].dtype, True)}")
            with loop_nest(k, (rows,), hint="o") as (o,):
                for stmt in combine(r.op.name, acc, f"{var}[{o}]"):
                    k.line(stmt)
            var = acc
        cast = np_type(r.out.dtype) if r.out.dtype.is_floating_point else ""
        for out in kern.outs_of.get(r.out, ()):
            k.line(f"{out}[0] = {cast}({var})")


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
# tests/backend/test_blocked_sums.py.
SUM_BLOCK = 256


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

# Elements of the row scratch arrays (see _emit_inner): 64 KiB of float32 per saved step.
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


def _init_result_accumulators(kern, reductions) -> None:
    """Fill the result buffers of reductions that accumulate in them with the identity."""
    for r in reductions:
        for out in kern.outs_of.get(r.out, ()):
            with loop_nest(kern.k, (numel(r.out.shape),), hint="o") as (o,):
                kern.k.line(f"{out}[{affine(0, [(o, 1)])}] = "
                            f"{identity(r.op.name, r.inputs[0].dtype, False)}")


def _row_sized(kern, s) -> bool:
    """Whether ``s`` has the reduced shape (is stored once per row). A reduction always
    does, also one over size-1 dims only, whose result has the domain's shape (simplify
    turns those into reshapes, but a graph given to the backend directly may hold one)."""
    if kern.dims is None:
        return False
    shape = tuple(s.out.shape)
    return shape in kept_shapes(kern.dom, kern.dims) and (shape != kern.dom
                                                          or s.op.name in REDUCTIONS)


def _emit_outer(kern) -> None:
    """Reduced dims outermost: results accumulate in their buffers, row after row."""
    k, body, dom = kern.k, kern.body, kern.dom
    _init_result_accumulators(kern, [r for r in body.nodes if r.op.name in REDUCTIONS])
    _preload_invariants(kern)
    level = _levels(kern)
    for s in body.nodes:
        if level[s] == INV and s.op.name not in REDUCTIONS:
            kern.compute(s)
            if tuple(s.out.shape) != dom:
                kern.store(s.out)
    with kern.loops(kern.row_dims + kern.elem_dims, "i"):
        for s in body.nodes:
            if s.op.name in REDUCTIONS:
                value = kern.operand(s.inputs[0], dom)
                for out in kern.outs_of.get(s.out, ()):
                    target = f"{out}[{kern.offset(kern.store_strides(s.out))}]"
                    for stmt in accumulate_statements(s.op.name, target, value,
                                                      s.inputs[0].dtype, in_buffer=True):
                        k.line(stmt)
                continue
            if level[s] != INV:
                kern.compute(s)
            if tuple(s.out.shape) == dom:
                kern.store(s.out)
