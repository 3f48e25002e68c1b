"""[Threads under load] (backend/cpu/threads.py): each program chooses per call whether its
parallel loops and its GEMMs run on one thread, from its calls' times. The chooser runs here
on made-up times (no timing test: timings belong in benchmarks/load.py); the programs check
that every way gives the same loop results and leaves the libraries' settings as it found
them."""
from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

from graphjit import _blas
from graphjit.backend.cpu import threads
from graphjit.backend.cpu.codegen import compile_graph
from graphjit.backend.cpu.threads import ArmChooser, BlasLimit, ThreadChoice
from graphjit.ir import parse_graph, run_graph


def _drive(chooser, cost, calls):
    """Run ``calls`` calls through ``chooser``, arm ``a`` taking ``cost(a, i)`` seconds on
    call ``i``; returns the seconds spent per arm."""
    spent = [0.0] * chooser.n
    for i in range(calls):
        arm = chooser.choose()
        t = cost(arm, i)
        spent[arm] += t
        chooser.record(arm, t)
    return spent


def test_the_chooser_settles_on_the_fastest_arm_and_keeps_tries_cheap():
    times = [28e-3, 8e-3, 10e-3, 11e-3]  # W2 idle on the 2-core VM, roughly
    c = ArmChooser(4)
    spent = _drive(c, lambda a, i: times[a], 5000)
    assert c.current == 1
    # The tries of each other arm take about EXPLORE_SHARE of the time.
    assert sum(spent) - spent[1] < 3 * 1.2 * c.EXPLORE_SHARE * sum(spent)
    assert sum(spent) < 1.05 * 5000 * times[1]


def test_a_slow_try_ends_after_three_calls():
    c = ArmChooser(2)
    _drive(c, lambda a, i: [1e-3, 50e-3][a], 20)
    # Arm 1 ran three times when first tried (50x the current median: an untimed first
    # call, two slow ones), then was not due again for MIN_INTERVAL_S of calls.
    assert c.calls[1] == 1 + c.GIVE_UP_CALLS == 3 and c.current == 0
    assert c.interval(1) == c.MIN_INTERVAL_S
    # Its second try (after 0.05 s of 1 ms calls) is as slow: now tries are spaced by cost.
    _drive(c, lambda a, i: [1e-3, 50e-3][a], 100)
    assert c.calls[1] == 2 * (1 + c.GIVE_UP_CALLS) and c.current == 0
    assert c.interval(1) == pytest.approx(min(c.MAX_INTERVAL_S, 3 * 50e-3 / c.EXPLORE_SHARE))


def test_an_arm_slow_only_in_its_first_try_is_tried_again_soon():
    """A program's first calls of each way start thread pools and touch new buffers: arm 1
    looks slow in its first try (calls 1-10) and is the fastest once warm; the chooser
    finds that within a few tries instead of MAX_INTERVAL_S later."""
    c = ArmChooser(2)
    seen = []
    for i in range(200):
        arm = c.choose()
        c.record(arm, [6e-3, 9e-3 if i < 10 else 5e-3][arm])
        seen.append(c.current)
    assert seen[-1] == 1 and seen.index(1) < 40


def test_a_try_is_not_given_up_for_its_first_call_alone():
    # Arm 1's first call of each try wakes threads (slow); its next calls are the fastest.
    c = ArmChooser(2)
    state = {"last": None}

    def cost(arm, i):
        first = state["last"] != arm
        state["last"] = arm
        return [5e-3, 20e-3 if first else 3e-3][arm]
    _drive(c, cost, 50)
    assert c.current == 1


def test_the_chooser_follows_a_change_of_load():
    # Arm 0 (threads) is fastest until call 2000, when the machine gets busy and it becomes
    # 10x slower than arm 1 (one thread); at call 6000 the load goes away again.
    def cost(arm, i):
        loaded = 2000 <= i < 6000
        if arm == 0:
            return 40e-3 if loaded else 4e-3
        return 12e-3 if loaded else 6e-3
    c = ArmChooser(2)
    seen = []
    for i in range(9000):
        arm = c.choose()
        c.record(arm, cost(arm, i))
        seen.append(c.current)
    assert seen[1999] == 0
    assert all(s == 1 for s in seen[2010:6000])  # within a few calls of the load
    # Back to the threads once a try of arm 0 finds them fast again: its tries are spaced by
    # at most MAX_INTERVAL_S of calls.
    assert seen[-1] == 0 and seen.index(0, 6000) < 6000 + c.MAX_INTERVAL_S / 6e-3 + 10


def test_the_chooser_is_not_moved_by_one_outlier():
    c = ArmChooser(2)
    _drive(c, lambda a, i: [5e-3, 6e-3][a] if i != 30 else 1.0, 200)
    assert c.current == 0


class FakeBlas:
    def __init__(self, n):
        self.n, self.sets = n, []

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.sets.append(n)
        self.n = n


