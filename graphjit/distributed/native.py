"""The MPI C library as compiled kernels see it: the handle table of a process group.

A compiled collective (backend/cpu/collective.py) calls ``MPI_Iallreduce`` / ``MPI_Ibcast``
and polls ``MPI_Test`` from the generated kernel, through C function addresses it reads
from the group's handle table at run time ([Collective ops] in graphjit/ops/distributed.py).
This module finds the MPI library mpi4py loaded and fills that table. The library is
the one already in this process (never a second copy): the shared object whose name
starts with ``libmpi`` among those mapped, checked by asking it for this process's rank
in the communicator mpi4py gave us.

The C types of MPI handles differ between libraries (MPICH: ``int``; Open MPI and the MPI
4.2 ABI: pointers), so ``handle_bits`` tells code generation which width to pass; the
values themselves stay in the table.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np

from ..errors import GraphjitError
from ..ops import distributed as ops


def _mapped_libraries() -> list:
    """Paths of the shared objects mapped into this process whose name starts with libmpi
    (Linux: /proc/self/maps), in the order found."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:  # address perms offset device inode [path]
                fields = line.rstrip("\n").split(None, 5)
                path = fields[5] if len(fields) == 6 else ""
                name = os.path.basename(path)
                if name.startswith("libmpi") and ".so" in name and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


def load_library(comm, MPI):
    """The ``ctypes.CDLL`` of the MPI library mpi4py uses for ``comm``."""
    candidates = _mapped_libraries()
    # Elsewhere (macOS) a library mpi4py loaded RTLD_GLOBAL is found by name, or the
    # process itself exports the symbols.
    candidates += [p for p in (ctypes.util.find_library("mpi"), None) if p not in candidates]
    handle_type = _c_handle(MPI._sizeof(MPI.Comm))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            comm_rank = lib.MPI_Comm_rank
            lib.MPI_Iallreduce  # noqa: B018  (the symbols the kernels need)
        except (OSError, AttributeError):
            continue
        comm_rank.argtypes = [handle_type, ctypes.POINTER(ctypes.c_int)]
        comm_rank.restype = ctypes.c_int
        rank = ctypes.c_int(-1)
        if comm_rank(MPI._handleof(comm), ctypes.byref(rank)) == 0 and rank.value == comm.rank:
            return lib
    raise GraphjitError(
        "graphjit.distributed: could not find the MPI library mpi4py loaded (looked at "
        f"{[c for c in candidates if c] or 'nothing'}), so compiled programs cannot call MPI. "
        "Eager collectives still work; compiled functions with collectives need it. With "
        "mpi4py's own library selection (MPI4PY_LIBMPI), make sure it is a libmpi* shared "
        "object", op="init_process_group")


def _c_handle(size: int):
    return {4: ctypes.c_int32, 8: ctypes.c_int64}[size]


def _address(lib, name: str) -> int:
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def handle_bits(MPI) -> int:
    """The width of an MPI handle (communicator, datatype, op) in the C calls: 32 or 64."""
    sizes = {MPI._sizeof(t) for t in (MPI.Comm, MPI.Datatype, MPI.Op)}
    if len(sizes) != 1 or sizes.pop() not in (4, 8):
        raise GraphjitError("graphjit.distributed: this MPI library's handles are neither all "
                            "32-bit nor all 64-bit integers or pointers; compiled collectives "
                            "do not support it", op="init_process_group")
    return 8 * MPI._sizeof(MPI.Comm)


def handle_table(group_id: int, comm, MPI, timeout_s: float) -> np.ndarray:
    """The group's handle table ([Collective ops]): int64[TABLE_SIZE]."""
    lib = load_library(comm, MPI)
    libc = ctypes.CDLL(None)
    table = np.zeros(ops.TABLE_SIZE, np.int64)
    table[ops.GROUP] = group_id
    table[ops.COMM] = MPI._handleof(comm)
    table[ops.IALLREDUCE] = _address(lib, "MPI_Iallreduce")
    table[ops.IBCAST] = _address(lib, "MPI_Ibcast")
    table[ops.TEST] = _address(lib, "MPI_Test")
    table[ops.WTIME] = _address(lib, "MPI_Wtime")
    table[ops.YIELD] = _address(libc, "sched_yield")
    table[ops.TIMEOUT_US] = int(timeout_s * 1e6)
    for name, datatype in (("float32", MPI.FLOAT), ("float64", MPI.DOUBLE),
                           ("int64", MPI.INT64_T)):
        table[ops.DATATYPES[name]] = MPI._handleof(datatype)
    for name, op in (("sum", MPI.SUM), ("max", MPI.MAX), ("min", MPI.MIN), ("prod", MPI.PROD)):
        table[ops.REDUCTIONS[name]] = MPI._handleof(op)
    return table
