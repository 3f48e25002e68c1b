"""Random numbers as an op: ``rand_uniform(seed, offset)`` draws from a counter-based
generator, so a draw is a pure function of its inputs.

# NOTE: [Counter-based random numbers]
graphjit draws with Philox4x64-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
3", SC 2011), the generator NumPy ships as ``np.random.Philox``: a block of four 64-bit words
is a keyed bijection of a 256-bit counter, so any block can be computed on its own, in any
order, on any thread. A draw of ``n`` numbers with key ``seed`` at block ``offset`` takes the
words of blocks ``offset .. offset + ceil(n / 4) - 1`` in order (element ``j`` is word
``j % 4`` of block ``offset + j // 4``; counter ``[block, 0, 0, 0]``, key ``[seed, 0]``) and
turns each word into a float in [0, 1) exactly: float32 ``(w >> 40) * 2**-24``, float64
``(w >> 11) * 2**-53``. Eagerly NumPy's own Philox computes the words (its counter is set one
block back: it increments before it generates); the compiled kernels compute the same
rounds in 64-bit unsigned integer arithmetic (``backend/*/random.py``), so eager mode and a
compiled program draw the same bits for the same seed and offset. The generator
(``graphjit.random.Generator``) holds the seed and the next free block; ``seed`` and
``offset`` are 0-d int64 inputs of the op (a seed's 64 bits as int64), runtime inputs of a
compiled program, so every call draws new numbers without compiling again.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..shapes import TensorType, numel
from .registry import OpDef, register

# Philox4x64-10's constants (Random123): the multipliers and the key increments (Weyl).
MULTIPLIERS = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
KEY_STEPS = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
ROUNDS = 10
WORDS_PER_BLOCK = 4
_M64 = (1 << 64) - 1


def blocks(n: int) -> int:
    """The counter blocks a draw of ``n`` numbers takes."""
    return -(-n // WORDS_PER_BLOCK)


def words(seed: int, offset: int, n: int) -> np.ndarray:
    """The first ``n`` words (uint64) of blocks ``offset, offset + 1, ...`` under ``seed``."""
    if n == 0:
        return np.zeros(0, np.uint64)
    ctr = (offset - 1) % (1 << 256)  # NumPy's Philox increments the counter before a block
    counter = np.array([(ctr >> (64 * i)) & _M64 for i in range(4)], dtype=np.uint64)
    key = np.array([seed & _M64, 0], dtype=np.uint64)
    return np.random.Philox(counter=counter, key=key).random_raw(n)


def to_unit_float(w: np.ndarray, dtype) -> np.ndarray:
    """Words -> floats in [0, 1), exactly (every result is a multiple of 2**-24 or 2**-53)."""
    if np.dtype(dtype) == np.float32:
        return (w >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    return (w >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def _rand_uniform_infer(seed: TensorType, offset: TensorType, shape, dtype) -> TensorType:
    for name, t in (("seed", seed), ("offset", offset)):
        if t.shape != () or t.dtype.name != "int64":
            raise ShapeError(f"{name} must be a 0-d int64 tensor, got {t.dtype.name}"
                             f"{list(t.shape)}", op="rand_uniform")
    if not dtype.is_floating_point:
        raise DTypeError(f"draws floating point numbers; dtype {dtype.name} is not one",
                         op="rand_uniform")
    return TensorType(tuple(shape), dtype)


def _rand_uniform(seed, offset, shape, dtype):
    n = numel(shape)
    w = words(int(seed) & _M64, int(offset) & _M64, n)
    return to_unit_float(w, dtype.np).reshape(shape)


def _rand_cost(out: TensorType, *inputs, **attrs):
    # 10 rounds of two 64x64->128-bit products (four 32-bit ones each) per block of four.
    return 25 * numel(out.shape), numel(out.shape) * out.dtype.itemsize


register(OpDef(name="rand_uniform", kind="opaque", infer=_rand_uniform_infer,
               impl=_rand_uniform, vjp=None, cost=_rand_cost,
               no_grad_reason="random numbers do not depend on the inputs' values smoothly"))
