"""Helpers shared by the tests of tests/nn: float64 tensors, and error checks that the
message names each fragment and the test file's own line."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj


def t64(a, requires_grad=False):
    return gj.tensor(np.asarray(a, dtype=np.float64), dtype=gj.float64,
                     requires_grad=requires_grad)


def raises_naming(exc, call, *fragments, file):
    """``call()`` raises ``exc`` whose message holds every fragment and ``file`` (the user's
    line, as graphjit's errors name it)."""
    with pytest.raises(exc) as info:
        call()
    text = str(info.value)
    for f in fragments + (file,):
        assert f in text, f"{f!r} missing from: {text}"
    return info.value
