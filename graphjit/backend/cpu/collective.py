"""``all_reduce`` and ``broadcast``: kernels that call the MPI C library themselves.

# NOTE: [Compiled collectives]
The kernel of ``%y = all_reduce(%x, %handles, reduce_op='sum')`` starts ``MPI_Iallreduce(x, y,
n, datatype, op, comm, &request)`` and polls ``MPI_Test`` until the request completes,
raising after the group's timeout ([Collective timeouts] in graphjit/distributed/group.py):
one call into MPI per node, from native code, in the middle of the program, between the
backward kernels that made ``%x`` and the optimizer kernels that read ``%y``. ``x`` and
``y`` are distinct buffers, so nothing is copied. ``broadcast`` copies ``x`` into ``y``
and runs ``MPI_Ibcast`` on ``y``.

The MPI functions are called through addresses read from the handle table (``%handles``,
a runtime input: [Collective ops] in graphjit/ops/distributed.py) with ``c_call``, an
intrinsic that calls a C function at an address with the given arguments (arrays as
their data pointers). A ctypes function object used from nopython code would work too,
but Numba bakes its address into the machine code and will not cache the function; read
from the table, the kernel's text and code are the same in every process and on every
rank, and cached like any kernel. The handles' C width (``int`` in MPICH, a pointer in
Open MPI) is written into the text, as ``np.int32(...)`` or not.

A timed-out or failed collective raises from the kernel; the exception leaves the driver
like any kernel's ([Kernel calls by address] in native.py), and the program has written
nothing back (graphjit/jit/compile.py), so the abort path ends the job
([Abort on error]). CUDA programs have no collective kernels: on a GPU, the collectives
run eagerly on host copies.
"""
from __future__ import annotations

import functools
import hashlib

from llvmlite import ir
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic

from ...errors import GraphjitError
from ...ops import distributed as table
from ...shapes import numel
from .kernel import emits, kernel_import

# MPI_Test calls before the wait starts yielding the processor and reading the clock.
SPIN_TESTS = 64
_INT_MAX = 2 ** 31 - 1


def _c_type(context, builder, ty, value):
    if isinstance(ty, types.Array):
        data = context.make_array(ty)(context, builder, value).data
        return builder.bitcast(data, ir.IntType(8).as_pointer())
    if isinstance(ty, (types.Integer, types.Float)):
        return value
    raise TypingError(f"c_call: cannot pass {ty} to C")


def _c_caller(restype):
    def c_call(typingctx, address, args):
        if not isinstance(address, types.Integer):
            raise TypingError(f"c_call: the address must be an integer, got {address}")
        if not isinstance(args, types.BaseTuple):
            raise TypingError(f"c_call: the arguments must be a tuple, got {args}")
        for t in args.types:
            if not isinstance(t, (types.Array, types.Integer, types.Float)):
                raise TypingError(f"c_call: cannot pass {t} to C")

        def codegen(context, builder, sig, llargs):
            tys = sig.args[1].types
            values = [_c_type(context, builder, t, builder.extract_value(llargs[1], i))
                      for i, t in enumerate(tys)]
            fnty = ir.FunctionType(context.get_value_type(restype), [v.type for v in values])
            fn = builder.inttoptr(llargs[0], fnty.as_pointer())
            return builder.call(fn, values)

        return restype(address, args), codegen
    return c_call


c_call_int = intrinsic(_c_caller(types.int32))
c_call_int.__doc__ = "``c_call_int(address, (args...))``: call ``int f(args...)`` at ``address``."
c_call_double = intrinsic(_c_caller(types.float64))
c_call_double.__doc__ = "``c_call_double(address, ())``: call ``double f(void)`` at ``address``."


@njit(cache=True, no_cpython_wrapper=True)
def mpi_wait(handles, request, flag, status):
    """Poll ``MPI_Test`` on ``request`` until it completes: 0; 1 when MPI_Test fails; 2 when
    the group's timeout has passed ([Collective timeouts])."""
    tests = 0
    deadline = 0.0
    while True:
        if c_call_int(handles[table.TEST], (request, flag, status)) != 0:
            return 1
        if flag[0] != 0:
            return 0
        tests += 1
        if tests == SPIN_TESTS:
            deadline = (c_call_double(handles[table.WTIME], ())
                        + handles[table.TIMEOUT_US] * 1e-6)
        elif tests > SPIN_TESTS:
            if c_call_double(handles[table.WTIME], ()) > deadline:
                return 2
            c_call_int(handles[table.YIELD], ())


