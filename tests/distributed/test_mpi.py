"""graphjit.distributed under a real MPI launcher: the MPI programs next to this file run as
``mpiexec -n 2 python <program>`` and their output is checked here. Skipped when the
``distributed`` extra (mpi4py, and an MPI with its mpiexec) is not installed.

The launcher's flags for running as root in a container (Open MPI refuses root without
them; MPICH, the extra's MPI, needs none) are set here, for these runs only.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RANKS = 2


def _mpiexec():
    """The mpiexec of this Python's environment (the mpich wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
    reason="the distributed extra is not installed (pip install -e '.[distributed]')")


def _launcher() -> list:
    command = [_mpiexec(), "-n", str(RANKS)]
    version = subprocess.run([command[0], "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        command += ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return command


def run_mpi(program: str, *args, timeout: float = 600):
    """``mpiexec -n 2 python program args...`` (``program`` relative to this folder):
    (exit status, output, seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("GRAPHJIT_VERIFY", None)  # (the verifier's checks run in-process: conftest.py)
    start = time.perf_counter()
    done = subprocess.run(_launcher() + [sys.executable, os.path.join(HERE, program), *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start


def test_data_parallel_training_matches_one_process_eager_and_compiled():
    status, output, _ = run_mpi("mpi_training.py")
    assert status == 0, output
    for check in ("sgd eager", "sgd compiled", "adam eager", "adam compiled",
                  "eager buckets start during backward", "state_dict keys", "no_sync",
                  "buffers broadcast", "collectives eager and compiled", "all_reduce gradient"):
        assert f"OK {check}" in output, output
    import graphjit as gj  # (on Numba's CUDA simulator here: tests/conftest.py)
    if gj.cuda.is_available():
        assert "OK cuda tensors through host copies" in output, output
    assert output.rstrip().endswith("DONE") or "\nDONE" in output, output


@pytest.mark.parametrize("mode, message", [
    ("raise", "rank 1 of 2 raised ValueError; aborting the job"),
    ("timeout-eager", "did not complete on rank 0 of 2 within the timeout of 1.5 s"),
    ("timeout-compiled", "all_reduce of f32[4] timed out"),
])
def test_a_failing_rank_ends_the_job(mode, message):
    status, output, seconds = run_mpi("mpi_failure.py", mode, timeout=300)
    assert status != 0, output
    assert message in output, output
    assert "MPI_Abort" in output, output
    assert "should not get here" not in output, output


def test_the_data_parallel_example_trains_and_reports_each_rank():
    # Eager: the compiled step is the one mpi_training.py checks (and compiling it costs
    # CI about a minute on two cores).
    status, output, _ = run_mpi("../../examples/train_distributed.py", "--epochs", "2",
                                "--eager")
    assert status == 0, output
    losses = [float(v) for v in re.findall(r"epoch \d+: loss (\S+)", output)]
    assert len(losses) == 2 and losses[1] < losses[0], output
    for rank in range(RANKS):
        assert re.search(rf"rank {rank}: \d+\.\d+ ms per step, \d+ samples/s", output), output
    assert "replicas identical: True" in output, output