def test_the_blas_limit_restores_the_users_setting_once_across_threads():
    lib = FakeBlas(4)
    limit = BlasLimit(lib)
    limit.enter()
    limit.enter()  # a second program, in another thread
    assert lib.n == 1
    limit.leave()
    assert lib.n == 1  # the first one still runs
    limit.leave()
    assert lib.n == 4 and lib.sets == [1, 4]
    lib = FakeBlas(1)
    limit = BlasLimit(lib)
    limit.enter()
    limit.leave()
    assert lib.sets == []  # already one thread: nothing to change

    lib = FakeBlas(3)
    limit = BlasLimit(lib)
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        for _ in range(200):
            limit.enter()
            assert lib.n == 1
            limit.leave()
    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert lib.n == 3


def test_a_call_restores_the_thread_settings_even_when_it_raises():
    lib = FakeBlas(2)
    choice = ThreadChoice([(False, False), (True, True)], BlasLimit(lib))
    before = numba.get_num_threads()
    seen = []

    def fn():
        seen.append((numba.get_num_threads(), lib.n))
        if len(seen) == 3:
            raise RuntimeError("boom")
    for _ in range(2):
        choice.run(fn)
    choice.chooser.choose = lambda: 1  # the single-thread way
    with pytest.raises(RuntimeError, match="boom"):
        choice.run(fn)
    assert seen[2] == (1, 1)
    assert numba.get_num_threads() == before and lib.n == 2
    # The first call (the workspace's allocation) is not compared; the others are.
    assert sum(choice.chooser.calls) == 1


def test_no_choice_where_there_is_nothing_to_choose(monkeypatch):
    assert ThreadChoice.for_program(False, False) is None
    monkeypatch.setenv("GRAPHJIT_ADAPTIVE_THREADS", "0")
    assert ThreadChoice.for_program(True, True) is None
    monkeypatch.setenv("GRAPHJIT_ADAPTIVE_THREADS", "sometimes")
    with pytest.raises(ValueError, match="GRAPHJIT_ADAPTIVE_THREADS"):
        threads.adaptive()


# A row-wise layer norm of a GEMM's tanh: a product big enough for OpenBLAS's threads
# (128 * 512 * 256 multiply-adds) and a parallel row kernel (128 x 512 elements).
LAYER = """
graph f(%x: f32[128,256] {arg}, %w: f32[256,512] {arg}) {
  %0 = matmul(%x, %w) : f32[128,512]
  %1 = tanh(%0) : f32[128,512]
  %2 = sum(%1, dims=[1], keepdim=true) : f32[128,1]
  %3 = full(dtype=f32, shape=[], value=0.001953125) : f32[]
  %4 = mul(%2, %3) : f32[128,1]
  %5 = sub(%1, %4) : f32[128,512]
  return %5
}"""


def test_programs_know_what_they_run_on_threads(monkeypatch):
    monkeypatch.setenv("GRAPHJIT_PARALLEL_MIN", "1")
    big = compile_graph(parse_graph(LAYER))
    blas = _blas.numba_openblas()
    loops = numba.config.NUMBA_NUM_THREADS > 1
    gemms = blas is not None and blas.get_num_threads() > 1
    if not (loops or gemms):
        assert big.threads is None  # one thread everywhere: nothing to choose
        return
    assert set(big.threads.arms) == {(a, b) for a in (False, True) for b in (False, True)
                                     if (loops or not a) and (gemms or not b)}
    small = compile_graph(parse_graph("""
    graph g(%x: f32[8,8] {arg}, %w: f32[8,8] {arg}) {
      %0 = matmul(%x, %w) : f32[8,8]
      return %0
    }"""))
    assert small.threads is None  # a GEMM OpenBLAS runs on the caller, no parallel loop


def test_every_way_gives_the_same_loops_and_leaves_the_settings(monkeypatch):
    monkeypatch.setenv("GRAPHJIT_PARALLEL_MIN", "1")
    graph = parse_graph(LAYER)
    program = compile_graph(graph)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((128, 256)).astype(np.float32)
    w = (rng.standard_normal((256, 512)) / 16).astype(np.float32)
    blas = _blas.numba_openblas()
    numba_before = numba.get_num_threads()
    blas_before = blas.get_num_threads() if blas is not None else None
    expected = run_graph(graph, [x, w])[0][0]
    program([x, w])  # the first call: not timed
    if program.threads is None:
        pytest.skip("one thread everywhere: nothing to choose")
    results = {}
    for arm in range(len(program.threads.arms)):
        program.threads.chooser.choose = lambda a=arm: a
        results[program.threads.arms[arm]] = program([x, w])[0][0].copy()
    for got in results.values():
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # The GEMM is the same on either side of the loops' setting: the loops do not depend on
    # their threads ([Parallel loops]).
    for blas_one in (False, True):
        if (True, blas_one) in results:
            assert np.array_equal(results[(True, blas_one)], results[(False, blas_one)])
    assert numba.get_num_threads() == numba_before
    if blas is not None:
        assert blas.get_num_threads() == blas_before


def test_the_openblas_of_compiled_programs_is_found_and_answers():
    blas = _blas.numba_openblas()
    if blas is None:
        pytest.skip("SciPy's BLAS here is not an OpenBLAS graphjit can find")
    n = blas.get_num_threads()
    assert n >= 1
    try:
        blas.set_num_threads(1)
        assert blas.get_num_threads() == 1
    finally:
        blas.set_num_threads(n)
    assert blas.get_num_threads() == n
    assert blas.corename()  # e.g. "Haswell"
