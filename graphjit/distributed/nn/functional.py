"""Differentiable collectives returning new tensors (``torch.distributed.nn.functional``).

Unlike ``graphjit.distributed.all_reduce`` (in place, outside autograd), these record on
the tape and trace into compiled programs like any op: the gradient of a sum over ranks is
the sum over ranks of the gradients ([Collective ops] in graphjit/ops/distributed.py).
"""
from __future__ import annotations

from .. import ReduceOp, _group, _op_name, reduced


def all_reduce(tensor, op=ReduceOp.SUM, group=None):  # noqa: A002 - PyTorch's names
    """``tensor`` reduced over every rank (SUM, AVG, MAX, MIN), as a new tensor."""
    return reduced(tensor, _op_name(op, "all_reduce", ("sum", "avg", "max", "min")),
                   _group(group, "all_reduce"))
