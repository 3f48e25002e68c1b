"""[OpenBLAS core type] in graphjit/_blas.py: an inherited AVX2 core type is replaced by
SkylakeX only on a CPU with the AVX-512 subsets those kernels use; anything else is kept."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from graphjit import _blas

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AVX2 = {"fpu", "sse2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}


@pytest.mark.parametrize("current, flags, expected", [
    ("Haswell", AVX512, "SkylakeX"),
    ("haswell", AVX512, "SkylakeX"),
    ("Zen", AVX512, "SkylakeX"),
    ("Haswell", AVX2, None),                        # no AVX-512: Haswell is right
    ("Haswell", AVX512 - {"avx512vl"}, None),       # a subset the kernels need is missing
    ("SkylakeX", AVX512, None),
    ("SapphireRapids", AVX512, None),               # a newer choice of the user's
    (None, AVX512, None),                           # unset: OpenBLAS picks by itself
])
def test_better_coretype(current, flags, expected):
    assert _blas.better_coretype(current, flags) == expected


def test_cpu_flags_reads_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert _blas.cpu_flags(str(info)) == {"fpu", "avx2", "avx512f"}
    assert _blas.cpu_flags(str(tmp_path / "missing")) == set()


CHILD = ("import os, graphjit\nfrom graphjit import _blas\n"
         "print(os.environ.get('OPENBLAS_CORETYPE'), _blas.REPLACED)")


def _in_child(**env):
    full = dict(os.environ, PYTHONPATH=REPO)
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    out = subprocess.run([sys.executable, "-c", CHILD], env=full, cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.split()


def test_import_replaces_only_an_outclassed_core_type():
    has_avx512 = _blas._AVX512 <= _blas.cpu_flags()
    want = ["SkylakeX", "Haswell"] if has_avx512 else ["Haswell", "None"]
    assert _in_child(OPENBLAS_CORETYPE="Haswell", GRAPHJIT_OPENBLAS_CORETYPE=None) == want
    assert _in_child(OPENBLAS_CORETYPE="Haswell", GRAPHJIT_OPENBLAS_CORETYPE="keep") == [
        "Haswell", "None"]
    assert _in_child(OPENBLAS_CORETYPE=None) == ["None", "None"]
