"""``ProcessGroup``: a communicator and the eager collectives on NumPy arrays.

# NOTE: [Collective timeouts]
MPI's blocking collectives wait forever for a rank that never comes (it raised, hangs, or
runs other code). Every collective here is started nonblocking and its request polled
with ``MPI_Test`` until it completes or the group's timeout (``init_process_group(
timeout=...)``, 30 minutes by default as in PyTorch) has passed; then it raises
``DistributedError`` naming the collective, the rank and the timeout. Polling yields the
processor (``sched_yield``) between tests, so ranks sharing cores with each other do not
starve the rank they wait for. The compiled kernels poll the same way, with MPI_Wtime as
the clock (backend/cpu/collective.py). A request that timed out is left pending: MPI
cannot cancel a collective, so the process must end; the abort path below does that.

# NOTE: [Abort on error]
A rank that raises leaves the others blocked in their next collective. So
``init_process_group`` installs a ``sys.excepthook`` that prints the traceback as usual,
then names the rank and calls ``MPI_Abort`` on the world communicator, which makes the
launcher (mpiexec) end every rank of the job with a non-zero status: one failing rank
takes the job down within moments instead of hanging it (mpi4py's ``python -m mpi4py``
does the same). ``destroy_process_group`` puts the previous hook back. The hook writes a
one-line summary with the error's message first, and waits a moment after the traceback
before aborting: the launcher forwards each rank's output through pipes and drops what it
has not forwarded yet when the job is aborted (seen on a loaded machine: the traceback cut
off before its last line, the one that says what went wrong).
"""
from __future__ import annotations

import datetime
import itertools
import os
import sys
import time

import numpy as np

from ..errors import GraphjitError
from ..ops import distributed as ops

# Tests of a request before the wait starts yielding the processor ([Collective timeouts]).
SPIN_TESTS = 64
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))  # (Python has none on macOS)

_ids = itertools.count(1)


class DistributedError(GraphjitError, RuntimeError):
    """A collective failed or timed out, or graphjit.distributed was used wrongly."""


def as_seconds(timeout) -> float:
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


class Work:
    """What a collective with ``async_op=True`` returns (``torch.distributed.Work``):
    ``wait()`` blocks until it has completed (and copies results back where needed),
    ``is_completed()`` tests without blocking."""

    def __init__(self, group, request, what, finish=None):
        self._group, self._request, self._what, self._finish = group, request, what, finish
        self._done = False
        self.keep = None  # buffers MPI reads or writes until the request completes

    def is_completed(self) -> bool:
        if not self._done and self._request.Test():
            self._complete()
        return self._done

    def wait(self, timeout=None) -> bool:
        if not self._done:
            self._group.wait(self._request, self._what, timeout)
            self._complete()
        return True

    def _complete(self):
        self._done = True
        if self._finish is not None:
            self._finish()


class ProcessGroup:
    """The ranks of an MPI communicator (``comm``, an mpi4py ``Intracomm``)."""

    def __init__(self, comm, MPI, timeout):
        self.comm = comm
        self.MPI = MPI
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = as_seconds(timeout)
        self.id = next(_ids)
        self._handles = None
        ops.GROUPS[self.id] = self

    def destroy(self) -> None:
        ops.GROUPS.pop(self.id, None)

    @property
    def handles(self):
        """The handle table as a tensor ([Collective ops]): the second operand of the
        collective ops; made on first use (it looks up the MPI library's C functions)."""
        if self._handles is None:
            from ..tensor import Tensor
            from .native import handle_table
            self._handles = Tensor._wrap(handle_table(self.id, self.comm, self.MPI,
                                                      self.timeout))
        return self._handles

    @property
    def handle_bits(self) -> int:
        """The C width of this MPI library's handles (backend/cpu/collective.py)."""
        from .native import handle_bits
        return handle_bits(self.MPI)

    @property
    def request_words(self) -> int:
        return -(-self.MPI._sizeof(self.MPI.Request) // 8)

    @property
    def status_words(self) -> int:
        return -(-self.MPI._sizeof(self.MPI.Status) // 8)

    # ---- waiting ------------------------------------------------------------------------

    def wait(self, request, what: str, timeout=None) -> None:
        """Poll ``request`` until it completes; ``DistributedError`` after the timeout
        ([Collective timeouts])."""
        test = request.Test
        for _ in range(SPIN_TESTS):
            if test():
                return
        limit = self.timeout if timeout is None else as_seconds(timeout)
        deadline = time.monotonic() + limit
        while not test():
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"{what} did not complete on rank {self.rank} of {self.size} within the "
                    f"timeout of {limit:g} s: another rank has not joined it (it failed, hangs, "
                    "or runs code that calls other collectives; every rank must call the same "
                    "collectives in the same order). Raise the limit with "
                    "init_process_group(timeout=...)", op="graphjit.distributed")
            _yield()

    # ---- eager collectives on NumPy arrays (the ops' impl, and graphjit.distributed) -----

    def _mpi_op(self, op: str):
        MPI = self.MPI
        return {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}[op]

    def all_reduce_start(self, buf: np.ndarray, op: str):
        """Start reducing the C-contiguous ``buf`` in place over every rank; the request."""
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._mpi_op(op))

    def all_reduce_array(self, x: np.ndarray, op: str) -> np.ndarray:
        out = np.array(x, order="C", copy=True)
        self.wait(self.all_reduce_start(out, op), f"all_reduce({op}) of {_describe(x)}")
        return out

    def broadcast_array(self, x: np.ndarray, src: int) -> np.ndarray:
        out = np.array(x, order="C", copy=True)
        self.wait(self.comm.Ibcast(out, root=src), f"broadcast from rank {src} of "
                  f"{_describe(x)}")
        return out

    def all_gather_start(self, x: np.ndarray, out: np.ndarray):
        """Start gathering every rank's ``x`` into ``out`` (``[size, *x.shape]``)."""
        return self.comm.Iallgather(x, out)

    def reduce_scatter_start(self, x: np.ndarray, out: np.ndarray, op: str):
        """Start reducing ``x`` (``[size * n]``) over ranks; this rank's ``n`` into ``out``."""
        return self.comm.Ireduce_scatter_block(x, out, op=self._mpi_op(op))

    def barrier_start(self):
        return self.comm.Ibarrier()


def _describe(x) -> str:
    return f"{x.dtype}{list(x.shape)}"


# ---- the abort path ([Abort on error]) --------------------------------------------------

_previous_hook = None
ABORT_GRACE_SECONDS = 0.5


def install_abort_hook(group: ProcessGroup) -> None:
    global _previous_hook
    if _previous_hook is not None:
        return
    _previous_hook = previous = sys.excepthook
    world = group.MPI.COMM_WORLD

    def abort_on_error(exc_type, exc, tb):
        try:
            sys.stderr.write(f"graphjit.distributed: rank {group.rank} of {group.size} raised "
                             f"{exc_type.__name__}: {exc}\n")
            sys.stderr.flush()
            previous(exc_type, exc, tb)
        finally:
            sys.stderr.write(f"graphjit.distributed: rank {group.rank} of {group.size} raised "
                             f"{exc_type.__name__}; aborting the job (MPI_Abort) so that the "
                             "other ranks do not wait for it\n")
            sys.stderr.flush()
            time.sleep(ABORT_GRACE_SECONDS)  # (see [Abort on error]: output still in pipes)
            world.Abort(1)

    sys.excepthook = abort_on_error


def remove_abort_hook() -> None:
    global _previous_hook
    if _previous_hook is not None:
        sys.excepthook = _previous_hook
        _previous_hook = None
