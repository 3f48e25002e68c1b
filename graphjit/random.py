"""Random number generators: ``Generator`` (``torch.Generator``), the default one behind
``rand``/``randn``/``randint``, ``nn.init`` and dropout, and ``manual_seed``,
``get_rng_state``/``set_rng_state``, ``fork_rng``.

A generator is a seed and the next free block of a counter-based generator (see
[Counter-based random numbers] in graphjit/ops/random.py): a draw is the op
``rand_uniform(seed, offset)``, a pure function of those two numbers, so eager mode and a
compiled program that makes the same draws from the same state get the same numbers, and a
compiled program draws new ones at every call (seed and offset are its runtime inputs; the
generator moves past the blocks the call used: [Random numbers while tracing] in
graphjit/jit/trace.py). Each generator also holds a NumPy generator for host-side choices
that never enter a graph (``randperm``, a DataLoader's shuffle), reseeded with it.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from . import _tracing
from .tensor import Tensor

# PyTorch's default seed (so a fresh process draws reproducibly until seeded otherwise).
DEFAULT_SEED = 67280421310721
_M64 = (1 << 64) - 1


class Generator:
    """A random number generator, as ``torch.Generator``: ``manual_seed``, ``seed``,
    ``initial_seed``, ``get_state``/``set_state``, ``device``; pass it as ``generator=`` to
    ``rand``, ``randn``, ``randint``, ``randperm`` and the DataLoader."""

    def __init__(self, device="cpu"):
        from .devices import as_device
        self.device = as_device(device)
        self.manual_seed(DEFAULT_SEED)

    # The state lives in two 0-d int64 arrays (the seed's and the offset's 64 bits), changed
    # in place: a compiled program reads them as inputs at every call.
    _seed_arr: np.ndarray
    _offset_arr: np.ndarray

    @property
    def _seed(self) -> int:
        return int(self._seed_arr.view(np.uint64))

    @property
    def _offset(self) -> int:
        return int(self._offset_arr.view(np.uint64))

    def _set(self, seed: int, offset: int) -> None:
        if not hasattr(self, "_seed_arr"):
            self._seed_arr = np.zeros((), np.int64)
            self._offset_arr = np.zeros((), np.int64)
        self._seed_arr.view(np.uint64)[...] = seed & _M64
        self._offset_arr.view(np.uint64)[...] = offset & _M64

    def advance(self, n_blocks: int) -> None:
        """Move past ``n_blocks`` counter blocks (a compiled call's draws, after it ran)."""
        self._offset_arr.view(np.uint64)[...] = (self._offset + n_blocks) & _M64

    def manual_seed(self, seed) -> "Generator":
        seed = int(seed)
        if not -(1 << 63) <= seed <= _M64:
            raise ValueError(f"seed must be in [-2**63, 2**64), got {seed}")
        self._set(seed, 0)
        self._host = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Seed with a non-deterministic number (from the OS) and return it."""
        seed = int.from_bytes(os.urandom(8), "little") >> 1
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        """The state as an int64 tensor: ``[seed, next block]`` (the seed's 64 bits) and the
        host generator's state (``set_state`` takes it back)."""
        t = Tensor._wrap(np.array([self._seed, self._offset], dtype=np.uint64).view(np.int64))
        t._host_state = self._host.bit_generator.state
        return t

    def set_state(self, state) -> "Generator":
        arr = np.asarray(state.numpy() if hasattr(state, "numpy") else state)
        if arr.shape != (2,) or arr.dtype.kind not in "iu":
            raise ValueError(f"a generator state is an int64 tensor of 2 elements, got "
                             f"{arr.dtype}{list(arr.shape)}")
        seed, offset = (int(v) & _M64 for v in arr.astype(np.int64).view(np.uint64))
        self._set(seed, offset)
        host = getattr(state, "__dict__", {}).get("_host_state")
        self._host = np.random.default_rng(seed)
        if host is not None:
            self._host.bit_generator.state = host
        return self

    def take(self, n_blocks: int):
        """Reserve ``n_blocks`` counter blocks: ``(seed, first block)`` as Python ints eagerly;
        while tracing, the program's runtime inputs for them (the tracer moves the
        generator on after each call)."""
        tracer = _tracing.active()
        if tracer is not None:
            return tracer.random_state(self, n_blocks)
        first = self._offset
        self.advance(n_blocks)
        return self._seed, first

    def host(self) -> np.random.Generator:
        """The NumPy generator for host-side draws (permutations, shuffles)."""
        return self._host

    def __repr__(self) -> str:
        return f"<graphjit.Generator seed={self._seed} offset={self._offset} device={self.device}>"


default_generator = Generator()


def manual_seed(seed) -> Generator:
    """Seed the default generator, as ``torch.manual_seed``; returns it."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state) -> None:
    default_generator.set_state(state)


@contextlib.contextmanager
def fork_rng(devices=None, enabled: bool = True):
    """Draws inside the block leave the default generator as it was (``torch.random.fork_rng``;
    there is one generator for every device here, so ``devices`` is accepted and unused)."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def generator() -> np.random.Generator:
    """The default generator's host-side NumPy generator (see ``Generator.host``)."""
    return default_generator.host()


def uniform(shape, dtype, generator: Generator | None = None):
    """Floats in [0, 1) of ``shape`` and ``dtype`` from ``generator`` (the default one): the
    ``rand_uniform`` op on the generator's state, eagerly or traced."""
    from .ops import api
    from .ops.random import blocks
    from .ops.registry import bind, get
    from .shapes import numel
    gen = generator or default_generator
    seed, offset = gen.take(blocks(numel(shape)))
    if isinstance(seed, int):
        seed = api.constant(np.array(seed, np.uint64).view(np.int64))
        offset = api.constant(np.array(offset, np.uint64).view(np.int64))
    return bind(get("rand_uniform"), seed, offset, shape=tuple(shape), dtype=dtype)
