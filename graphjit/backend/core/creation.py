"""What both targets' creation emitters share: ``full`` is the driver filling the result
with its value, no kernel at all."""
from __future__ import annotations

from .literals import literal


def emit_full(node, k) -> None:
    k.fill(literal(node.attrs["value"], node.out.dtype))
    k.no_kernel = True
