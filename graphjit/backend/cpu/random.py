"""``rand_uniform``: the Philox4x64-10 rounds in 64-bit unsigned arithmetic, one counter
block (four numbers) per loop trip, the same bits as NumPy's Philox in eager mode (see
[Counter-based random numbers] in graphjit/ops/random.py). The rounds are written out once
(``philox`` in core/random.py) and shared with the CUDA kernel."""
from __future__ import annotations

from ...ops.random import WORDS_PER_BLOCK, blocks
from ...shapes import numel
from ..core.random import load_key, philox, unit_float
from .kernel import emits
from .loops import loop_nest, parallel_min_elements


@emits("rand_uniform")
def emit_rand_uniform(node, k) -> None:
    n = numel(node.out.shape)
    if n == 0:
        return
    seed, offset = load_key(k)
    with loop_nest(k, (blocks(n),), hint="b", parallel=n >= parallel_min_elements()) as (b,):
        b = b or "0"
        words = philox(k, b, seed, offset)
        for w, word in enumerate(words):
            at = f"{b} * {WORDS_PER_BLOCK} + {w}"
            store = f"{k.out}[{k.at(at)}] = {unit_float(word, node.out.dtype)}"
            if n % WORDS_PER_BLOCK and w >= n % WORDS_PER_BLOCK:
                with k.block(f"if {at} < {n}:"):
                    k.line(store)
            else:
                k.line(store)
