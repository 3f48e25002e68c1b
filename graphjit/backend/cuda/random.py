"""``rand_uniform`` on CUDA: one thread per counter block (four numbers), the rounds of the
CPU kernel (``backend/cpu/random.py``), so every target draws NumPy's Philox bits."""
from __future__ import annotations

from ...ops.random import WORDS_PER_BLOCK, blocks
from ...shapes import numel
from ..cpu.random import philox_lines, unit_float
from . import runtime
from .emit import emits, grid_stride


@emits("rand_uniform")
def emit_rand_uniform(node, k) -> None:
    n = numel(node.out.shape)
    if n == 0:
        k.no_kernel = True
        return
    b, loop = grid_stride(k, blocks(n), runtime.threads(), hint="b")
    with loop:
        seed, offset = k.fresh("seed"), k.fresh("offset")
        k.line(f"{seed} = np.uint64({k.ins[0]}[0])")
        k.line(f"{offset} = np.uint64({k.ins[1]}[0])")
        lines, words = philox_lines(k, b, seed, offset)
        for text in lines:
            k.line(text)
        for w, word in enumerate(words):
            at = f"{b} * {WORDS_PER_BLOCK} + {w}"
            with k.block_(f"if {at} < {n}:"):
                k.line(f"{k.out}[{at}] = {unit_float(word, node.out.dtype)}")
