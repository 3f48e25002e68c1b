"""[OpenBLAS core type] in graphjit/_blas.py: importing graphjit, compiling and running a
program (parallel loops, a GEMM big enough for OpenBLAS's threads) leaves the process
environment exactly as it was, ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` included, and
OpenBLAS runs the kernels the user's variable names; ``graphjit dump --profile`` only says
when they are below the CPU's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from graphjit import _blas

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AVX2 = {"fpu", "sse2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}

# The whole environment twice, os.environ and the C library's own ``environ`` (what libgomp
# and OpenBLAS read; os.putenv changes only that one), around everything graphjit does.
CHILD = textwrap.dedent("""\
    import ctypes, json, os

    def c_environ():
        env = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
        out, i = {}, 0
        while env[i] is not None:
            key, _, value = env[i].decode("utf-8", "surrogateescape").partition("=")
            out[key] = value
            i += 1
        return out

    before = (dict(os.environ), c_environ())
    import numpy as np
    import graphjit
    from graphjit import _blas
    from graphjit.backend.cpu import compile_graph
    from graphjit.ir import parse_graph
    program = compile_graph(parse_graph('''
    graph f(%x: f32[128,256] {arg}, %w: f32[256,512] {arg}) {
      %0 = matmul(%x, %w) : f32[128,512]
      %1 = tanh(%0) : f32[128,512]
      return %1
    }'''))
    x, w = np.ones((128, 256), np.float32), np.ones((256, 512), np.float32) / 256
    for _ in range(20):
        program([x, w])
    after = (dict(os.environ), c_environ())
    from graphjit.backend.cpu.blas import program_openblas
    blas = program_openblas()
    print(json.dumps({"same": [a == b for a, b in zip(before, after)],
                      "changed": sorted(k for a, b in zip(before, after)
                                        for k in set(a) | set(b) if a.get(k) != b.get(k)),
                      "parallel": program.source.count("prange("),
                      "corename": blas.corename() if blas else None}))
""")


def _child(**env):
    full = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                GRAPHJIT_PARALLEL_MIN="1")
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    done = subprocess.run([sys.executable, "-c", CHILD], env=full, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_graphjit_leaves_the_environment_as_it_is():
    # The environment as it is, without the OpenMP variables graphjit used to set.
    report = _child(GOMP_SPINCOUNT=None, OMP_WAIT_POLICY=None)
    assert report["parallel"] >= 1
    assert report["same"] == [True, True], report["changed"]


@pytest.mark.skipif(not {"avx2", "fma"} <= _blas.cpu_flags(),
                    reason="OPENBLAS_CORETYPE=Haswell needs an AVX2 CPU")
def test_a_core_type_the_user_set_is_the_one_that_runs():
    report = _child(OPENBLAS_CORETYPE="Haswell", OPENBLAS_L2_SIZE="1048576")
    assert report["same"] == [True, True], report["changed"]
    if report["corename"] is not None:
        assert report["corename"].lower() == "haswell"  # never replaced, AVX-512 or not


@pytest.mark.parametrize("corename, flags, env, says", [
    ("Haswell", AVX512, {"OPENBLAS_CORETYPE": "Haswell"}, "OPENBLAS_CORETYPE=Haswell"),
    ("Zen", AVX512, {}, "no AVX-512 kernels"),
    ("Haswell", AVX2, {"OPENBLAS_CORETYPE": "Haswell"}, None),  # no AVX-512: Haswell is right
    ("Haswell", AVX512 - {"avx512vl"}, {}, None),  # a subset the kernels need is missing
    ("SkylakeX", AVX512, {}, None),
    ("SapphireRapids", AVX512, {}, None),
    (None, AVX512, {}, None),  # not an OpenBLAS graphjit could ask
])
def test_the_profile_note_on_openblas_kernels(corename, flags, env, says):
    note = _blas.kernel_note(corename, flags, env)
    if says is None:
        assert note is None
    else:
        assert says in note and corename in note and "AVX-512" in note


def test_cpu_flags_reads_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert _blas.cpu_flags(str(info)) == {"fpu", "avx2", "avx512f"}
    assert _blas.cpu_flags(str(tmp_path / "missing")) == set()


def test_dump_profile_says_why_the_products_run_below_the_cpus_rate(monkeypatch):
    from graphjit import profile

    class Lib:
        def corename(self):
            return "Haswell"
    from graphjit.backend.cpu import blas
    monkeypatch.setattr(blas, "program_openblas", lambda: Lib())
    monkeypatch.setattr(_blas, "cpu_flags", lambda: AVX512)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    note = profile.openblas_note()
    assert "Haswell (AVX2) kernels on a CPU with AVX-512" in note
    assert "OPENBLAS_CORETYPE=Haswell in the environment" in note
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # said, not changed
    monkeypatch.setattr(_blas, "cpu_flags", lambda: AVX2)
    assert profile.openblas_note() is None
