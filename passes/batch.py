"""Batching the matrix products of an unrolled loop: a few large GEMMs for many small ones.

Tracing a recurrent network unrolls its time loop, so the program holds one small product
per step where one large product would do. Per step ``t`` of an Elman RNN:

    forward    a_t = x_t W_ih^T + ...           # x_t = xs[t]: consecutive rows of xs
    backward   dW_ih = sum_t g_t^T x_t          # an add chain over the steps
               dW_hh = sum_t g_t^T h_(t-1)
               dx_t  = g_t W_ih                 # layer l's input gradient (stacked RNN)

Only the recurrence ``h_(t-1) -> h_t`` is sequential. Three rewrites (on 2-D float
matmuls, before fusion, so the ``gemm`` pass then folds the transposes and epilogues of the
big products as of any other), in this order:

- Stacked rows. Products ``matmul(L_t, R)`` with the same right operand ``R`` whose left
  operands are consecutive row blocks of one value ``X`` (``xs[t]`` reshaped: slices along
  the first dim, see ``row_block``) become one ``Y = matmul(rows of X, R)``; each product is
  then a row slice of ``Y``. 50 products [32,32] x [32,128] -> one [1600,32] x [32,128].
- Sums over rows. An add tree (adds of one shape whose inner adds have no other reader)
  with two or more leaves of the form ``A_i^T B_i`` (``matmul(permute(A_i), B_i)``, or the
  transpose ``permute(matmul(permute(B_i), A_i))`` that autodiff writes for a weight
  gradient) becomes ``cat(A)^T cat(B)`` plus the other leaves: a sum of products is one
  product of the operands stacked along the contracted dim. A stack of consecutive row
  blocks of one value is a slice of it, not a copy (``x_t`` of ``xs``); the pairs are taken
  in the order their operands were first computed, so the stacks of one set of values (the
  steps' gradients, used by both weight gradients) are one ``cat``.
- Independent products. What is left: products ``matmul(L_i, R)`` of one right operand
  whose left operands are separate values (a stacked RNN's per-step gradients ``g_t``,
  made one after another in the backward pass) and depend on no product of the group
  become one ``Y = matmul(cat(L_i), R)`` after the last ``L_i``; each product is a row
  slice of Y and its readers wait for Y (see NOTE: [independent products]). The recurrent
  products ``g_t W_hh`` each depend on the one before and stay apart. When the sum rule
  already stacked the same ``L_i`` (``dW_ih = cat(g)^T cat(x)``), Y reads that stack, so
  the rule costs no copy; otherwise the ``cat`` is one copy of the ``L_i``, split in runs
  of at most ``MAX_STACK_BYTES``. 2-layer bidirectional RNN/LSTM/GRU, T = 5: 58 products
  -> 50 (the 2 x 5 ``g_t W_ih_l1`` are 2).

Measured with the W5 RNN's shapes (2-core Zen 3 VM, Numba calling OpenBLAS): 50 products
[128,32] x [32,128] take 2.1 ms, the one [128,1600] x [1600,128] 0.63 ms; 50 x [32,32] x
[32,128] 0.47 ms, one [1600,32] x [32,128] 0.15 ms.

Numerics: the sum over steps is accumulated inside the GEMM instead of by adds in step
order, a reassociation of the same terms (like a blocked BLAS kernel's own order); results
match eager to float tolerance, not bit for bit. Memory: the stacked operands and the
stacked result exist at once (the steps' values are alive until the weight gradients
anyway; the stacked result adds one copy of the products it replaces).
"""
from __future__ import annotations

import numpy as np

from graphjit.ir import GraphBuilder
from graphjit.ops import api, registry
from graphjit.shapes import numel

from .dce import live_values
from .gemm import is_transpose
from .manager import graph_pass
from .rewrite import replace_uses


def _is_matrix_product(n) -> bool:
    return (n.op.name == "matmul" and len(n.inputs) == 2
            and all(len(v.shape) == 2 for v in n.inputs) and n.out.dtype.is_floating_point)


