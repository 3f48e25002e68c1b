"""``rand_uniform`` on CUDA: one thread per counter block (four numbers), the rounds of the
CPU kernel (``philox`` in core/random.py), so every target draws NumPy's Philox bits."""
from __future__ import annotations

from ...ops.random import WORDS_PER_BLOCK, blocks
from ...shapes import numel
from ..core.random import load_key, philox, unit_float
from . import runtime
from .kernel import emits, grid_stride


@emits("rand_uniform")
def emit_rand_uniform(node, k) -> None:
    n = numel(node.out.shape)
    if n == 0:
        k.no_kernel = True
        return
    b, loop = grid_stride(k, blocks(n), runtime.threads(), hint="b")
    with loop:
        seed, offset = load_key(k)
        words = philox(k, b, seed, offset)
        for w, word in enumerate(words):
            at = f"{b} * {WORDS_PER_BLOCK} + {w}"
            with k.block(f"if {at} < {n}:"):
                k.line(f"{k.out}[{at}] = {unit_float(word, node.out.dtype)}")
