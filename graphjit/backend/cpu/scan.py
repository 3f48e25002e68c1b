"""Scans and orders (graphjit/ops/scan.py): ``cumsum``, ``prod`` and ``argsort``, each a
loop along its dim per row (rows as in core/scan.py), in the order eager mode's NumPy
computes, so the results are eager's bits:

- ``cumsum``: one running sum per row, element after element (backwards with
  ``reverse``), as ``np.cumsum`` adds;
- ``prod``: one product per result element, over the reduced elements in C order, as
  ``np.prod`` multiplies (sequentially: NumPy sums pairwise, but multiplies in order);
- ``argsort``: a stable merge sort of each row (bottom-up: runs of 1, 2, 4... merged,
  the left run's element first on ties), by core/scan.py's order (NaN largest). A stable
  order is unique, so it is NumPy's ``kind="stable"`` order, descending too. The row's
  keys and positions are merged back and forth between two halves of scratch arrays the
  kernel allocates (once, or once per parallel chunk): the only kernel in the backend
  that allocates, as a merge needs room to merge into.

Ints and bools sum and multiply in int64. Large tensors run their rows in parallel chunks
(see [Parallel loops] in loops.py): rows are independent, so the results do not depend on
the threads.
"""
from __future__ import annotations

from ...shapes import numel
from ..core.indexing import affine, c_strides
from ..core.literals import literal, np_type
from ..core.scan import before, rows, widened
from .kernel import emits
from .loops import loop_nest, parallel_min_elements


def _parallel(node, n_rows: int) -> bool:
    return n_rows > 1 and numel(node.inputs[0].shape) >= parallel_min_elements()


@emits("cumsum")
def emit_cumsum(node, k) -> None:
    (x,) = node.inputs
    outer, n, inner = rows(x.shape, node.attrs["dim"])
    if outer * n * inner == 0:
        return
    order = f"range({n - 1}, -1, -1)" if node.attrs["reverse"] else f"range({n})"
    acc, r, at = k.fresh("acc"), k.fresh("r"), k.fresh("at")
    with loop_nest(k, (outer, inner), parallel=_parallel(node, outer * inner)) as (a, b):
        k.line(f"{acc} = {literal(0, node.out.dtype)}")
        with k.block(f"for {r} in {order}:"):
            k.line(f"{at} = {affine(0, [(a, n * inner), (r, inner), (b, 1)])}")
            value = widened(f"{k.ins[0]}[{k.at(at)}]", x.dtype, node.out.dtype)
            k.line(f"{acc} = {acc} + {value}")
            k.line(f"{k.out}[{k.at(at)}] = {acc}")


@emits("prod")
def emit_prod(node, k) -> None:
    (x,) = node.inputs
    shape, dims = tuple(x.shape), sorted(node.attrs["dims"])
    if numel(node.out.shape) == 0:
        return
    strides = c_strides(shape)
    kept = [d for d in range(len(shape)) if d not in dims]
    acc, v = k.fresh("acc"), k.fresh("v")
    parallel = _parallel(node, numel([shape[d] for d in kept]))
    with loop_nest(k, [shape[d] for d in kept], parallel=parallel) as kept_idx:
        k.line(f"{acc} = {literal(1, node.out.dtype)}")
        # The reduced elements in C order (an empty product stays 1, as NumPy's).
        with loop_nest(k, [shape[d] for d in dims], hint="r") as red_idx:
            terms = list(zip(kept_idx, [strides[d] for d in kept]))
            terms += list(zip(red_idx, [strides[d] for d in dims]))
            value = f"{k.ins[0]}[{k.at(affine(0, terms))}]"
            k.line(f"{v} = {widened(value, x.dtype, node.out.dtype)}")
            k.line(f"{acc} = {acc} * {v}")
        out_at = affine(0, zip(kept_idx, c_strides([shape[d] for d in kept])))
        k.line(f"{k.out}[{k.at(out_at)}] = {acc}")


@emits("argsort")
def emit_argsort(node, k) -> None:
    (x,) = node.inputs
    outer, n, inner = rows(x.shape, node.attrs["dim"])
    if outer * n * inner == 0:
        return
    if n == 1:
        with loop_nest(k, (outer * inner,)) as (e,):
            k.line(f"{k.out}[{affine(0, [(e, 1)])}] = 0")
        return
    # Two rows of keys and of positions each: a merge pass reads one, writes the other.
    keys, pos = k.fresh("keys"), k.fresh("pos")
    scratch = [f"{keys} = np.empty({2 * n}, {np_type(x.dtype)})",
               f"{pos} = np.empty({2 * n}, np.int64)"]
    parallel = _parallel(node, outer * inner)
    if not parallel:
        for text in scratch:
            k.line(text)
    j, src = k.fresh("j"), k.fresh("src")
    with loop_nest(k, (outer, inner), parallel=parallel,
                   chunk_start=lambda c: scratch) as (a, b):
        base = k.fresh("base")
        k.line(f"{base} = {affine(0, [(a, n * inner), (b, 1)])}")
        with k.block(f"for {j} in range({n}):"):
            k.line(f"{keys}[{j}] = {k.ins[0]}[{k.at(f'{base} + {j} * {inner}')}]")
            k.line(f"{pos}[{j}] = {j}")
        _merge_sort(k, n, keys, pos, src, node.attrs["descending"])
        with k.block(f"for {j} in range({n}):"):
            k.line(f"{k.out}[{k.at(f'{base} + {j} * {inner}')}] = {pos}[{src} + {j}]")


def _merge_sort(k, n, keys, pos, src, descending) -> None:
    """Sort the row at ``keys[0:n]`` (and ``pos`` with it), stably: each pass merges runs of
    ``width`` from the half at ``src`` into the other half; the sorted row ends at ``src``.
    (Halves of one array, not two arrays whose names swap: Numba's parallel compiler does
    not finish compiling a prange body that swaps arrays.)"""
    width, dst, lo, mid, hi, i, j, t = (
        k.fresh(s) for s in ("width", "dst", "lo", "mid", "hi", "i", "j", "t"))
    k.line(f"{src} = 0")
    k.line(f"{width} = 1")
    with k.block(f"while {width} < {n}:"):
        k.line(f"{dst} = {n} - {src}")
        k.line(f"{lo} = 0")
        with k.block(f"while {lo} < {n}:"):
            k.line(f"{mid} = min({lo} + {width}, {n})")
            k.line(f"{hi} = min({lo} + 2 * {width}, {n})")
            k.line(f"{i} = {lo}")
            k.line(f"{j} = {mid}")
            with k.block(f"for {t} in range({lo}, {hi}):"):
                # The right run's element goes first only when strictly before: stable.
                right_first = before(f"{keys}[{src} + {j}]", f"{keys}[{src} + {i}]", descending)
                with k.block(f"if {j} < {hi} and ({i} >= {mid} or {right_first}):"):
                    k.line(f"{keys}[{dst} + {t}] = {keys}[{src} + {j}]")
                    k.line(f"{pos}[{dst} + {t}] = {pos}[{src} + {j}]")
                    k.line(f"{j} += 1")
                with k.block("else:"):
                    k.line(f"{keys}[{dst} + {t}] = {keys}[{src} + {i}]")
                    k.line(f"{pos}[{dst} + {t}] = {pos}[{src} + {i}]")
                    k.line(f"{i} += 1")
            k.line(f"{lo} += 2 * {width}")
        k.line(f"{src} = {dst}")
        k.line(f"{width} *= 2")