def _dim0_slice(n) -> bool:
    """A slice that keeps whole trailing dims and steps 1 along the first: a contiguous
    block of the input's rows."""
    x = n.inputs[0]
    starts, stops, steps = n.attrs["starts"], n.attrs["stops"], n.attrs["steps"]
    return (len(x.shape) >= 1 and all(s == 1 for s in steps)
            and all(a == 0 and b == size for a, b, size in zip(starts[1:], stops[1:], x.shape[1:])))


def row_block(v):
    """``(base, first_row, rows)`` when the matrix ``v`` is the rows ``first_row ..
    first_row + rows`` of ``base`` seen as a matrix of ``v``'s width (C order): ``base``
    itself, or reshapes and first-dim slices of it. None otherwise."""
    if len(v.shape) != 2:
        return None
    width, offset, x = v.shape[1], 0, v
    while x.node is not None:
        n = x.node
        if n.op.name == "reshape":
            x = n.inputs[0]
        elif n.op.name == "slice" and _dim0_slice(n):
            offset += n.attrs["starts"][0] * numel(n.inputs[0].shape[1:])
            x = n.inputs[0]
        else:
            break
    if width == 0 or numel(x.shape) % width or offset % width:
        return None
    return x, offset // width, v.shape[0]


def _readers(graph, live) -> dict:
    """Value -> number of reads by live nodes, outputs and updates."""
    count = {}
    for n in graph.nodes:
        if any(v in live for v in n.outs):
            for v in n.inputs:
                count[v] = count.get(v, 0) + 1
    for v in list(graph.outputs) + [v for _, v in graph.updates]:
        count[v] = count.get(v, 0) + 1
    return count


def _consecutive_blocks(values) -> bool:
    """True when ``values`` are consecutive row blocks of one value, in this order."""
    blocks = [row_block(v) for v in values]
    return all(b is not None for b in blocks) and len({id(b[0]) for b in blocks}) == 1 and all(
        blocks[i + 1][1] == blocks[i][1] + blocks[i][2] for i in range(len(blocks) - 1))


