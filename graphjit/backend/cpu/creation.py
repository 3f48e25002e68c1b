"""Ops with no tensor inputs: ``full`` (the driver allocates it filled: no kernel) and
``iota`` (the index along one dim)."""
from __future__ import annotations

from ...shapes import numel
from ..core.creation import emit_full
from ..core.indexing import affine
from .kernel import emits
from .loops import loop_nest

emits("full")(emit_full)  # the driver fills the result (core/creation.py)


@emits("iota")
def emit_iota(node, k) -> None:
    # out[a, d, b] = d over the shape seen as (before dim, dim, after dim).
    shape, dim = tuple(node.attrs["shape"]), node.attrs["dim"]
    outer, size, inner = numel(shape[:dim]), shape[dim], numel(shape[dim + 1:])
    with loop_nest(k, (outer, size, inner)) as (a, d, b):
        value = d if d is not None else "0"
        k.line(f"{k.out}[{affine(0, [(a, size * inner), (d, inner), (b, 1)])}] = {value}")
