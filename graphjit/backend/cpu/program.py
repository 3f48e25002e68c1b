"""``CompiledProgram``: the Python side of a compiled CPU program (inputs in, results out).

``codegen.compile_graph`` builds one from the generated driver; this module holds what
runs on every call beyond what both targets' programs do (core/program.py): the result
pool, the workspace and the choice of threads.
"""
from __future__ import annotations

import itertools
import operator
import sys

import numpy as np

from ..core.program import Program
from .native import object_addresses
from .threads import ThreadChoice

# Result arrays a program keeps for reuse, per result (see CompiledProgram).
POOLED_RESULTS = 2


class CompiledProgram(Program):
    """A compiled graph: ``program(inputs) -> (outputs, updates)``, like ``ir.run_graph``
    (see core/program.py).

    Results are fresh arrays (or views of each other where the graph reshapes one value into
    another); nothing is written back, except by a program compiled with ``inplace=True``:
    its updates may be computed into the target input's array (see [In-place updates]), and
    the update returned is then that array.

    The program owns the buffers its driver computes into ([Buffer plan] in
    graphjit/ir/buffers.py): the workspace of its temporaries, allocated on the first call and
    reused by every later one, and a pool of result arrays: a result array comes back to
    the pool, and is written again by the next call, only once nothing outside the
    program refers to it (its reference count says so, views included), so a caller never
    sees an array it holds change. Fresh pages cost more than the kernels (two 16 MiB
    results allocated per call made a 3 ms loop take 33 ms on the development VM). Calls
    on one program are serialised by a lock, since they share the workspace. ``threads``
    chooses how many threads each call's parallel loops and GEMMs run on, from the calls'
    own times ([Threads under load] in threads.py; None where there is nothing to choose).
    """

    def __init__(self, graph, name, generated, path, driver, kernel_table, compile_seconds):
        super().__init__(graph, name, generated, path, compile_seconds)
        # What runs the program: Numba's dispatcher of the driver, or after a first run its
        # compiled wrapper loaded from a bundle ([Bundled drivers] in kernel_bundle.py);
        # ``dispatcher`` is Numba's either way.
        self._driver = self._dispatcher = driver
        self._prepare = None
        # The driver's second argument: its kernels' addresses ([Kernel calls by address]).
        self._kernel_table = kernel_table
        # The consts' flat data with their driver-argument positions (see run_trusted).
        self._const_at = [(j, _flat(np.asarray(graph.constants[v], dtype=v.dtype.np)))
                          for j, v in enumerate(generated.params) if v.role == "const"]
        # The results among the driver's buffers ([Driver arguments] in native.py): a
        # function picking them out of the list of buffers, then the positions among the
        # results of those that are an input returned as is, and so copied.
        self._pick = _picker([j for j, _ in generated.returns])
        self._copied = {k for k, (_, copy) in enumerate(generated.returns) if copy}
        self._pool = [None] * len(self._result_types)
        self._last_buffers = None  # the list of the previous call's buffers (see _buffers)
        self._n_results = len(self._result_types)
        self._free = [3] * self._n_results
        # How many threads each call runs its loops and GEMMs on ([Threads under load] in
        # threads.py); None: nothing to choose, the libraries' settings hold.
        self.threads = ThreadChoice.for_program(getattr(generated, "parallel", False),
                                                getattr(generated, "threaded_blas", False))

    @property
    def dispatcher(self):
        """Numba's dispatcher of the driver (its source, its cache statistics), whatever
        runs the program; for a program loaded from its bundles alone, its modules are
        imported now ([Programs from their bundles] in prepared.py)."""
        if self._dispatcher is None:
            self._dispatcher = self._prepare().driver
        return self._dispatcher

    @dispatcher.setter
    def dispatcher(self, dispatcher):
        self._dispatcher = dispatcher

    def import_later(self, prepare) -> None:
        """The program was loaded without its modules: ``prepare()`` imports them (a
        ``PreparedProgram``), when ``dispatcher`` is asked for."""
        self._dispatcher, self._prepare = None, prepare

    def results_of_their_own(self, results, args, positions) -> set:
        """The positions among ``positions`` of the results of the call that ran on
        driver arguments ``args`` whose arrays share memory with nothing else: another
        result, an argument, a constant ([State a call creates] in graphjit/jit/runtime.py).
        Results are fresh arrays (or views of each other, or an input's array where an
        update was computed in place), never handed out again while referenced, so such a
        result may be kept by the caller as it is."""
        return arrays_of_their_own(results, list(args) + [c for _, c in self._const_at],
                                   positions)

    def _buffers(self) -> list:
        last = self._last_buffers
        if last is not None:
            # The previous call's buffers again when no result array is referenced outside:
            # 3 references each, the pool's list, `last` and getrefcount's argument.
            if list(map(sys.getrefcount, itertools.islice(last, self._n_results))) == self._free:
                return last
            self._last_buffers = last = None  # let go before the pool counts references
        if self._workspace is None:
            self._workspace = [np.empty(n, dt) for n, dt in self._slot_types]
        buffers = []
        for j, (n, dt) in enumerate(self._result_types):
            pool = self._pool[j]
            if pool is None:
                pool = self._pool[j] = []
            found = None
            for k in range(len(pool)):
                # 2 references: the pool's list and getrefcount's argument; any more are
                # the caller's (the array, or a view of it, is still alive).
                if sys.getrefcount(pool[k]) == 2:
                    found = pool[k]
                    break
            if found is None:
                # Two arrays per result cover a training loop, where the caller lets go of
                # the previous step's array (``.grad`` replaced) only after this call.
                found = np.empty(n, dt)
                pool.insert(0, found)
                del pool[POOLED_RESULTS:]
            buffers.append(found)
        buffers += self._workspace
        self._last_buffers = buffers
        return buffers

    def flat_input(self, i: int, arr):
        """Input ``i`` (counted among the non-const inputs) checked against its graph type:
        ``(flat, copied)``, ``flat`` a writeable 1-D C-contiguous array of its elements (a
        view of ``arr`` where possible, else a copy: ``copied``). Raises DTypeError /
        ShapeError naming the input, as a call does."""
        dtype, shape = self._arg_types[i]
        if type(arr) is not np.ndarray:
            arr = np.asarray(arr)
        if arr.dtype != dtype or arr.shape != shape:
            raise self._input_error(i, arr)
        flags = arr.flags
        if flags.c_contiguous and flags.writeable:
            return arr.reshape(-1), False
        return _flat(arr), True

    def __call__(self, inputs):
        inputs = list(inputs)
        self._check_count(inputs)
        args = []
        for i, (arr, (dtype, shape)) in enumerate(zip(inputs, self._arg_types)):
            # What flat_input does, inline (this runs for every input of every call).
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            if arr.dtype != dtype or arr.shape != shape:
                raise self._input_error(i, arr)
            flags = arr.flags
            args.append(arr.reshape(-1) if flags.c_contiguous and flags.writeable else _flat(arr))
        return self._finish(args, self.run_trusted(args))

    def run_trusted(self, args):
        """Run the driver on ``args`` as they are: the flat results, in the driver's order
        (``output_shapes`` says how many are outputs; ``update_plan`` where each update is).

        NOTE: [Trusted program calls] Only for callers that built ``args`` themselves, as
        the jit runtime does (graphjit/jit/compile.py, [Steady-state calls]): one array per
        non-const input, each a writeable 1-D C-contiguous array of the input's dtype and
        number of elements, e.g. from ``flat_input``. Nothing is checked here: the driver
        reads each array's data pointer and nothing else ([Driver arguments] in native.py),
        so an array of another dtype would be read as if it were the expected one, a
        strided one as if it were contiguous, and a short one read and written past its
        end. ``program(inputs)`` checks every input and is what everything else calls.
        """
        buffers = list(args)
        for j, const in self._const_at:
            buffers.insert(j, const)
        with self._lock:
            buffers += self._buffers()
            at = object_addresses(buffers)  # (``buffers`` keeps the arrays alive for the call)
            if self.threads is None:
                self._driver(at, self._kernel_table)
            else:
                self.threads.run(self._driver, at, self._kernel_table)
            results = self._pick(buffers)
            if self._copied:
                results = tuple([r.copy() if k in self._copied else r
                                 for k, r in enumerate(results)])
            return results