def _rows_of_base(values):
    """The stack of ``values`` (``_consecutive_blocks``) as a slice of their base: no copy."""
    base, first, _ = row_block(values[0])
    width, rows = values[0].shape[1], sum(v.shape[0] for v in values)
    matrix = api.reshape(base, (numel(base.shape) // width, width))
    return api.slice_(matrix, (first, 0), (first + rows, width), (1, 1))


class _Emitter:
    """New nodes through the ops' own API (shape checks, no-op reshapes and slices dropped),
    collected per insertion point: ``before[node]`` runs just before ``node``."""

    def __init__(self, graph):
        self.graph = graph
        self.before = {}
        self.cats, self.transposes = {}, {}

    def emit(self, at, source, fn):
        start = len(self.graph.nodes)
        with registry.interpreter(GraphBuilder(self.graph, source=source)):
            value = fn()
        self.before.setdefault(at, []).extend(self.graph.nodes[start:])
        del self.graph.nodes[start:]
        return value

    def stacked(self, values):
        """``values`` (matrices of one width) stacked along the rows: a slice of their base
        when they are its consecutive row blocks, else one ``cat`` per distinct list."""
        if _consecutive_blocks(values):
            return _rows_of_base(values)
        key = tuple(id(v) for v in values)
        if key not in self.cats:
            self.cats[key] = api.cat(list(values), dim=0)
        return self.cats[key]

    def transposed(self, value):
        """``permute(value, (1, 0))``, one node per value."""
        if id(value) not in self.transposes:
            self.transposes[id(value)] = api.permute(value, (1, 0))
        return self.transposes[id(value)]

    def place(self):
        nodes = []
        for n in self.graph.nodes:
            nodes.extend(self.before.get(n, ()))
            nodes.append(n)
        self.graph.nodes = nodes


def _stack_rows(graph, live, em, mapping, position) -> int:
    """Products sharing their right operand, left operands consecutive row blocks of one
    value: one product, sliced."""
    groups = {}
    for n in graph.nodes:
        if n.out not in live or not _is_matrix_product(n):
            continue
        block = row_block(n.inputs[0])
        if block is None:
            continue
        base, first, rows = block
        groups.setdefault((id(n.inputs[1]), id(base), n.inputs[0].shape[1]), []).append(
            (first, rows, n))
    batched = 0
    for members in groups.values():
        members.sort(key=lambda m: m[0])
        runs, run = [], [members[0]]
        for m in members[1:]:
            if m[0] == run[-1][0] + run[-1][1]:
                run.append(m)
            else:
                runs.append(run)
                run = [m]
        runs.append(run)
        for run in runs:
            if len(run) < 2:
                continue
            first_node = min((m[2] for m in run), key=lambda n: position[n.out])
            right = run[0][2].inputs[1]

            def build(run=run, right=right):
                product = api.matmul(em.stacked([m[2].inputs[0] for m in run]), right)
                width, at, parts = product.shape[1], 0, []
                for _, rows, _ in run:
                    parts.append(api.slice_(product, (at, 0), (at + rows, width), (1, 1)))
                    at += rows
                return parts
            parts = em.emit(first_node, first_node.source, build)
            for (_, _, n), part in zip(run, parts):
                mapping[n.out] = part
            batched += len(run)
    return batched


class _Transposed:
    """The transpose of a uniform 2-D ``full`` node (simplify folds ``permute(full)`` into
    a ``full`` of the permuted shape, e.g. a zero initial RNN state in a weight gradient):
    made as a ``full`` of the transposed shape when the stack is built."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def make(self):
        a = self.value.node.attrs
        return api.full(tuple(reversed(self.value.shape)), a["value"], a["dtype"])


def _untransposed(x):
    """``X`` when ``x`` is ``X^T``: a permute's input, or a full node's transpose."""
    if is_transpose(x):
        return x.node.inputs[0]
    if x.node is not None and x.node.op.name == "full" and len(x.shape) == 2:
        return _Transposed(x)
    return None


def _transposed_product(v, readers):
    """``(A, B)`` when ``v`` computes ``A^T B`` as a product only ``v`` needs: ``matmul(
    permute(A), B)``, or ``permute(matmul(permute(B), A))`` (= ``(B^T A)^T``)."""
    n = v.node
    if n is None:
        return None
    if _is_matrix_product(n):
        a = _untransposed(n.inputs[0])
        if a is not None:
            return a, n.inputs[1]
    if is_transpose(v) and readers.get(n.inputs[0], 0) == 1:
        inner = n.inputs[0].node
        if inner is not None and _is_matrix_product(inner):
            b = _untransposed(inner.inputs[0])
            if b is not None:
                return inner.inputs[1], b
    return None


def _made(x):
    return x.make() if isinstance(x, _Transposed) else x


def _position(x, position):
    return position[x.value if isinstance(x, _Transposed) else x]


def _sum_products(graph, live, em, mapping, position) -> int:
    """Add trees with several ``A_i^T B_i`` leaves: one product of the stacked operands."""
    readers = _readers(graph, live)

    def inner_add(v, shape):
        n = v.node
        return (n is not None and n.op.name == "add" and tuple(v.shape) == shape
                and all(tuple(x.shape) == shape for x in n.inputs) and readers.get(v, 0) == 1)

    inner = set()
    for n in graph.nodes:
        if n.op.name == "add" and n.out in live:
            shape = tuple(n.out.shape)
            inner.update(v for v in n.inputs if inner_add(v, shape))
    batched = 0
    for root in graph.nodes:
        if root.op.name != "add" or root.out not in live or root.out in inner \
                or len(root.out.shape) != 2 or not root.out.dtype.is_floating_point:
            continue
        shape = tuple(root.out.shape)
        if not all(tuple(x.shape) == shape for x in root.inputs):
            continue
        leaves, stack = [], list(reversed(root.inputs))
        while stack:
            v = stack.pop()
            if inner_add(v, shape):
                stack.extend(reversed(v.node.inputs))
            else:
                leaves.append(v)
        pairs, others = [], []
        for v in leaves:
            pair = (_transposed_product(v, readers)
                    if readers.get(v, 0) == 1 and v not in mapping else None)
            (pairs if pair is not None else others).append(pair if pair is not None else v)
        if len(pairs) < 2:
            continue
        # In the order the operands were first computed: the steps in time order, whichever
        # sum reads them, so equal stacks are one cat.
        pairs.sort(key=lambda p: min(_position(p[0], position), _position(p[1], position)))

        def build(pairs=pairs, others=others):
            total = api.matmul(em.transposed(em.stacked([_made(a) for a, _ in pairs])),
                               em.stacked([_made(b) for _, b in pairs]))
            for v in others:
                total = api.add(total, v)
            return total
        mapping[root.out] = em.emit(root, root.source, build)
        batched += len(pairs)
    return batched


# ---- 3. independent products of one right operand ---------------------------------------

# NOTE: [independent products] Products ``matmul(L_i, R)`` of one right operand whose left
# operands are separate values (the per-step gate gradients ``g_t`` of a stacked RNN, whose
# ``g_t W_ih`` is the gradient of the layer's input) can be computed at once when no L_i
# depends on a product of the group: ``Y = cat(L_i) R``, placed after the last L_i (and R),
# each product a row slice of Y. Grouping by "level" (the number of R-products on the
# longest path into a value; a product's level is its left operand's plus one) finds such
# groups: an ancestor of L_j's has a lower level than L_j's product, so the products of one
# level depend on none of each other. A recurrence (h_t = f(h_(t-1) R)) puts one product
# on each level and stays sequential. The readers of the products (and what reads them)
# that stood before Y move just after it, in their order: none of them is an L_i (a reader
# depends on a product), so the order stays topological and no cycle appears.
MAX_STACK_BYTES = 64 << 20  # a new cat (one copy of the L_i) beyond this is split in chunks


def _right_operands(graph, live):
    """The right operands of two or more live matrix products, in program order."""
    count = {}
    for n in graph.nodes:
        if n.out in live and _is_matrix_product(n):
            count[n.inputs[1]] = count.get(n.inputs[1], 0) + 1
    return [r for r, c in count.items() if c > 1]


def _levels(graph, live, rights) -> dict:
    """For each of ``rights``, its live products with two or more (distinct left operands)
    of one level and dtype: ``{id(right): [nodes of one level], lowest level first}``.
    One walk for all: a value's levels are a vector, one entry per right operand (shared
    between values while no product of any of them is met)."""
    column = {id(r): j for j, r in enumerate(rights)}
    level, groups = {}, {}
    # A graph split into a forward and a backward program (``fusion_split``: the backward's
    # seeds) must keep every product on its side: a forward product stacked with backward
    # ones would be computed in the backward program, after the forward's results it feeds.
    split = set(getattr(graph, "fusion_split", ()) or ())
    after_split = set(split)
    for n in graph.nodes:
        seen = [level[v] for v in n.inputs if v in level]
        here = None
        for vec in seen:
            here = vec if here is None or here is vec else np.maximum(here, vec)
        backward = bool(split) and any(v in after_split for v in n.inputs)
        if backward:
            after_split.update(n.outs)
        j = column.get(id(n.inputs[1])) if len(n.inputs) == 2 else None
        if j is not None and n.out in live and _is_matrix_product(n):
            here = np.zeros(len(rights), np.int64) if here is None else here.copy()
            here[j] += 1
            groups.setdefault((j, int(here[j]), n.inputs[0].dtype.name, backward),
                              []).append(n)
        if here is not None:
            for v in n.outs:
                level[v] = here
    found = {}
    for (j, _, _, _), group in sorted(groups.items(), key=lambda kv: kv[0][:2]):
        if len({id(n.inputs[0]) for n in group}) > 1:
            found.setdefault(id(rights[j]), []).append(group)
    return found


def _cats(graph, live) -> dict:
    """Live ``cat(..., dim=0)`` nodes by the set of values they stack (the sum rule stacks
    a step's gradients for a weight gradient): a stack of them costs no copy."""
    found = {}
    for n in graph.nodes:
        if n.op.name == "cat" and n.attrs.get("dim") == 0 and n.out in live:
            key = frozenset(id(v) for v in n.inputs)
            if len(key) == len(n.inputs):
                found.setdefault(key, n)
    return found


def _chunks(lefts, limit):
    """``lefts`` split in runs whose stack stays within ``limit`` bytes (runs of one left
    operand are dropped: nothing to batch)."""
    runs, run, size = [], [], 0
    for v in lefts:
        nbytes = numel(v.shape) * v.dtype.itemsize
        if run and size + nbytes > limit:
            runs.append(run)
            run, size = [], 0
        run.append(v)
        size += nbytes
    runs.append(run)
    return [r for r in runs if len(r) > 1]


def _stack_group(graph, products, lefts, cat) -> None:
    """Rewrite the independent ``products`` (one right operand) as row slices of ONE
    product of ``lefts`` (their distinct left operands, in stack order; ``cat``: an
    existing stack of them, else None) placed after its operands."""
    right = products[0].inputs[1]
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    at = max(-1 if v.node is None else index[id(v.node)] for v in lefts + [right])
    # The readers of the products that stand before ``at``, and their readers: after Y.
    reached, moved = {p.out for p in products}, set()
    for n in graph.nodes[:at + 1]:
        if any(v in reached for v in n.inputs):
            moved.add(id(n))
            reached.update(n.outs)
    start = len(graph.nodes)
    with registry.interpreter(GraphBuilder(graph, source=products[0].source)):
        if cat is not None:
            stack = cat.out
        elif _consecutive_blocks(lefts):
            stack = _rows_of_base(lefts)
        else:
            stack = api.cat(lefts, dim=0)
        y = api.matmul(stack, right)
        part, row, width = {}, 0, y.shape[1]
        for v in lefts:
            part[id(v)] = api.slice_(y, (row, 0), (row + v.shape[0], width), (1, 1))
            row += v.shape[0]
    new = graph.nodes[start:]
    del graph.nodes[start:]
    if cat is not None and index[id(cat)] > at:
        new.insert(0, cat)  # it reads only the L_i: it can stand just after the last one
    before = graph.nodes[:at + 1]
    graph.nodes = ([n for n in before if id(n) not in moved] + new
                   + [n for n in before if id(n) in moved]
                   + [n for n in graph.nodes[at + 1:] if n is not cat])
    replace_uses(graph, {p.out: part[id(p.inputs[0])] for p in products})


def _independent_products(graph) -> int:
    """Products of one right operand that depend on none of each other: one product."""
    batched, done = 0, set()
    while True:
        live = live_values(graph)
        rights = [r for r in _right_operands(graph, live) if id(r) not in done]
        groups = _levels(graph, live, rights)
        if not groups:
            return batched
        # One right operand per round: rewriting its products adds reads (a product's
        # readers wait for all its group's operands) that can change the levels of other
        # right operands' products, so those are found again on the new graph. The levels of
        # one right operand stay valid: the added reads come from its lower levels only.
        right = next(r for r in rights if id(r) in groups)
        done.add(id(right))
        cats = _cats(graph, live)
        for group in groups[id(right)]:
            by_left = {}
            for p in group:
                by_left.setdefault(id(p.inputs[0]), []).append(p)
            lefts = list({id(p.inputs[0]): p.inputs[0] for p in group}.values())
            cat = cats.get(frozenset(id(v) for v in lefts))
            blocks = sorted(lefts, key=lambda v: (row_block(v) or (None, 0))[1])
            if cat is not None:
                runs = [list(cat.inputs)]
            elif _consecutive_blocks(blocks):
                # Row blocks of one value (e.g. the slices of a product the first rule
                # stacked): the stack is a slice of it, no copy.
                runs = [blocks]
            else:
                runs = _chunks(lefts, MAX_STACK_BYTES)
            for run in runs:
                members = [p for v in run for p in by_left[id(v)]]
                _stack_group(graph, members, run, cat)
                batched += len(members)


@graph_pass("batch")
def batch(graph):
    live = live_values(graph)
    # Where each value's producer stands (inputs before every node, in their order).
    position = {v: i - len(graph.inputs) for i, v in enumerate(graph.inputs)}
    position.update((v, i) for i, n in enumerate(graph.nodes) for v in n.outs)
    em, mapping = _Emitter(graph), {}
    stacked = _stack_rows(graph, live, em, mapping, position)
    summed = _sum_products(graph, live, em, mapping, position)
    em.place()
    replace_uses(graph, mapping)
    # After the rules above (their products are dead now, so none is handled twice; the
    # stacks the sum rule made can be shared).
    independent = _independent_products(graph)
    batch.last_stats = {"products_stacked": stacked, "products_summed": summed,
                        "products_independent": independent}
    return graph
