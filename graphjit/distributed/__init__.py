"""``graphjit.distributed``: data-parallel training on MPI, as ``torch.distributed``.

Launch one process per rank with MPI's launcher, ``mpiexec -n 4 python train.py`` (with a
host file across machines), and call ``init_process_group(backend="mpi")`` first: rank
and world size come from MPI (through mpi4py; ``pip install "graphjit[distributed]"``
brings mpi4py and MPICH as wheels). Then ``get_rank``, ``get_world_size``, ``barrier`` and
the collectives ``all_reduce`` (``ReduceOp.SUM``, ``AVG``, ``MAX``, ``MIN``, ``PRODUCT``),
``broadcast``, ``all_gather``, ``reduce_scatter``, each in place on the tensors given and
with ``async_op=True`` returning a ``Work`` to ``wait()`` on, as in PyTorch; and
``destroy_process_group``. ``graphjit.nn.parallel.DistributedDataParallel`` averages
gradients with them, and ``graphjit.utils.data.DistributedSampler`` shards a data set.

Tensors are float32, float64 or int64, on the CPU; a CUDA tensor is copied to the host
and back around each collective (no CUDA-aware MPI or NCCL yet). Inside a compiled
function ``all_reduce`` and ``broadcast`` are ops of the program: its native code calls
MPI itself ([Collective ops] in graphjit/ops/distributed.py); the other collectives run
eagerly only. Every collective times out ([Collective timeouts] in group.py), and a rank
that raises aborts the whole job ([Abort on error]).
"""
from __future__ import annotations

import datetime
import importlib.util

import numpy as np

from .. import _tracing, devices
from ..errors import DTypeError, ShapeError, TraceError
from ..ops import distributed as _ops
from .group import DistributedError, ProcessGroup, Work, install_abort_hook, remove_abort_hook

__all__ = ["Backend", "DistributedError", "ProcessGroup", "ReduceOp", "Work", "all_gather",
           "all_reduce", "barrier", "broadcast", "destroy_process_group", "get_backend",
           "get_rank", "get_world_size", "init_process_group", "is_available",
           "is_initialized", "is_mpi_available", "reduce_scatter"]

# As in PyTorch (torch.distributed.constants.default_pg_timeout).
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


class Backend:
    MPI = "mpi"


class ReduceOp:
    """The reductions of ``all_reduce`` and ``reduce_scatter`` (``torch.distributed.ReduceOp``)."""
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "prod"


_OP_NAMES = {"sum": "sum", "avg": "avg", "max": "max", "min": "min", "prod": "prod",
             "product": "prod"}

_world: ProcessGroup | None = None


class group:  # noqa: N801  (torch.distributed.group.WORLD)
    WORLD = None  # the default group (set by init_process_group)


def is_available() -> bool:
    return True


def is_mpi_available() -> bool:
    """Whether mpi4py is installed (importing it would start MPI, so it is not imported)."""
    return importlib.util.find_spec("mpi4py") is not None


def init_process_group(backend=None, init_method=None, timeout=None, world_size: int = -1,
                       rank: int = -1, store=None, group_name: str = "", pg_options=None):
    """Join the job's process group: every rank of ``MPI_COMM_WORLD``.

    ``backend``: ``"mpi"`` (or None). Rank and world size come from MPI; ``world_size``
    and ``rank``, if given, must agree with it. ``timeout`` (a ``timedelta`` or seconds;
    30 minutes by default): how long one collective may wait for the other ranks before
    raising ([Collective timeouts]). Installs the abort path ([Abort on error]).
    ``init_method``, ``store``, ``group_name`` and ``pg_options`` are accepted for
    PyTorch's signature and unused, as by PyTorch's MPI backend.
    """
    global _world
    if backend not in (None, "mpi", Backend.MPI):
        raise DistributedError(f"backend {backend!r} is not available: graphjit.distributed runs "
                               "on MPI only (backend='mpi')", op="init_process_group")
    if _world is not None:
        raise DistributedError("trying to initialize the default process group twice",
                               op="init_process_group")
    if not is_mpi_available():
        raise DistributedError("the MPI backend needs mpi4py and an MPI library: pip install "
                               "\"graphjit[distributed]\" (mpi4py and MPICH wheels), or mpi4py "
                               "built against your cluster's MPI", op="init_process_group")
    from mpi4py import MPI  # starts MPI (MPI_Init_thread) unless it is running already
    comm = MPI.COMM_WORLD
    for name, given, actual in (("world_size", world_size, comm.Get_size()),
                                ("rank", rank, comm.Get_rank())):
        if given not in (-1, None) and given != actual:
            raise DistributedError(f"{name}={given} was given but MPI says {actual}: with the "
                                   "MPI backend both come from the launcher (mpiexec -n N)",
                                   op="init_process_group")
    _world = ProcessGroup(comm, MPI, DEFAULT_TIMEOUT if timeout is None else timeout)
    group.WORLD = _world
    install_abort_hook(_world)