for _name in ("c_call_int", "mpi_wait"):
    kernel_import(_name, f"from graphjit.backend.cpu.collective import {_name}")


@functools.cache
def _helpers_version() -> str:
    """A hash of this file: Numba compiles ``mpi_wait`` and the intrinsics into each
    kernel's cache entry, so the kernel text names the version it was built with."""
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _mpi_layout():
    """(handle width in bits, words of an MPI_Request, words of an MPI_Status) of the MPI
    library the process groups use."""
    if not table.GROUPS:
        raise GraphjitError("compiling a collective needs an initialised process group "
                            "(graphjit.distributed.init_process_group)", op="all_reduce")
    group = next(iter(table.GROUPS.values()))
    return group.handle_bits, group.request_words, group.status_words


def _start(node, k, call) -> None:
    """The lines that start a request with ``call(handle, count, request)`` (the C call's
    source; ``handle(i)`` is handle table entry ``i`` at the handles' C width) and wait for
    it, raising on failure or timeout."""
    bits, request_words, status_words = _mpi_layout()
    name = node.op.name
    n = numel(node.out.shape)
    if n > _INT_MAX:
        raise GraphjitError(f"{node.out.type} has more than 2**31 - 1 elements, the most one "
                            "MPI call takes", op=name)

    def handle(i: int) -> str:
        entry = f"{k.ins[1]}[{i}]"
        return f"np.int32({entry})" if bits == 32 else entry

    request, flag, status, err = (k.fresh(h) for h in ("request", "flag", "status", "err"))
    k.line(f"# collective.py {_helpers_version()}; MPI handles of {bits} bits")
    k.line(f"{request} = np.zeros({request_words}, np.int64)")
    k.line(f"{flag} = np.zeros(1, np.int32)")
    k.line(f"{status} = np.zeros({status_words}, np.int64)")
    k.line(f"{err} = {call(handle, f'np.int32({n})', request)}")
    with k.block(f"if {err} != 0:"):
        k.line(f'raise RuntimeError("{name}: MPI could not start the {name} of '
               f'{node.out.type}")')
    k.line(f"{err} = mpi_wait({k.ins[1]}, {request}, {flag}, {status})")
    with k.block(f"if {err} == 1:"):
        k.line(f'raise RuntimeError("{name}: MPI_Test failed on the {name} of {node.out.type}")')
    with k.block(f"if {err} == 2:"):
        k.line(f'raise RuntimeError("{name} of {node.out.type} timed out: another rank has not '
               "joined it (it failed, hangs, or calls other collectives); the limit is "
               'init_process_group(timeout=...)")')


@emits("all_reduce")
def emit_all_reduce(node, k) -> None:
    datatype = table.DATATYPES[node.out.dtype.name]
    op = table.REDUCTIONS[node.attrs["reduce_op"]]
    _start(node, k, lambda handle, count, request: (
        f"c_call_int({k.ins[1]}[{table.IALLREDUCE}], ({k.ins[0]}, {k.out}, {count}, "
        f"{handle(datatype)}, {handle(op)}, {handle(table.COMM)}, {request}))"))


@emits("broadcast")
def emit_broadcast(node, k) -> None:
    i = k.fresh("i")
    with k.block(f"for {i} in range({numel(node.out.shape)}):"):
        k.line(f"{k.out}[{i}] = {k.ins[0]}[{i}]")
    datatype = table.DATATYPES[node.out.dtype.name]
    src = int(node.attrs["src"])
    _start(node, k, lambda handle, count, request: (
        f"c_call_int({k.ins[1]}[{table.IBCAST}], ({k.out}, {count}, {handle(datatype)}, "
        f"np.int32({src}), {handle(table.COMM)}, {request}))"))
