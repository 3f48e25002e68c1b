"""[Parallel kernel compilation] (backend/cpu/workers.py) and [Kernel calls by address]
(backend/cpu/native.py): forked workers compile kernels into Numba's cache, the compiling
process loads them; a worker that dies costs nothing but time; the driver refuses kernel
arguments that are not 1-D C arrays.

The process tests run in fresh subprocesses with an empty cache folder, so what the
parent loaded rather than compiled is visible in its kernels' cache statistics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from graphjit.backend.cpu import workers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# Five kernels, none like another: exp, a matmul, tanh, a row sum and a multiply.
GRAPH = """\
graph five(%x: f32[6,5] {arg}, %w: f32[5,4] {arg}, %y: f32[6,4] {arg}) {
  %0 = exp(%x) : f32[6,5]
  %1 = matmul(%0, %w) : f32[6,4]
  %2 = tanh(%1) : f32[6,4]
  %3 = sum(%2, dims=[1], keepdim=false) : f32[6]
  %4 = mul(%2, %y) : f32[6,4]
  return %3, %4
}"""

# Compiles GRAPH (unfused: one kernel per node) and prints whether it matches the
# interpreter and, per kernel, Numba's cache [hits, misses] in this process. With argv[1]
# "kill-worker", a worker kills itself after taking the first kernel off the queue.
SCRIPT = textwrap.dedent("""\
    import json, os, signal, sys
    import numpy as np
    from graphjit.backend.cpu import compile_graph, workers
    from graphjit.ir import parse_graph, run_graph

    if sys.argv[2] == "kill-worker":
        parent, drain = os.getpid(), workers._drain
        def dying_drain(read_end, entries, keep_going):
            if os.getpid() != parent:
                os.read(read_end, workers._RECORD.size)
                os.kill(os.getpid(), signal.SIGKILL)
            drain(read_end, entries, keep_going)
        workers._drain = dying_drain
    g = parse_graph(sys.argv[1])
    p = compile_graph(g)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
    got, want = p(xs)[0], run_graph(g, xs)[0]
    ok = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got, want))
    names = p.dispatcher.py_func.__globals__
    kernels = [d for n, d in names.items() if n.startswith("k") and hasattr(d, "stats")]
    stats = [[sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
             for k in kernels]
    print(json.dumps({"ok": ok, "kernels": stats}))
""")


def _run(tmp_path, workers_env, mode="plain"):
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=str(tmp_path / "cache"),
               GRAPHJIT_COMPILE_WORKERS=str(workers_env),
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, GRAPH, mode], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_worker_compiles_kernels_this_process_then_loads(tmp_path):
    report = _run(tmp_path, 1)
    assert report["ok"] and len(report["kernels"]) == 5
    # Every kernel was either compiled here (a miss) or loaded after the worker compiled
    # it (a hit), once; the worker took some of them.
    assert all(h + m == 1 for h, m in report["kernels"]), report
    loaded = sum(h for h, _ in report["kernels"])
    assert 1 <= loaded <= 4, report


def test_no_workers_compiles_everything_here(tmp_path):
    report = _run(tmp_path, 0)
    assert report["ok"] and report["kernels"] == [[0, 1]] * 5, report


def test_a_worker_that_dies_costs_only_time(tmp_path):
    # The kernel the dead worker took is compiled here, like every one nobody cached.
    report = _run(tmp_path, 1, mode="kill-worker")
    assert report["ok"] and all(h + m == 1 for h, m in report["kernels"]), report
    assert sum(m for _, m in report["kernels"]) >= 1


def test_a_warm_start_forks_nothing(tmp_path, monkeypatch):
    _run(tmp_path, 1)
    # Everything is in the cache now: compile_kernels must not fork.
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHJIT_COMPILE_WORKERS", "1")
    monkeypatch.setattr(workers, "_compile_forked",
                        lambda *a: pytest.fail("forked for kernels in the cache"))
    from graphjit.backend.cpu import compile_graph
    from graphjit.ir import parse_graph, run_graph
    g = parse_graph(GRAPH)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
    got, want = compile_graph(g)(xs)[0], run_graph(g, xs)[0]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value, expected", [("0", 0), ("3", 3), (" 2 ", 2), ("-1", 0)])
def test_compile_workers_setting(monkeypatch, value, expected):
    monkeypatch.setenv("GRAPHJIT_COMPILE_WORKERS", value)
    assert workers.compile_workers() == expected


def test_compile_workers_setting_must_be_a_number(monkeypatch):
    monkeypatch.setenv("GRAPHJIT_COMPILE_WORKERS", "many")
    with pytest.raises(ValueError, match="GRAPHJIT_COMPILE_WORKERS.*'many'"):
        workers.compile_workers()


def test_run_kernel_refuses_arrays_a_kernel_does_not_take():
    from numba import njit
    from numba.core.errors import TypingError
    from graphjit.backend.cpu.native import run_kernel

    @njit
    def call(a, address):
        run_kernel(address, (a,))

    with pytest.raises(TypingError, match="1-D C-contiguous arrays, got array"):
        call(np.zeros((2, 2), np.float32), 0)
    with pytest.raises(TypingError, match="1-D C-contiguous arrays"):
        call(np.zeros(4, np.float32)[::2], 0)


def test_a_value_named_like_the_drivers_helpers_does_not_shadow_them():
    from graphjit.backend.cpu import compile_graph
    from graphjit.ir import parse_graph
    names = ["run_kernel", "import_sibling", "at", "buffer_view", "load_address", "kernels"]
    g = parse_graph(f"graph f({', '.join(f'%{n}: f32[3] {{arg}}' for n in names)}) {{\n"
                    "  %0 = mul(%run_kernel, %import_sibling) : f32[3]\n"
                    "  %1 = add(%at, %buffer_view) : f32[3]\n"
                    "  %2 = sub(%load_address, %kernels) : f32[3]\n"
                    "  return %0, %1, %2\n}")
    a, b, c, d, e, f = (np.float32([1, 2, 3]) * k for k in range(1, 7))
    (x, y, z), _ = compile_graph(g)([a, b, c, d, e, f])
    np.testing.assert_array_equal(x, a * b)
    np.testing.assert_array_equal(y, c + d)
    np.testing.assert_array_equal(z, e - f)


class _Niceness:
    """A stand-in dispatcher whose compile writes the worker's niceness to a file."""

    def __init__(self, path):
        self.path = path

    def compile(self, signature):
        with open(self.path, "w") as f:
            f.write(str(os.nice(0)))


@pytest.mark.parametrize("nice", [0, 19])
def test_workers_run_at_the_niceness_asked_for(tmp_path, nice):
    # A fill (a program run once, compiled for the next process) asks for 19: its workers
    # then take only cores the user's steps leave idle ([Tiered execution]).
    path = tmp_path / "nice.txt"
    pids = workers.start_workers([(_Niceness(str(path)), ())], 1, nice=nice)
    for pid in pids:
        os.waitpid(pid, 0)
    assert int(path.read_text()) == min(os.nice(0) + nice, 19)


class _Slow:
    """A stand-in dispatcher whose compile takes a while, then leaves a file."""

    def __init__(self, path):
        self.path = path

    def compile(self, signature):
        time.sleep(0.5)
        with open(self.path, "w") as f:
            f.write("compiled")


def test_then_runs_once_every_worker_has_exited(tmp_path):
    # A fill's last process writes the program's bundles from what the workers compiled
    # ([Tiered execution]): it must not start before the last of them is done.
    paths = [tmp_path / "a", tmp_path / "b"]
    seen = tmp_path / "seen"

    def then():
        seen.write_text(" ".join(str(p.exists()) for p in paths))

    pids = workers.start_workers([(_Slow(str(p)), ()) for p in paths], 2, then=then)
    assert len(pids) == 3
    for pid in pids:
        os.waitpid(pid, 0)
    assert seen.read_text() == "True True"


def test_forked_workers_name_their_machine_code_apart():
    """Numba names compiled code after a per-process counter (and a parallel loop's body
    after its parfor object's address): workers forked from one process started with the
    same counter, so two of them could give two different kernels one symbol, and the
    process that loaded both ran one kernel's loop body for the other (a fuzz run with
    GRAPHJIT_PARALLEL_MIN=1: wrong values, heap corruption). Each worker now starts its
    counter at a random point: the next names of two forked workers and of this process
    differ."""
    from numba.core.bytecode import FunctionIdentity

    def next_uid_in_a_worker():
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                workers._own_symbol_names()
                os.write(write_end, str(next(FunctionIdentity._unique_ids)).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        value = int(os.read(read_end, 64))
        os.close(read_end)
        os.waitpid(pid, 0)
        return value

    first, second = next_uid_in_a_worker(), next_uid_in_a_worker()
    here = next(FunctionIdentity._unique_ids)
    assert len({first, second, here}) == 3
    assert min(first, second) > here  # far from this process's own names
