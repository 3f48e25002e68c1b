"""The on-disk compile cache ([Generated modules on disk] in graphjit/backend/source.py).

Every check runs ``SCRIPT`` in fresh processes (a new process is what a cache is for), with
``GRAPHJIT_CACHE_DIR`` in the test's folder: it compiles and runs a small forward+backward
program (a fused node each) and prints one JSON line: correct results or not, and Numba's
cache hits and misses of the two drivers (a miss: Numba compiled it in this process).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from graphjit import cli
from graphjit.backend import cache

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""\
    import json, os, sys, time
    import numpy as np
    import graphjit as gj

    # With a second argument SYNC: wait until two processes are ready to compile.
    if len(sys.argv) > 2:
        open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()
        deadline = time.time() + 60
        while len(os.listdir(sys.argv[2])) < 2 and time.time() < deadline:
            time.sleep(0.01)
    an = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    bn = np.linspace(2, -1, 12, dtype=np.float32).reshape(3, 4)
    z = an * bn + 1
    f = gj.compile(lambda a, b: (a * b + 1).relu().sum())
    a, b = gj.tensor(an, requires_grad=True), gj.tensor(bn, requires_grad=True)
    loss = f(a, b)
    loss.backward()
    (entry,) = [e for es in f._cache.values() for e in es]
    programs = [entry.program, entry.bw_program]
    print(json.dumps({
        "ok": bool(np.allclose(loss.item(), np.maximum(z, 0).sum(), rtol=1e-5)
                   and np.allclose(a.grad.numpy(), bn * (z > 0))
                   and np.allclose(b.grad.numpy(), an * (z > 0))),
        "hits": [sum(p.dispatcher.stats.cache_hits.values()) for p in programs],
        "misses": [sum(p.dispatcher.stats.cache_misses.values()) for p in programs],
        "ops": [[n.op.name for n in p.graph.nodes] for p in programs],
        "paths": [p.path for p in programs]}))
""")


def _env(tmp_path, **extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TMPDIR=os.path.join(tmp_path, "tmp"))  # a fallback folder inside the test's folder
    env.pop("NUMBA_CACHE_DIR", None)
    # These tests are about Numba's cache files; bundles (tests/backend/cpu/
    # test_kernel_bundle.py) would serve the machine code without reading them.
    env["GRAPHJIT_KERNEL_BUNDLES"] = "0"
    env.update(extra)
    os.makedirs(env["TMPDIR"], exist_ok=True)
    return env


def _start(tmp_path, folder, sync=None, **extra):
    """A process running SCRIPT with ``folder`` as its GRAPHJIT_CACHE_DIR."""
    env = _env(tmp_path, GRAPHJIT_CACHE_DIR=str(folder), **extra)
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(folder)]
                            + ([str(sync)] if sync else []), env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(process):
    """SCRIPT's report, and its stderr."""
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, f"exit status {process.returncode}\n{err}"
    return json.loads(out), err


def _run(tmp_path, folder, **extra):
    return _result(_start(tmp_path, folder, **extra))


def _numba_files(folder):
    return sorted(n for n in os.listdir(os.path.join(folder, "cpu", "__pycache__"))
                  if n.endswith((".nbi", ".nbc")))


class Seeded:
    """A cache folder written by one process (the first compile of the program), and a copy
    of it to put it back from. Cached programs are found only at the path they were
    compiled at (see import_module), so tests reuse that path, one after another."""

    def __init__(self, top):
        self.folder = str(top / "cache")
        self.first, _ = _run(top, self.folder)
        self.pristine = str(top / "pristine")
        shutil.copytree(self.folder, self.pristine)

    def restore(self) -> str:
        shutil.rmtree(self.folder)
        shutil.copytree(self.pristine, self.folder)
        return self.folder


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    return Seeded(tmp_path_factory.mktemp("seeded"))


def test_first_process_compiles_into_the_cache_folder(seeded):
    result = seeded.first
    assert result["ok"] and result["misses"] == [1, 1] and result["hits"] == [0, 0]
    assert all("fused" in ops for ops in result["ops"])  # forward and backward both fused
    cpu = os.path.join(seeded.folder, "cpu")
    assert all(os.path.dirname(p) == cpu for p in result["paths"])
    # Each program module imports its one kernel from a module of its own ([Kernel modules]
    # in backend/cpu/codegen.py), next to it.
    assert len([n for n in os.listdir(cpu) if n.startswith("kernel_") and n.endswith(".py")]) == 2
    # Numba's index and data file per driver and per kernel, next to the modules, inside
    # the cache folder.
    assert len(_numba_files(seeded.pristine)) == 8


def test_a_new_process_loads_the_compiled_program_from_the_cache(seeded, tmp_path):
    result, _ = _run(tmp_path, seeded.restore())
    assert result["ok"] and result["hits"] == [1, 1] and result["misses"] == [0, 0]
    assert result["paths"] == seeded.first["paths"]