def _picker(positions):
    """A function of a list giving the tuple of its items at ``positions``."""
    if len(positions) == 1:
        (j,) = positions
        return lambda items: (items[j],)
    if not positions:
        return lambda items: ()
    return operator.itemgetter(*positions)


def _flat(arr: np.ndarray) -> np.ndarray:
    """A writeable 1-D C-contiguous view (a copy only when needed) of ``arr``.

    The driver is compiled for writeable arrays; a read-only one would make Numba compile
    a second version. Kernels never write their inputs.
    """
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr.reshape(-1)


def arrays_of_their_own(arrays, others, positions) -> set:
    """The positions among ``positions`` of the arrays of ``arrays`` that share memory
    with no other array of ``arrays`` or ``others``. Every one is 1-D and C-contiguous (a
    driver's results and arguments), so its bytes are one span; empty arrays are left out."""
    spans = []  # (start, end, position in ``arrays`` or -1 for the others)
    for mine, group in ((True, arrays), (False, others)):
        for k, a in enumerate(group):
            if type(a) is np.ndarray and a.nbytes:
                start = a.__array_interface__["data"][0]
                spans.append((start, start + a.nbytes, k if mine else -1))
    spans.sort()
    shared, open_spans = set(), []  # open: earlier spans that reach past this one's start
    for start, stop, k in spans:
        open_spans = [(e, j) for e, j in open_spans if e > start]
        if open_spans:
            shared.add(k)
            shared.update(j for _, j in open_spans)
        open_spans.append((stop, k))
    return {i for i in positions
            if i not in shared and type(arrays[i]) is np.ndarray and arrays[i].nbytes}
