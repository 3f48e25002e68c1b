"""Which eager CUDA slices are views (``contiguous_slice`` in graphjit/backend/cuda/eager.py),
checked against NumPy: a slice is one contiguous run of its base exactly when NumPy's view
of it is C-contiguous (or has one element), and then its offset is the view's distance
from the base's first element. Pure Python: runs with or without a CUDA device."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from graphjit.backend.cuda.eager import contiguous_slice

SHAPES = [(5,), (3, 4), (2, 3, 4), (1, 4, 1), (2, 1, 3)]


def _slices(n):
    picks = [(0, n, 1), (1, n, 1), (0, 1, 1), (n - 1, n, 1), (0, n, 2), (1, n - 1, 1)]
    return [p for p in dict.fromkeys(picks) if 0 <= p[0] < p[1] <= n]


def _cases():
    for shape in SHAPES:
        for spec in itertools.product(*[_slices(n) for n in shape]):
            yield pytest.param(shape, spec, id=f"{shape}-{spec}")


@pytest.mark.parametrize("shape,spec", list(_cases()))
def test_contiguous_slice_matches_numpy(shape, spec):
    base = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    view = base[tuple(slice(*s) for s in spec)]
    starts, stops, steps = ([s[i] for s in spec] for i in range(3))
    found = contiguous_slice(shape, starts, stops, steps)
    contiguous = view.size > 0 and (view.flags.c_contiguous or view.size == 1)
    assert (found is not None) == contiguous, (view.strides, view.flags.c_contiguous)
    if found is not None:
        offset, length = found
        assert length == view.size
        np.testing.assert_array_equal(base.reshape(-1)[offset:offset + length],
                                      view.reshape(-1))
