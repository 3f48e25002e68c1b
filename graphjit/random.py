"""The global random generator behind randn/rand/randint and nn.init (``manual_seed``)."""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()
_seed = None


def manual_seed(seed: int):
    """Seed the global generator, as ``torch.manual_seed``; returns the seed."""
    global _generator, _seed
    _seed = int(seed)
    _generator = np.random.default_rng(_seed)
    return _seed


def initial_seed():
    return _seed


def generator() -> np.random.Generator:
    return _generator