def test_a_moved_cache_folder_is_compiled_again(seeded, tmp_path):
    # Its cached code names its module after the old folder (see import_module): Numba's
    # load fails (ModuleNotFoundError), which is a miss.
    shutil.copytree(seeded.pristine, tmp_path / "moved")
    result, _ = _run(tmp_path, tmp_path / "moved")
    assert result["ok"] and result["misses"] == [1, 1]


def _flip(path, at):
    data = bytearray(open(path, "rb").read())
    for i in range(at, at + 64):
        data[i % len(data)] ^= 0x5A
    open(path, "wb").write(bytes(data))


def _corrupt(folder, kind):
    cpu = os.path.join(folder, "cpu")
    (module,) = [os.path.join(cpu, n) for n in os.listdir(cpu)
                 if "forward" in n and n.endswith(".py")]
    (index,) = [os.path.join(cpu, "__pycache__", n) for n in _numba_files(folder)
                if "forward" in n and n.endswith(".nbi")]
    data = index[:-len(".nbi")] + ".1.nbc"
    if kind == "module truncated":
        text = open(module, "rb").read()
        open(module, "wb").write(text[:len(text) // 2])
    elif kind == "module binary garbage":
        open(module, "wb").write(os.urandom(2000) + b"\xff\xfe")
    elif kind == "module syntax error":
        open(module, "a", encoding="utf-8").write("def (:\n")
    elif kind == "module code garbled":  # its code object, kept beside it (source.py)
        _flip(module + "code", os.path.getsize(module + "code") // 2)
    elif kind == "module code of another module":  # sealed and whole, but not its text's
        (other,) = [os.path.join(cpu, n) for n in os.listdir(cpu)
                    if "backward" in n and n.endswith(".pycode")]
        shutil.copyfile(other, module + "code")
    elif kind == "index truncated":
        os.truncate(index, 100)
    elif kind == "index garbage":
        open(index, "wb").write(os.urandom(os.path.getsize(index)))
    elif kind == "data truncated":
        os.truncate(data, os.path.getsize(data) // 2)
    elif kind == "data bytes flipped":
        # Still a valid pickle, machine code garbled: unchecked, Numba segfaults or aborts.
        _flip(data, os.path.getsize(data) // 3)
    else:
        raise AssertionError(kind)


MODULE_KINDS = ["module truncated", "module binary garbage", "module syntax error",
                "module code garbled", "module code of another module"]
NUMBA_KINDS = ["index truncated", "index garbage", "data truncated", "data bytes flipped"]


@pytest.fixture(scope="module")
def recovered(seeded):
    """Per corruption kind (of the forward program's files): the seeded cache, corrupted,
    run by one process; for Numba's files, then by another, which finds the rebuilt entry."""
    results = {}
    for kind in MODULE_KINDS + NUMBA_KINDS:
        folder = seeded.restore()
        _corrupt(folder, kind)
        first, _ = _run(os.path.dirname(folder), folder)
        again = _run(os.path.dirname(folder), folder)[0] if kind in NUMBA_KINDS else None
        with open(first["paths"][0], "rb") as f:
            text = f.read()
        results[kind] = first, again, text, _numba_files(folder)
    return results


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_a_corrupted_module_file_is_rewritten(kind, recovered, seeded):
    first, _, text, _ = recovered[kind]
    # The text is checked and rewritten before the import; Numba's cache is keyed on the
    # contents, so it is still valid for the rewritten file.
    assert first["ok"] and first["hits"] == [1, 1], first
    name = os.path.basename(first["paths"][0])
    with open(os.path.join(seeded.pristine, "cpu", name), "rb") as f:
        assert text == f.read()


@pytest.mark.parametrize("kind", NUMBA_KINDS)
def test_a_corrupted_numba_cache_file_is_rebuilt(kind, recovered, seeded):
    first, again, _, numba_files = recovered[kind]
    # The forward's entry fails to load (Numba raises, or the checksum fails): compiled
    # again; the backward's is intact.
    assert first["ok"] and first["misses"] == [1, 0] and first["hits"] == [0, 1], first
    assert again["ok"] and again["hits"] == [1, 1] and again["misses"] == [0, 0], again
    assert numba_files == _numba_files(seeded.pristine)


def test_two_processes_compiling_into_one_empty_folder_at_once(tmp_path):
    folder, sync = tmp_path / "cache", tmp_path / "sync"
    sync.mkdir()
    both = [_start(tmp_path, folder, sync) for _ in range(2)]
    results = [_result(p)[0] for p in both]
    for r in results:
        # Each driver compiled or loaded once: the process that finishes its kernels
        # first may save a driver before the other looks it up (a driver holds no kernel
        # code to compile: [Kernel calls by address]), so which one it is varies.
        assert r["ok"] and [h + m for h, m in zip(r["hits"], r["misses"])] == [1, 1], r
    assert results[0]["paths"] == results[1]["paths"]
    # What they left is a whole, valid cache: a third process compiles nothing.
    third, _ = _run(tmp_path, folder)
    assert third["ok"] and third["hits"] == [1, 1]
    assert len(_numba_files(folder)) == 8  # two drivers, two kernels
    leftovers = [n for n in os.listdir(folder / "cpu") + _numba_files(folder) if "tmp" in n]
    assert not leftovers


def test_an_unusable_cache_folder_falls_back_to_the_temp_folder(tmp_path):
    # A file where the folder should be: unusable even for root (a permission test is not).
    (tmp_path / "cache").write_text("not a folder")
    result, err = _run(tmp_path, tmp_path / "cache")
    assert result["ok"]
    assert err.count("cannot use the compile cache folder") == 1, err
    assert all(p.startswith(str(tmp_path / "tmp")) for p in result["paths"])


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() == 0,
                    reason="root ignores permissions")
def test_a_folder_without_write_permission_falls_back(tmp_path):
    (tmp_path / "cache").mkdir(mode=0o500)
    try:
        result, err = _run(tmp_path, tmp_path / "cache")
    finally:
        (tmp_path / "cache").chmod(0o700)
    assert result["ok"] and err.count("cannot use the compile cache folder") == 1, err


def test_numba_cache_dir_is_respected(tmp_path, monkeypatch):
    from numba.core import config
    folder, numba_dir = tmp_path / "cache", tmp_path / "numba"
    result, _ = _run(tmp_path, folder, NUMBA_CACHE_DIR=str(numba_dir))
    assert result["ok"] and result["misses"] == [1, 1]
    assert not os.path.exists(folder / "cpu" / "__pycache__")
    monkeypatch.setattr(config, "CACHE_DIR", str(numba_dir))
    numba_folder = cache.numba_cache_folder(str(folder / "cpu"))
    assert numba_folder.startswith(str(numba_dir))
    assert len([n for n in os.listdir(numba_folder) if n.endswith(".nbi")]) == 4  # + 2 kernels


def test_cache_info_and_clear(seeded, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "cache"
    shutil.copytree(seeded.pristine, copy)
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(copy))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    # Two program modules and their two kernel modules, Numba's runtime (the seeded cache
    # was written with bundles off, see _env).
    assert str(copy) in out and "4 generated modules, 8 Numba cache files, 0 bundles" in out
    assert "1 runtime" in out
    # A run with bundles: a bundle of each program's kernel, and one of each driver.
    _run(tmp_path, copy, GRAPHJIT_KERNEL_BUNDLES="1")
    assert cli.main(["cache", "info"]) == 0
    assert "8 Numba cache files, 4 bundles (kernels, drivers), 1 runtime" in capsys.readouterr().out
    assert cli.main(["cache", "clear"]) == 0
    assert os.listdir(copy) == []


def test_the_default_cache_folder_is_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHJIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_root() == str(tmp_path / "xdg" / "graphjit")
    assert cache.cache_dir("cpu") == str(tmp_path / "xdg" / "graphjit" / "cpu")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if sys.platform.startswith("linux"):
        assert cache.default_cache_root() == str(tmp_path / "home" / ".cache" / "graphjit")
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.default_cache_root() == str(tmp_path / "mine")


CUDA_CACHE_SCRIPT = textwrap.dedent("""
    import os, sys
    from numba import types
    from graphjit.backend.source import import_module
    path = os.path.join(sys.argv[1], "kmod.py")
    with open(path, "w") as f:
        f.write("from numba import cuda\\n\\n@cuda.jit(cache=True)\\ndef k(a):\\n    a[0] = 1\\n")
    kernel = import_module(path).k
    cache = kernel._cache
    index = cache._cache_file._index_path
    os.makedirs(os.path.dirname(index), exist_ok=True)
    with open(index, "wb") as f:
        f.write(b"not a pickle")
    loaded = cache.load_overload((types.float32[::1],), kernel.targetctx)
    print(type(kernel).__name__, getattr(cache, "_graphjit_guarded", False), loaded,
          os.path.exists(index))
""")


def test_a_corrupted_cuda_kernel_cache_entry_is_a_miss(tmp_path):
    """numba-cuda's kernels have a dispatcher and cache of their own (not numba.core's): a
    garbled index is deleted and the load is a miss, not an error at the kernel's first
    launch. Real numba-cuda (no GPU needed to make a kernel and read its cache)."""
    pytest.importorskip("numba.cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-c", CUDA_CACHE_SCRIPT, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["CUDADispatcher", "True", "None", "False"]