def is_initialized() -> bool:
    return _world is not None


def destroy_process_group(group=None) -> None:  # noqa: A002 - PyTorch's name
    """Leave the process group (MPI itself is finalised when the process exits)."""
    global _world
    pg = _group(group, "destroy_process_group")
    pg.destroy()
    if pg is _world:
        _world = None
        globals()["group"].WORLD = None
        remove_abort_hook()


def _group(g, who) -> ProcessGroup:
    if _world is None:
        raise DistributedError("Default process group has not been initialized, please make "
                               "sure to call init_process_group.", op=who)
    if g is not None and g is not _world:
        raise DistributedError("only the default (world) process group exists", op=who)
    return _world


def default_group() -> ProcessGroup:
    """The world group (DistributedDataParallel's), or the error that it is not there."""
    return _group(None, "graphjit.distributed")


def get_backend(group=None) -> str:  # noqa: A002
    _group(group, "get_backend")
    return Backend.MPI


def get_rank(group=None) -> int:  # noqa: A002
    return _group(group, "get_rank").rank


def get_world_size(group=None) -> int:  # noqa: A002
    return _group(group, "get_world_size").size


# ---- collectives --------------------------------------------------------------------------

def _op_name(op, who, allowed=("sum", "avg", "max", "min", "prod")) -> str:
    name = _OP_NAMES.get(str(op).lower()) if isinstance(op, str) else None
    if name not in allowed:
        raise DistributedError(f"unsupported reduction {op!r}; use one of ReduceOp."
                               f"{', ReduceOp.'.join(n.upper() for n in allowed)}", op=who)
    return name


def _check_tensor(t, who):
    from ..tensor import Tensor
    if not isinstance(t, Tensor):
        raise TypeError(f"{who}: expected a graphjit Tensor, got {type(t).__name__}")
    if t.dtype.name not in _ops.DATATYPES:
        raise DTypeError(f"collectives take float32, float64 or int64 tensors, got "
                         f"{t.dtype.name}{list(t.shape)}", op=who)


def _traced(who, async_op):
    if _tracing.active() is None:
        return False
    if async_op:
        raise TraceError(f"{who}(async_op=True) inside a compiled function: a compiled "
                         "collective completes where it stands in the program; drop async_op",
                         op=who)
    return True


def _eager_inplace(pg, t, who, start, finish=None, async_op=False, keep=None):
    """Run the collective ``start(buffer) -> request`` on a C-contiguous host buffer of
    ``t``'s data, then ``finish(buffer)`` and write the buffer back into ``t`` (a copy for
    a CUDA tensor or a strided view) once it completed."""
    data = t._data
    host = devices.to_host(data)
    direct = type(data) is np.ndarray and host.flags.c_contiguous and host.flags.writeable
    buf = host if direct else np.ascontiguousarray(host).copy()

    def done():
        if finish is not None:
            finish(buf)
        if not direct:
            devices.copyto(data, buf)
        t._version.bump()

    work = Work(pg, start(buf), f"{who} of {t.dtype.name}{list(t.shape)}", done)
    work.keep = (buf, keep)
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):  # noqa: A002
    """Reduce ``tensor`` over every rank, in place (``torch.distributed.all_reduce``):
    ``ReduceOp.SUM`` (default), ``AVG`` (the sum divided by the world size, floating point
    only), ``MAX``, ``MIN``, ``PRODUCT``. Inside a compiled function it is an op of the
    program ([Collective ops])."""
    pg = _group(group, "all_reduce")
    _check_tensor(tensor, "all_reduce")
    name = _op_name(op, "all_reduce")
    if name == "avg" and not tensor.dtype.is_floating_point:
        raise DTypeError(f"ReduceOp.AVG needs a floating point tensor, got "
                         f"{tensor.dtype.name}{list(tensor.shape)}", op="all_reduce")
    if _traced("all_reduce", async_op):
        from ..autograd_tape import no_grad
        with no_grad():
            tensor.copy_(reduced(tensor, name, pg))
        return None
    finish = (lambda buf: np.divide(buf, pg.size, out=buf)) if name == "avg" else None
    return _eager_inplace(pg, tensor, "all_reduce",
                          lambda buf: pg.all_reduce_start(buf, "sum" if name == "avg" else name),
                          finish, async_op)


