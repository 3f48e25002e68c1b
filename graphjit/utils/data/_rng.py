"""Where the data utilities draw their randomness from (shuffles, splits, worker seeds).

# NOTE: [Data generators]
PyTorch's ``generator=`` arguments take a ``torch.Generator``; graphjit has no Generator type
of its own, so they take a NumPy ``Generator`` (``np.random.default_rng(seed)``), a NumPy
``RandomState``, or any object holding a NumPy Generator as ``_generator`` / ``generator``.
``None`` means graphjit's global generator (``graphjit.random``), which ``graphjit.manual_seed``
reseeds, so ``gj.manual_seed(s)`` makes every shuffle and split that follows reproducible.
The global generator is looked up at each draw, never cached: ``manual_seed`` replaces it.
"""
from __future__ import annotations

import numpy as np

from ... import random as _random

# Seeds are drawn as PyTorch draws them (``torch.empty((), dtype=torch.int64).random_()``):
# a non-negative int64.
_SEED_HIGH = 2 ** 63 - 1


def numpy_generator(generator) -> np.random.Generator:
    """The NumPy Generator behind ``generator`` (graphjit's global one for None)."""
    if generator is None:
        return _random.generator()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, np.random.RandomState):
        # A RandomState has no Generator inside; a seed drawn from it gives one whose draws
        # follow (and advance) the RandomState's state.
        return np.random.default_rng(int(generator.randint(0, 2 ** 62, dtype=np.int64)))
    for name in ("_generator", "generator"):
        inner = getattr(generator, name, None)
        if isinstance(inner, np.random.Generator):
            return inner
    raise TypeError(f"generator must be a numpy.random.Generator (np.random.default_rng(seed)), "
                    f"a numpy.random.RandomState or None (graphjit's global generator, seeded by "
                    f"graphjit.manual_seed), got {type(generator).__name__}")


def draw_seed(generator=None) -> int:
    """A fresh seed from ``generator`` (graphjit's global generator for None)."""
    return int(numpy_generator(generator).integers(0, _SEED_HIGH))


def randperm(n: int, generator=None) -> list:
    """A random permutation of ``range(n)`` as a list of ints (``torch.randperm(...).tolist()``)."""
    return numpy_generator(generator).permutation(n).tolist()
