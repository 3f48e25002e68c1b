"""The CUDA kernels compile for a real GPU (sm_90), checked without one: gpu_kernels.py
runs in a subprocess with the real ``numba.cuda`` target (the simulator tests beside this
file need the simulator on) and compiles kernels through Numba, NVVM and ptxas.

It needs NVVM, NVRTC and ptxas (``pip install graphjit[cuda12]`` brings them as wheels;
CI installs that extra); without them the tests skip, saying so. The default run checks
a subset (every training step's kernels, one eager program per op, the compiled rows of
one dtype); ``python tests/cuda/gpu_kernels.py --all`` checks every kernel the op table
and training tests make (see the README's CUDA section for the last full run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _toolchain_missing() -> str | None:
    probe = ("from numba import cuda\n"
             "def k(a):\n    a[0] = 1.0\n"
             "cuda.compile_ptx(k, 'void(float32[::1])', cc=(9, 0))\n"
             "from graphjit.backend.cuda.ptx import find_ptxas\n"
             "assert find_ptxas(), 'no ptxas'\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                       timeout=300)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    missing = _toolchain_missing()
    if missing:
        pytest.skip(f"no CUDA compiler toolchain (install graphjit[cuda12]): {missing}")
    out = tmp_path_factory.mktemp("ptx") / "reports.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    r = subprocess.run([sys.executable, os.path.join(HERE, "gpu_kernels.py"), "--self-check",
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=1200)
    if not out.exists():
        pytest.fail(f"gpu_kernels.py wrote nothing (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    data = json.loads(out.read_text())
    data["stdout"] = r.stdout
    data["returncode"] = r.returncode
    return data


def test_every_checked_kernel_compiles_for_sm90(reports):
    assert reports["kernels"] > 150, reports["stdout"]  # the subset is not empty
    programs = {r["program"].split()[0] for r in reports["reports"]}
    assert {"mlp", "rnn", "eager"} <= programs
    bad = [f"{r['program']}: {r['text']}" for r in reports["reports"] if r["error"] or r["problems"]]
    assert not bad, "\n".join(bad)
    assert reports["returncode"] == 0, reports["stdout"]


def test_resources_within_a_blocks_share(reports):
    # 256-thread blocks: every kernel must fit in a block's registers (65536 per SM, so
    # 255 per thread is the hard limit) and static shared memory (48 KiB).
    for r in reports["reports"]:
        assert r["registers"] is not None and 0 < r["registers"] <= 255, r["text"]
        assert r["shared_bytes"] <= 48 * 1024, r["text"]
    # The tree reductions stage one value per thread: some kernel uses shared memory.
    assert reports["max_shared_bytes"] >= 256 * 4


def test_the_checker_reports_what_a_gpu_would_refuse(reports):
    checks = {c["name"]: c for c in reports["self_check"]}
    good = checks["shared tree"]
    assert good["error"] is None and not good["problems"], good["text"]
    assert good["shared_bytes"] == 256 * 4 and good["registers"] > 0  # ptxas's own counts
    typing = checks["type error"]
    assert typing["error"] and "TypingError" in typing["error"], typing["text"]
    big = checks["too much shared memory"]
    assert big["error"] or big["problems"], big["text"]
    assert "shared" in (big["error"] or " ".join(big["problems"])).lower()
