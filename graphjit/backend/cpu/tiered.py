"""Tiered execution: a CPU program runs on NumPy at once while Numba compiles it.

# NOTE: [Tiered execution]
Numba takes 0.1-1.5 s per kernel, so a new program used to wait seconds (W5's training
step, tens of them) before its first call. ``compile_graph(graph, tier="tiered")`` instead
writes and imports the program's modules as usual, then:

- every kernel and the driver already compiled in this process or in the disk cache: it
  loads them and returns the native program (a warm start needs no first tier);
- otherwise it forks compile workers for what is missing ([Parallel kernel compilation]
  in workers.py: they fill Numba's disk cache and exit), starts a thread that only waits
  for them (``os.waitpid`` releases the GIL; nothing spins), and returns a
  ``TieredProgram``. Its calls run the optimised graph node by node with each op's NumPy
  implementation (``graphjit.ir.interpret.Interpreter``: the same fused graph, a fused
  body step by step, a gemm as ``np.matmul`` plus its epilogue) until the workers are done;
  the first call after that loads the kernels and the driver from the cache (a few
  milliseconds each, on the calling thread, so no Numba work ever runs beside the user's)
  and every later call is the native driver's (``run_trusted`` is then the native
  program's own bound method: no extra step per call).

The two tiers are one program to the caller: the same inputs (``flat_input``), results in
the same order and flat, and the same ``update_plan``, so an update the native program
computes in place is written into the same input array by the interpreter, after all of
its work (a failing call writes nothing, as natively); the runtime's write-back cannot
tell them apart. No result shares memory with an input (the native driver copies such
results too). The errors are the native program's: NumPy's ``IndexError`` for an index out
of range would say something else, so the interpreter checks index tensors first and raises
the kernel's own message (``_index_check``). The numbers agree within the documented
tolerance (float32 ~1e-5, float64 ~1e-10): NumPy sums pairwise where the kernels sum in
blocks, and ``exp``/``tanh``/``log`` differ in the last bit (backend/cpu/vmath.py).

``tier="interpret"`` never compiles (the first tier alone: for tests and debugging);
``tier="native"`` is the plain ``compile_graph``. A worker that fails costs time, never
correctness: loading compiles whatever is missing, here. If the native program cannot be
built at all, the program keeps running on the interpreter, warns once, and
``TieredProgram.wait()`` raises the error.

A program that runs once (tier "once": the first optimizer step, which creates the
optimizer's state) is loaded when an earlier process left all its code in the cache, and
otherwise interpreted: its native code would come after the one call it was for. But the next
process runs it again, so it is compiled then for that process (``_fill_later``): its
modules written and its kernels compiled by workers into the disk cache, once this process
has nothing else compiling (checked when a program switches to native code or loads from the
cache), with its workers at the lowest priority (``nice`` 19), so it never delays the
programs this process runs; nothing here loads it. When they are done, one more process at
that priority loads what they compiled and writes the program's bundles, so that the next
process loads it as it does every other ([Programs from their bundles] in prepared.py):
without them W8's restart after a tiered first run loaded its first step's 131 kernels
from Numba's cache one by one, 0.62 s for its first call against 0.30 s. W6's restart ran
its first Adam step, 10M parameters, interpreted in 0.7-1.0 s, and loads it in about
0.25 s. ``wait_background`` does not wait for these fills unless asked to.

At exit, workers still compiling are killed (their cache files are written atomically, see
[Generated modules on disk] in backend/source.py), so a short script does not leave them
behind.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import warnings

import numpy as np

from ..._gc import paused_gc
from ...errors import DTypeError, ShapeError
from ...ir.interpret import Interpreter
from ...ops.index import describe_key
from ..core.index import index_plan
from ..core.program import update_plan
from .program import CompiledProgram
from .workers import compile_workers, kill_workers, start_workers

TIERS = ("tiered", "native", "interpret", "once")
# Calls run by the interpreter in this process so far (benchmarks/suite.py's cold-start
# probe tells the tiers' calls apart with it).
interpreted_calls = 0


class TierStatus:
    """Which tier a program has run on: for ``explain()`` and the dump (``describe``).
    ``listeners``: callables run (with this status) when the native tier takes over."""

    def __init__(self, name, mode):
        self.name = name
        self.mode = mode                # "tiered", "native" or "interpret"
        self.interpreted_calls = 0      # calls run by the interpreter
        self.native_since = None        # the call the native program first ran (1-based)
        self.compile_seconds = None     # from the start of the compile to native code ready
        self.error = None               # why no native program could be built
        self.listeners = []

    @property
    def tier(self) -> str:
        """The tier the next call runs on: "native" or "interpreter"."""
        return "native" if self.native_since is not None or self.mode == "native" else "interpreter"

    def describe(self) -> str:
        if self.mode == "native":
            took = f", {self.compile_seconds:.2f} s" if self.compile_seconds is not None else ""
            return f"native (compiled before its first call{took})"
        n = self.interpreted_calls
        ran = f"NumPy interpreter for {n} call{'s' if n != 1 else ''}"
        if self.mode == "interpret":
            return f"{ran if n else 'NumPy interpreter'} only, no native code"
        if self.native_since is not None:
            if n == 0:
                return (f"native from its first call (every kernel was compiled or in the disk "
                        f"cache; loaded in {self.compile_seconds:.2f} s)")
            return (f"{ran} while Numba compiled it in the background "
                    f"({self.compile_seconds:.2f} s), native since call {self.native_since}")
        if self.error is not None:
            return f"{ran}; the native program failed to build: {self.error}"
        if n == 0:
            return "starts on the NumPy interpreter; native code compiling in the background"
        return f"{ran} so far; native code compiling in the background"


def compile_tiered(prepared, tier, start, fill=None, loaded=None):
    """``compile_graph(..., tier=tier)`` for tier "tiered", "interpret" or "once", given the
    program codegen.py prepared (``prepare_program``, written only for "tiered", and for
    "once" when an earlier process wrote it) from time ``start``:
    see [Tiered execution]. (codegen.py imports this module, so its prepared program is
    passed in, not asked for.) ``fill``: for tier "once", a function that writes and
    imports the program's modules (its prepared program), to compile it for the next
    process when it is not in the cache. ``loaded``: instead of ``prepared``, the native
    program, loaded from its bundles ([Programs from their bundles] in prepared.py)."""
    program = loaded
    with paused_gc():  # [No GC while compiling] in graphjit/_gc.py
        if loaded is not None:
            program.compile_seconds = time.perf_counter() - start
        elif tier in ("tiered", "once") and prepared.path is not None \
                and prepared.all_available():
            # A warm start: nothing to compile, so no first tier. (For a program that runs
            # once, loading its cached code beat interpreting it: W6's first Adam step
            # took 0.7-1.0 s on NumPy against 0.25 s loaded.)
            program = _load(prepared, start)
    # (A program run once that was not in the cache only ever runs on the interpreter.)
    status = TierStatus(program.name if loaded is not None else prepared.name,
                        "interpret" if tier == "once" and program is None
                        else "tiered" if tier == "once" else tier)
    if program is not None:
        program.tier = status
        status.native_since = 1
        status.compile_seconds = program.compile_seconds
        _start_fill()  # loaded: a moment with nothing of this program's to compile
        return program
    if tier == "once" and fill is not None:
        _fill_later(fill)
    job = _NativeCompile(prepared, start) if tier == "tiered" else None
    return TieredProgram(prepared, job, status)


class TieredProgram:
    """A CPU program whose calls run on the interpreter until its native program is ready
    (see [Tiered execution]): ``CompiledProgram``'s interface (``program(inputs)``,
    ``flat_input``, ``run_trusted``, ``update_plan``, ``output_shapes``), and ``tier``,
    where it stands. What belongs to the native code itself (its driver, kernels, threads,
    workspace) is the native program's: ``wait()`` returns it."""

    threads = None  # (the native program's choice, once it runs: [Threads under load])

    def __init__(self, prepared, job, status):
        generated = prepared.generated
        self.graph = graph = prepared.graph
        self.name = prepared.name
        self.source = generated.source
        self.generated = generated  # (kept by the lowering cache: graphjit/jit/lowering_cache.py)
        self.path = prepared.path  # the program module (None: never compiled)
        self._args = [v for v in generated.params if v.role != "const"]
        self._arg_types = [(v.dtype.np, tuple(v.shape)) for v in self._args]
        n_out = len(graph.outputs)
        self.output_shapes = [tuple(v.shape) for v in generated.results[:n_out]]
        self._update_shapes = [tuple(v.shape) for _, v in graph.updates]
        self._in_place = generated.in_place  # update position -> driver argument position
        self.update_plan = update_plan(generated, n_out, len(graph.updates))
        self.tier = status
        self._job = job
        self._native = None
        self._interpreter = Interpreter(graph, checks=_index_checks(graph))

    # ---- the switch -----------------------------------------------------------------------

    def run_trusted(self, args):
        job = self._job
        if job is not None and job.finished() and self._switch():
            return self._native.run_trusted(args)
        global interpreted_calls
        interpreted_calls += 1
        self.tier.interpreted_calls += 1
        return self._interpret(args)

    def wait(self, timeout=None):
        """The native program, once the background compile is done (None after ``timeout``
        seconds, or with tier "interpret"); raises the error that kept it from being built."""
        if self._native is not None:
            return self._native
        job = self._job
        if job is None:
            if self.tier.error is not None:
                raise self.tier.error
            return None
        if not job.wait(timeout):
            return None
        if not self._switch():
            raise self.tier.error
        return self._native

    def _switch(self) -> bool:
        """Load the native program (at a call boundary): True when it now runs the calls."""
        job, self._job = self._job, None
        try:
            with paused_gc():
                native = job.load()
        except Exception as e:  # noqa: BLE001 - the interpreter stays correct
            self.tier.error = e
            warnings.warn(f"graphjit: the native program {self.name} could not be built, so it "
                          f"keeps running on the NumPy interpreter: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=3)
            return False
        self._native = native
        self.tier.native_since = self.tier.interpreted_calls + 1
        self.tier.compile_seconds = native.compile_seconds
        native.tier = self.tier
        # From now on a call is the native program's own, with nothing in between.
        self.run_trusted = native.run_trusted
        self.results_of_their_own = native.results_of_their_own
        self.flat_input = native.flat_input
        self.threads = native.threads
        for listener in self.tier.listeners:
            listener(self.tier)
        _start_fill()  # a call boundary, maybe with nothing left compiling
        return True

    # ---- CompiledProgram's interface -------------------------------------------------------

    def results_of_their_own(self, results, args, positions) -> set:
        """None of them: the interpreter may return arrays it keeps, such as constants
        ([State a call creates] in graphjit/jit/runtime.py). Once the native program runs,
        its own answer (``_switch``)."""
        return set()

    # Input ``i`` checked, as a flat view or a copy: the native program's own checks (they
    # read only ``_arg_types`` and ``_input_error``).
    flat_input = CompiledProgram.flat_input

    def _input_error(self, i, arr):
        v = self._args[i]
        error = DTypeError if arr.dtype != v.dtype.np else ShapeError
        return error(f"program {self.name}: input %{v.name} expects {v.type}, got "
                     f"{arr.dtype}{list(arr.shape)}")

    def __call__(self, inputs):
        """``CompiledProgram.__call__``: ``(outputs, updates)`` for checked ``inputs``."""
        inputs = list(inputs)
        if len(inputs) != len(self._args):
            wanted = ", ".join(f"%{v.name}: {v.type}" for v in self._args)
            raise ShapeError(f"program {self.name} takes {len(self._args)} inputs ({wanted}), "
                             f"got {len(inputs)}")
        args = [self.flat_input(i, arr)[0] for i, arr in enumerate(inputs)]
        results = self.run_trusted(args)
        outputs = [r.reshape(s) for r, s in zip(results, self.output_shapes)]
        updates = [(args[k] if where == "input" else results[k]).reshape(shape)
                   for (where, k), shape in zip(self.update_plan, self._update_shapes)]
        return outputs, updates

    def __repr__(self) -> str:
        return f"<TieredProgram {self.name} ({self.tier.tier})>"

    # ---- the first tier -------------------------------------------------------------------

    def _interpret(self, args):
        """What the native driver does with ``args`` (flat input arrays, consts excluded):
        the flat results in its order, updates planned in place written into ``args``."""
        inputs = [a.reshape(shape) for a, (_, shape) in zip(args, self._arg_types)]
        outputs, updates = self._interpreter.run(inputs)
        results = list(outputs)
        in_place = []
        for (where, k), value in zip(self.update_plan, updates):
            if where == "input":
                in_place.append((k, value))
            else:
                results.append(value)
        # Nothing returned or written may be read through an input's buffer: copy first.
        results = [_flat_owned(r, args) for r in results]
        in_place = [(k, _flat_owned(value, args)) for k, value in in_place]
        for k, value in in_place:
            args[k][...] = value
        return results


def _flat_owned(arr, inputs):
    """``arr`` as a 1-D array sharing memory with none of ``inputs``."""
    if any(np.may_share_memory(arr, a) for a in inputs):
        return arr.reshape(-1).copy()
    return np.ascontiguousarray(arr).reshape(-1)


# ---- index errors as the kernels raise them --------------------------------------------

def _index_checks(graph) -> dict:
    return {n: _index_check(n) for n in graph.nodes if n.op.name in ("index", "index_backward")}


def _index_check(node):
    """``check(*inputs)`` raising the IndexError the node's kernel raises for an index out of
    range (backend/cpu/index.py): the first element in the kernel's loop order, and of it
    the first index tensor out of range."""
    idx_types = [v.type for v in node.inputs[1:]]
    key = node.attrs["key"]
    x_shape = tuple(node.attrs["shape"]) if node.op.name == "index_backward" \
        else tuple(node.inputs[0].shape)
    plan = index_plan(x_shape, key, [t.shape for t in idx_types])
    last_adv = max((p for p, r in enumerate(plan.dims) if r[0] == "adv"), default=-1)
    # The kernel reads index tensors once the loops over B are open: not at all when a
    # loop up to there has no iterations.
    sizes = plan.shape[:last_adv + 1]
    if not plan.arrays or any(n == 0 for n in sizes):
        return None
    name = node.op.name

    def check(x, *idx):
        bad = []
        for t, d in plan.arrays:
            n = x_shape[d]
            j = np.broadcast_to(idx[t], plan.bshape)
            bad.append((j < -n) | (j >= n))
        hit = np.logical_or.reduce(bad) if len(bad) > 1 else bad[0]
        if not hit.any():
            return
        first = np.unravel_index(int(np.argmax(hit)), hit.shape) if hit.ndim else ()
        for (t, d), b in zip(plan.arrays, bad):
            if b[first]:
                n = x_shape[d]
                described = describe_key((("t", t),), idx_types)[1:-1]
                raise IndexError(f"{name}: index tensor {t} ({described}) has an index out of "
                                 f"range [-{n}, {n}) for dim {d} of a tensor of shape {x_shape}")
    return check


# ---- the background compile --------------------------------------------------------------

_RUNNING: set = set()  # compiles whose workers may still run (killed at exit)
# (id of a dispatcher, signature) -> (dispatcher, the compile whose workers compile it): a
# kernel two programs share (a compiled forward's and its backward's) is compiled once.
_IN_FLIGHT: dict = {}
_LOCK = threading.Lock()


class _NativeCompile:
    """The native program of a prepared program, compiled in the background: by forked
    workers (``GRAPHJIT_COMPILE_WORKERS``, default one per usable core, since this process
    is busy interpreting) that a thread waits for, or without workers by that thread
    itself. It is done when they are, and so is every other compile that had some of its
    kernels in hand already. ``load()`` builds the program from what they compiled.
    ``fill``: a compile for the next process (``_fill_later``), which nothing loads."""

    def __init__(self, prepared, start, fill=False):
        self.prepared = prepared
        self.fill = fill
        self.start = start
        self.owner = os.getpid()
        self._done = threading.Event()
        self._stopping = False
        self.pids = []
        entries, self._keys, waits_for = [], [], set()
        with _LOCK:
            for dispatcher, signature in prepared.missing():
                key = (id(dispatcher), tuple(signature))
                other = _IN_FLIGHT.get(key, (None, None))[1]
                if other is not None and not other.finished():
                    waits_for.add(other)
                    continue
                _IN_FLIGHT[key] = (dispatcher, self)
                self._keys.append(key)
                entries.append((dispatcher, signature))
        workers = _tier_workers()
        if workers and fill:
            # A fill's workers at the lowest priority: they take only cores the user's
            # steps leave idle (at full priority they made W7's first native steps 2x slower).
            # Then one more process loads what they compiled and writes the program's
            # bundles, which a restart loads it from ([Programs from their bundles]).
            self.pids = start_workers(entries, min(workers, len(entries)), nice=19,
                                      then=prepared.finish)
        elif workers and entries:
            self.pids = start_workers(entries, min(workers, len(entries)))
        _RUNNING.add(self)
        thread = threading.Thread(target=self._background, args=(entries, waits_for),
                                  daemon=True, name=f"graphjit-compile-{prepared.name}")
        thread.start()

    def _background(self, entries, waits_for):
        try:
            if self.pids:
                for pid in self.pids:
                    try:
                        os.waitpid(pid, 0)
                    except (ChildProcessError, InterruptedError):
                        pass
            elif not self._stopping:
                for dispatcher, signature in entries:
                    try:
                        dispatcher.compile(signature)
                    except Exception:  # noqa: BLE001 - load() compiles it again and reports
                        pass
                    if self._stopping:
                        break
            for other in waits_for:
                other.wait()
        finally:
            with _LOCK:
                for key in self._keys:
                    if _IN_FLIGHT.get(key, (None, None))[1] is self:
                        del _IN_FLIGHT[key]
            _RUNNING.discard(self)
            self._done.set()

    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout=None) -> bool:
        return self._done.wait(timeout)

    def load(self) -> CompiledProgram:
        return _load(self.prepared, self.start)

    def stop(self):
        self._stopping = True
        if os.getpid() == self.owner:  # (a forked child holds a copy of the parent's list)
            kill_workers(self.pids)


