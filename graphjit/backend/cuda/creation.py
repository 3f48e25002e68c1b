"""Ops with no tensor inputs on CUDA: ``full`` (the driver fills the result: no kernel) and
``iota`` (one thread per element)."""
from __future__ import annotations

from ...shapes import numel
from ..core.creation import emit_full
from . import runtime
from .kernel import done_if_empty, emits, grid_stride

emits("full")(emit_full)  # the driver fills the result (core/creation.py)


@emits("iota")
def emit_iota(node, k) -> None:
    shape, dim = tuple(node.attrs["shape"]), node.attrs["dim"]
    if done_if_empty(node, k):
        return
    e, loop = grid_stride(k, numel(shape), runtime.threads())
    with loop:
        inner = numel(shape[dim + 1:])
        value = f"{e} // {inner}" if inner != 1 else e
        k.line(f"{k.out}[{e}] = ({value}) % {shape[dim]}")
