"""Collectives as ops: ``all_reduce(x, handles, reduce_op=)``, ``broadcast(x, handles, src=)``.

# NOTE: [Collective ops]
A collective is an op like any other, so a compiled training step holds its all-reduces
as nodes between the backward and the optimizer update and runs as one program
(graphjit/nn/parallel/distributed.py). Its second operand is the process group's *handle
table*, a 1-D int64 tensor the group owns (graphjit/distributed/native.py fills it):
the group's id, the MPI communicator, the addresses of the MPI C functions a compiled
kernel calls, the MPI datatype and reduction handles, and the group's timeout. The
tracer lifts it like any tensor a function reads, so it is a runtime input of the
program: the generated kernel's text holds no address and no handle (those differ
between processes and MPI libraries), every rank generates the same kernel text, and
Numba's cache keeps it like every other kernel (backend/cpu/collective.py). Eagerly,
``impl`` finds the group by its id (``GROUPS``, filled by graphjit.distributed) and
calls MPI through mpi4py. Ops never import MPI: graphjit.distributed registers the groups.

Every rank must run the same collectives in the same order (MPI matches them by order
on the communicator). A compiled program runs its nodes in graph order, and the passes
keep the relative order of nodes that do not depend on each other (fuse's scheduler
orders by first position; the others only delete or replace nodes), so programs traced
from the same code call them in the same order on every rank. A collective is never
fused and never computed twice; CSE may merge two with the same operands and attributes
(they compute the same value), on every rank alike.

``all_reduce`` reduces with ``reduce_op`` in {"sum", "max", "min", "prod"}; an average is a sum
divided by the world size (graphjit.distributed does that), so the division can fuse
into whatever reads the result. Its gradient: the sum over ranks of the cotangents (each
rank's loss reads the same reduced value), for max and min masked to the ranks that held
the extreme (ties: every such rank gets it whole). ``broadcast`` copies rank ``src``'s
value to every rank; it has no gradient (buffers are broadcast, not parameters).
"""
from __future__ import annotations

from ..errors import DTypeError, GraphjitError, ShapeError
from ..shapes import TensorType, numel
from .registry import OpDef, bind, register

# The handle table: its entries, by position (graphjit/distributed/native.py fills it).
GROUP = 0         # the group's id in GROUPS
COMM = 1          # the MPI communicator (an int or a pointer, by MPI library)
IALLREDUCE = 2    # addresses of MPI_Iallreduce, MPI_Ibcast, MPI_Test, MPI_Wtime, sched_yield
IBCAST = 3
TEST = 4
WTIME = 5
YIELD = 6
TIMEOUT_US = 7    # the group's timeout on one collective, in microseconds
DATATYPES = {"float32": 8, "float64": 9, "int64": 10}  # MPI_FLOAT, MPI_DOUBLE, MPI_INT64_T
REDUCTIONS = {"sum": 11, "max": 12, "min": 13, "prod": 14}  # MPI_SUM, MPI_MAX, ...
TABLE_SIZE = 15

# Group id -> the group object that runs collectives eagerly (``all_reduce_array(x, op)``,
# ``broadcast_array(x, src)``, each returning a new array); graphjit.distributed fills it.
GROUPS: dict = {}


def _group(handles, who):
    group = GROUPS.get(int(handles[GROUP]))
    if group is None:
        raise GraphjitError(f"the process group of this {who} is not initialised in this "
                            "process (graphjit.distributed.init_process_group) or was "
                            "destroyed", op=who)
    return group


def _check(name, x: TensorType, handles: TensorType) -> None:
    if x.dtype.name not in DATATYPES:
        raise DTypeError(f"collectives take float32, float64 or int64 tensors, got "
                         f"{x.dtype.name}{list(x.shape)}", op=name)
    if handles.shape != (TABLE_SIZE,) or handles.dtype.name != "int64":
        raise ShapeError(f"the second operand must be a process group's handle table "
                         f"(int64[{TABLE_SIZE}]), got {handles.dtype.name}"
                         f"{list(handles.shape)}", op=name)


def all_reduce(x, handles, reduce_op: str = "sum"):
    """The elementwise reduction ``reduce_op`` of ``x`` over every rank of the group whose handle
    table is ``handles`` (a new tensor; see [Collective ops])."""
    return bind(ALL_REDUCE, x, handles, reduce_op=reduce_op)


def broadcast(x, handles, src: int = 0):
    """Rank ``src``'s ``x`` on every rank of the group (a new tensor)."""
    return bind(BROADCAST, x, handles, src=src)


def _all_reduce_infer(x: TensorType, handles: TensorType, reduce_op) -> TensorType:
    _check("all_reduce", x, handles)
    if reduce_op not in REDUCTIONS:
        raise GraphjitError(f"unknown reduction {reduce_op!r}; expected one of "
                            f"{sorted(REDUCTIONS)}", op="all_reduce")
    return x


def _all_reduce(x, handles, reduce_op):
    return _group(handles, "all_reduce").all_reduce_array(x, reduce_op)


def _all_reduce_vjp(g, out, x, handles, reduce_op):
    from . import api
    if reduce_op == "prod":
        raise GraphjitError("all_reduce(reduce_op='prod') has no gradient rule",
                            op="all_reduce")
    total = all_reduce(g, handles, reduce_op="sum")
    if reduce_op == "sum":
        return total, None
    return api.mul(total, api.cast(api.eq(x, out), total.dtype)), None


def _broadcast_infer(x: TensorType, handles: TensorType, src) -> TensorType:
    _check("broadcast", x, handles)
    return x


def _broadcast(x, handles, src):
    return _group(handles, "broadcast").broadcast_array(x, src)


def _cost(out: TensorType, x: TensorType, handles, **attrs):
    # What leaves and enters this process (a ring all-reduce moves about twice that).
    return numel(x.shape), 2 * numel(x.shape) * x.dtype.itemsize


ALL_REDUCE = register(OpDef(name="all_reduce", kind="opaque", infer=_all_reduce_infer,
                            impl=_all_reduce, vjp=_all_reduce_vjp, saves=(0, 1, "out"),
                            cost=_cost))
BROADCAST = register(OpDef(name="broadcast", kind="opaque", infer=_broadcast_infer,
                           impl=_broadcast, vjp=None, cost=_cost,
                           no_grad_reason="collective copies of buffers; not differentiated"))