def _load(prepared, start) -> CompiledProgram:
    program = prepared.finish()
    program.compile_seconds = time.perf_counter() - start
    return program


def _tier_workers() -> int:
    """Compile workers for a background compile: ``GRAPHJIT_COMPILE_WORKERS`` when set, else
    one per usable core (where forking is possible at all)."""
    workers = compile_workers()
    if workers == 0 or os.environ.get("GRAPHJIT_COMPILE_WORKERS", "").strip():
        return workers
    return workers + 1


# Programs run once whose code is to be compiled for the next process ([Tiered execution]):
# their ``fill`` functions, started one at a time when nothing else compiles.
_FILLS: list = []


def _fill_later(fill) -> None:
    with _LOCK:
        _FILLS.append(fill)


def _start_fill() -> None:
    """Start compiling the next program run once for the next process, if nothing compiles
    in the background now and there are workers (a fill never compiles in this process,
    beside the user's work). Called on the user's thread at a call boundary (a program
    loaded, or switched to native code): the workers are forked from there, as every
    background compile's are, never from a helper thread (forked from one, the workers
    hung in the test suite: a fork copies the locks other threads hold at that moment, an
    import's for one, and no one in the child ever releases them)."""
    with _LOCK:
        if not _FILLS or any(not job.finished() for job in _RUNNING) or not _tier_workers():
            return
        fill = _FILLS.pop(0)
    try:
        prepared = fill()  # writes and imports the modules (Numba compiles nothing here)
        if prepared.missing() or prepared.needs_bundles():
            _NativeCompile(prepared, time.perf_counter(), fill=True)
    except Exception:  # noqa: BLE001 - a fill only saves the next process time
        pass


def wait_background(timeout=None, fills=False) -> bool:
    """Wait until every background compile of this process is done (False if ``timeout``
    seconds pass first); each program switches to native code at its next call. ``fills``:
    also compile the programs run once for the next process ([Tiered execution]), and wait
    for that."""
    deadline = None if timeout is None else time.perf_counter() + timeout
    while True:
        for job in list(_RUNNING):
            if job.fill and not fills:
                continue
            left = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
            if not job.wait(left):
                return False
        if not fills:
            return True
        with _LOCK:
            pending = len(_FILLS)
        if not pending:
            return True
        _start_fill()
        with _LOCK:
            if len(_FILLS) == pending:  # not started (no workers): nothing to wait for
                return True


@atexit.register
def _stop_running():
    for job in list(_RUNNING):
        job.stop()
