"""How many threads a compiled program's call runs on, chosen per program from its own times.

# NOTE: [Threads under load]
A compiled program has two thread pools: Numba's (libgomp: the "omp" threading layer, the one
Numba picks here, TBB not being installed) for its parallel loops, and OpenBLAS's (pthreads)
for its matrix products. Both split each loop or GEMM evenly over their threads and wait at
its end for the slowest, so with another process on a core every loop and GEMM waits for that
core's time slice. On the 2-core development VM with two busy-loop processes beside it, W2's
compiled step took 24x its idle time, one thread 2x (``benchmarks/load.py``). OpenBLAS's pool
is the worse one (W2 with other work on the machine: 168 ms a step with only the loops on one
thread, 25 ms with only the GEMMs): its threads wait for each other inside a GEMM (they share
packed blocks), and its caller for them, by spinning on sched_yield, so one preempted worker
holds up the rest. The pools also get in each other's way on an idle machine: after a
parallel loop libgomp's workers spin for some milliseconds (300000 spins by default) on the
core an OpenBLAS worker then needs, which made W2's step 3x slower (24-28 ms against 6.5-9
ms). graphjit used to set ``GOMP_SPINCOUNT=1000`` in the environment against that; a library
must not ([OpenBLAS core type] in graphjit/_blas.py), and nothing else changes libgomp's
spinning once it is loaded.

So each program chooses, per call, among the ways (arms) of running it: its parallel loops on
the calling thread only (the calling thread's Numba thread count set to 1 for the call and
restored after: libgomp then runs a loop on the caller and wakes no worker), its GEMMs on the
calling thread only (OpenBLAS's ``openblas_set_num_threads(1)`` for the call, restored after),
both, or neither (the libraries as configured). It times its calls and runs the fastest way,
trying the others again now and then (``ArmChooser``), as often as keeps the tries to about 1%
of the time each. A loaded machine makes the multi-threaded ways slow and the program turns to
the single-threaded ones within a few calls; when the load goes, the next tries (at most
``ArmChooser.MAX_INTERVAL_S`` of calls later) bring the threads back. What decides is what
each way costs on this machine now, not a model of it: the pools' interference, the spinning
and the load are all in the times. Rejected:

- ``GOMP_SPINCOUNT``/``OMP_WAIT_POLICY``: environment variables (the user's to set: with
  ``GOMP_SPINCOUNT=1000`` a multi-threaded way stays good under load for longer);
- the "workqueue" layer, which does not spin: it wakes every worker at every loop even with
  one thread set (so a loaded core stalls every loop) and aborts when two Python threads start
  parallel loops at once; TBB is not a dependency;
- counting free cores (/proc/stat): a core busy half the time is free for one loop and not for
  the next, and a count says nothing about the two pools' interference.

Costs (the 2-core VM, busy): about 2 us per call for the timing and the choice, up to 10 us
in a call that holds both pools to one thread (the C functions behind Numba's
``get_num_threads``/``set_num_threads``, OpenBLAS's through ctypes); nothing in a program
with no parallel loop and no GEMM above OpenBLAS's single-thread size (W3's step).

Results: the parallel loops' do not depend on their threads ([Parallel loops] in loops.py);
OpenBLAS's float32 GEMM rounds differently on one thread than on two (last-bit differences),
so results can differ in the last bits from call to call as the load changes.
``GRAPHJIT_ADAPTIVE_THREADS=0`` keeps the libraries' settings for every call (results
reproducible bit for bit on one machine). Numba's setting is the calling thread's; OpenBLAS's
is the process's (a pthreads OpenBLAS has no per-thread one), and the programs' OpenBLAS is
NumPy's ([The BLAS of compiled programs] in graphjit/_blas.py), so while a program runs its
GEMMs on one thread, a NumPy matrix product in another Python thread does too; ``BlasLimit``
counts the programs holding it, so the last one restores the user's setting.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque

# A way of running a program: (parallel loops on one thread, GEMMs on one thread).
AS_CONFIGURED = (False, False)


def adaptive() -> bool:
    """Whether programs choose their threads per call (``GRAPHJIT_ADAPTIVE_THREADS``, default
    on; ``0`` keeps the libraries' own settings)."""
    value = os.environ.get("GRAPHJIT_ADAPTIVE_THREADS", "").strip().lower()
    if value in ("", "1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"GRAPHJIT_ADAPTIVE_THREADS must be 0 or 1, got {value!r}")


class ArmChooser:
    """Which of ``n`` ways (arms) to run the next call with, from the calls' times.

    ``choose()`` returns an arm; ``record(arm, seconds)`` reports its call's time. The current
    arm is the one with the lowest median over its last ``WINDOW`` timed calls (another must
    beat it by ``HYSTERESIS`` to take over). The first call after a change of arm is not
    timed: it also pays for waking the threads the previous arm left asleep (or for the
    previous arm's threads still spinning), a cost of the change, not of either arm.

    Every other arm is tried again when it is due: a try forgets its earlier times and runs
    it for ``PROBE_CALLS`` calls (the untimed first one included), or fewer once
    ``GIVE_UP_CALLS`` timed calls in a row took more than ``GIVE_UP`` times the current
    median (a slow way costs three calls). An arm is due once the calls since its last try
    have taken what a try of it costs over ``EXPLORE_SHARE``, within ``[MIN_INTERVAL_S,
    MAX_INTERVAL_S]``: time spent in calls, not on the clock, so a program called now and
    then tries no more often than one called without a pause, and the tries of each arm take
    about ``EXPLORE_SHARE`` of the time. Never-tried arms are due at once, and an arm tried
    once is due again after ``MIN_INTERVAL_S``: a program's first calls of each way pay for
    starting its thread pools and touching its buffers for the first time, so a first try
    alone misjudges it (W7 on two cores: the way it settled on took 6.3 ms a step, one
    whose first try had measured 8.5 ms took 5.1; and a try of an arm that is still slow
    once warm costs a few calls). ``calls`` counts the calls run each way.
    """

    WINDOW = 5
    PROBE_CALLS = 4
    GIVE_UP = 1.5
    GIVE_UP_CALLS = 2
    EXPLORE_SHARE = 0.01
    MIN_INTERVAL_S = 0.05
    MAX_INTERVAL_S = 30.0
    HYSTERESIS = 0.05

    def __init__(self, n: int):
        self.n = n
        self.samples = [deque(maxlen=self.WINDOW) for _ in range(n)]
        self.medians = [None] * n
        self.current = 0
        self.last_arm = 0
        self.probing = None  # [arm, calls left] while an arm is tried
        self.busy = 0.0  # seconds of calls recorded
        self.last_try = [None] * n  # ``busy`` when each arm's last try ended
        self.tries = [0] * n
        self.calls = [0] * n
        # Cached between the calls that change them (choose and record run on every call):
        # ``busy`` at which the next arm is due, and the current arm's median above which
        # another takes over.
        self.next_due = 0.0
        self.switch_above = float("inf")

    def choose(self) -> int:
        if self.probing is not None:
            return self.probing[0]
        if self.busy < self.next_due or self.medians[self.current] is None:
            return self.current
        due, due_last, next_due = None, None, float("inf")
        for arm in range(self.n):
            if arm == self.current:
                continue
            last = self.last_try[arm]
            at = 0.0 if last is None else last + self.interval(arm)
            if self.busy >= at:
                last = -1.0 if last is None else last
                if due is None or last < due_last:
                    due, due_last = arm, last
            else:
                next_due = min(next_due, at)
        if due is None:
            self.next_due = next_due
            return self.current
        self.probing = [due, self.PROBE_CALLS]
        self.samples[due].clear()
        return due

    def interval(self, arm: int) -> float:
        """Seconds of calls between two tries of ``arm``: what a try costs (its median times
        the calls of a try, fewer if it would give up) over ``EXPLORE_SHARE``."""
        median = self.medians[arm]
        if median is None:
            return 0.0
        if self.tries[arm] < 2:  # a first try is not enough (see above)
            return self.MIN_INTERVAL_S
        current = self.medians[self.current]
        calls = self.PROBE_CALLS
        if current is not None and median > self.GIVE_UP * current:
            calls = 1 + self.GIVE_UP_CALLS
        return min(self.MAX_INTERVAL_S,
                   max(self.MIN_INTERVAL_S, calls * median / self.EXPLORE_SHARE))

    def record(self, arm: int, seconds: float) -> None:
        self.calls[arm] += 1
        self.busy += seconds
        timed = arm == self.last_arm
        self.last_arm = arm
        if timed:
            window = self.samples[arm]
            window.append(seconds)
            ordered = sorted(window)
            median = self.medians[arm] = ordered[(len(ordered) - 1) // 2]
        probe = self.probing
        if probe is None or probe[0] != arm:
            if timed and arm == self.current and median > self.switch_above:
                self._decide()
            return
        probe[1] -= 1
        if probe[1] > 0:
            current = self.medians[self.current]
            recent = list(self.samples[arm])[-self.GIVE_UP_CALLS:]
            if current is None or len(recent) < self.GIVE_UP_CALLS or \
                    min(recent) <= self.GIVE_UP * current:
                return
        self.probing = None
        self.last_try[arm] = self.busy
        self.tries[arm] += 1
        self._decide()

    def _decide(self) -> None:
        current = self.medians[self.current]
        best, best_median = self.current, current
        for arm, median in enumerate(self.medians):
            if median is not None and (best_median is None or median < best_median):
                best, best_median = arm, median
        if best != self.current and (current is None
                                     or best_median < current * (1 - self.HYSTERESIS)):
            self.current = best
        others = [m for arm, m in enumerate(self.medians) if arm != self.current and m is not None]
        self.switch_above = min(others) / (1 - self.HYSTERESIS) if others else float("inf")
        self.next_due = 0.0  # choose() works out the next due arm again


class BlasLimit:
    """OpenBLAS held to one thread while entered, counted across threads: the first to enter
    saves the user's setting, the last to leave restores it."""

    def __init__(self, lib):
        self.lib = lib
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = self.lib.get_num_threads()
                if self._saved != 1:
                    self.lib.set_num_threads(1)
            self._depth += 1

    def leave(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved != 1:
                self.lib.set_num_threads(self._saved)


_BLAS_LIMIT = None


def _blas_limit():
    global _BLAS_LIMIT
    if _BLAS_LIMIT is None:
        from .blas import program_openblas
        lib = program_openblas()
        _BLAS_LIMIT = BlasLimit(lib) if lib is not None else False
    return _BLAS_LIMIT or None


class ThreadChoice:
    """The threads of one program's calls ([Threads under load]): ``run(fn, *args)`` calls
    ``fn`` the way chosen for this call and times it. ``arms`` lists the ways as
    (parallel loops on one thread, GEMMs on one thread); the first is the libraries' own."""

    def __init__(self, arms, blas_limit=None, clock=time.perf_counter):
        self.arms = list(arms)
        self.chooser = ArmChooser(len(self.arms))
        self.clock = clock
        self._blas = blas_limit
        self._first = True

    @classmethod
    def for_program(cls, parallel: bool, threaded_blas: bool):
        """The choice for a program with parallel loops (``parallel``) and GEMMs large enough
        for OpenBLAS to thread (``threaded_blas``), or None where there is nothing to choose
        (one thread configured, no OpenBLAS found, or ``GRAPHJIT_ADAPTIVE_THREADS=0``)."""
        if not (parallel or threaded_blas) or not adaptive():
            return None
        loops = parallel and _numba_threads() > 1
        blas = _blas_limit() if threaded_blas else None
        if blas is not None and blas.lib.get_num_threads() <= 1:
            blas = None
        if not loops and blas is None:
            return None
        arms = [(a, b) for a in (False, True) for b in (False, True)
                if (loops or not a) and (blas is not None or not b)]
        return cls(arms, blas)

    def run(self, fn, *args):
        chooser = self.chooser
        first = self._first
        if first:
            # The first call allocates the workspace: not a time to compare, so nothing is
            # learnt from it, and it runs the safe way, every pool held to one thread: on a
            # busy machine the threaded way made W5's first call 1.6 s instead of 36 ms (a
            # restart's first call is what a user waits for).
            self._first = False
            index = len(self.arms) - 1
        else:
            index = chooser.choose()
        if index == 0:  # as configured
            start = self.clock()
            result = fn(*args)
            chooser.record(0, self.clock() - start)
            return result
        one_loop_thread, one_blas_thread = self.arms[index]
        if one_loop_thread:
            get_threads, set_threads = _numba_thread_setting()
            threads = get_threads()
            set_threads(1)
        if one_blas_thread:
            self._blas.enter()
        try:
            start = self.clock()
            result = fn(*args)
            seconds = self.clock() - start
        finally:
            if one_blas_thread:
                self._blas.leave()
            if one_loop_thread:
                set_threads(threads)
        if not first:
            chooser.record(index, seconds)
        return result

    def describe(self) -> str:
        """The current way and the calls run each way, e.g. for a benchmark's report."""
        def name(arm):
            loops, blas = arm
            if arm == AS_CONFIGURED:
                return "as configured"
            return " and ".join(w for w, one in (("loops", loops), ("GEMMs", blas)) if one) + \
                " on one thread"
        c = self.chooser
        runs = ", ".join(f"{name(arm)} {n}" for arm, n in zip(self.arms, c.calls))
        return f"now {name(self.arms[c.current])} (calls: {runs})"


def _numba_threads() -> int:
    import numba
    return numba.config.NUMBA_NUM_THREADS


_NUMBA_SETTING = None


def _numba_thread_setting():
    """``(get, set)`` of the calling thread's Numba thread count: the C functions behind
    ``numba.get_num_threads``/``set_num_threads`` (0.3 us a call against 1.5 us: the public
    ones take the threading layer's locks each time), where this Numba has them, else the
    public ones. Only 1 and a value read back are ever set, so the public checks are moot."""
    global _NUMBA_SETTING
    if _NUMBA_SETTING is None:
        import numba
        from numba.np.ufunc import parallel
        numba.get_num_threads()  # starts the threading layer, which sets the C functions
        get, set_ = (getattr(parallel, "_get_num_threads", None),
                     getattr(parallel, "_set_num_threads", None))
        if not (callable(get) and callable(set_)):
            get, set_ = numba.get_num_threads, numba.set_num_threads
        _NUMBA_SETTING = (get, set_)
    return _NUMBA_SETTING