def reduced(x, op: str, pg: ProcessGroup):
    """``x`` reduced over the ranks of ``pg`` as a new tensor, through the ``all_reduce``
    op (traced inside a compiled function; differentiable): ``op`` "sum", "avg" (the sum
    divided by the world size), "max", "min" or "prod"."""
    from ..ops import api
    out = _ops.all_reduce(x, pg.handles, reduce_op="sum" if op == "avg" else op)
    return api.div(out, pg.size) if op == "avg" else out


def broadcast(tensor, src: int, group=None, async_op=False):  # noqa: A002
    """Rank ``src``'s ``tensor`` into ``tensor`` on every rank (``torch.distributed.broadcast``)."""
    pg = _group(group, "broadcast")
    _check_tensor(tensor, "broadcast")
    if not 0 <= src < pg.size:
        raise DistributedError(f"src={src} is not a rank of a group of {pg.size}", op="broadcast")
    if _traced("broadcast", async_op):
        from ..autograd_tape import no_grad
        with no_grad():
            tensor.copy_(_ops.broadcast(tensor, pg.handles, src=src))
        return None
    return _eager_inplace(pg, tensor, "broadcast", lambda buf: pg.comm.Ibcast(buf, root=src),
                          None, async_op)


def _eager_only(who):
    if _tracing.active() is not None:
        raise TraceError(f"graphjit.distributed.{who} inside a compiled function is not "
                         "supported: only all_reduce and broadcast are ops of a compiled "
                         "program; call it outside the compiled function", op=who)


def all_gather(tensor_list, tensor, group=None, async_op=False):  # noqa: A002
    """Every rank's ``tensor`` into ``tensor_list[rank]`` on every rank
    (``torch.distributed.all_gather``; each entry of ``tensor_list`` has ``tensor``'s shape
    and dtype)."""
    pg = _group(group, "all_gather")
    _eager_only("all_gather")
    _check_tensor(tensor, "all_gather")
    _check_list(tensor_list, tensor, pg, "all_gather", "tensor_list")
    gathered = np.empty((pg.size,) + tuple(tensor.shape), tensor.dtype.np)
    send = np.ascontiguousarray(devices.to_host(tensor._data))
    request = pg.all_gather_start(send, gathered)
    return _scatter_back(pg, request, gathered, tensor_list, "all_gather", async_op, send)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):  # noqa: A002
    """Reduce ``input_list[r]`` over the ranks into ``output`` on rank ``r``
    (``torch.distributed.reduce_scatter``)."""
    pg = _group(group, "reduce_scatter")
    _eager_only("reduce_scatter")
    _check_tensor(output, "reduce_scatter")
    name = _op_name(op, "reduce_scatter")
    if name == "avg" and not output.dtype.is_floating_point:
        raise DTypeError("ReduceOp.AVG needs a floating point tensor", op="reduce_scatter")
    _check_list(input_list, output, pg, "reduce_scatter", "input_list")
    send = np.concatenate([devices.to_host(t._data).reshape(-1) for t in input_list])

    def finish(buf):
        if name == "avg":
            np.divide(buf, pg.size, out=buf)

    return _eager_inplace(pg, output, "reduce_scatter",
                          lambda buf: pg.reduce_scatter_start(
                              send, buf, "sum" if name == "avg" else name),
                          finish, async_op, keep=send)


def barrier(group=None, async_op=False):  # noqa: A002
    """Wait until every rank has reached this call (``torch.distributed.barrier``)."""
    pg = _group(group, "barrier")
    _eager_only("barrier")
    work = Work(pg, pg.barrier_start(), "barrier")
    if async_op:
        return work
    work.wait()
    return None


def _check_list(tensors, like, pg, who, what):
    if len(tensors) != pg.size:
        raise ShapeError(f"{what} has {len(tensors)} tensors for a group of {pg.size} ranks",
                         op=who)
    for t in tensors:
        _check_tensor(t, who)
        if tuple(t.shape) != tuple(like.shape) or t.dtype is not like.dtype:
            raise ShapeError(f"every tensor of {what} must be {like.dtype.name}"
                             f"{list(like.shape)}, got {t.dtype.name}{list(t.shape)}", op=who)


def _scatter_back(pg, request, gathered, tensors, who, async_op, send):
    def done():
        for t, part in zip(tensors, gathered):
            devices.copyto(t._data, part)
            t._version.bump()

    work = Work(pg, request, f"{who} of {gathered.dtype}{list(gathered.shape[1:])}", done)
    work.keep = (send, gathered)
    if async_op:
        return work
    work.wait()
    return None


from . import nn  # noqa: E402,F401  (graphjit.distributed.nn.functional: differentiable collectives)
