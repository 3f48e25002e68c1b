"""Kernels shared between programs ([Kernel modules] in graphjit/backend/cpu/codegen.py).

Three graphs hold the same fused loop (``tanh(x * y) + x``) under other value names, next
to different other work: their programs import one kernel module. In one process the
kernel is compiled once; in a new process Numba's cache holds it for a program never
compiled before; a corrupted kernel module or cache entry is rebuilt. Every program is
checked against the reference interpreter (``ir.run_graph``).
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from graphjit.backend import cache, numba_cache, source
from graphjit.backend.cpu import compile_graph, generate
from graphjit.ir import parse_graph, run_graph, verify
from graphjit.testing import assert_close

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

CHAIN = """\
  %{p}0 = mul(%{x}, %{y}) : f32[3,4]
  %{p}1 = tanh(%{p}0) : f32[3,4]
  %{p}2 = add(%{p}1, %{x}) : f32[3,4]
"""
ALONE = ("graph share_a(%x: f32[3,4] {arg}, %y: f32[3,4] {arg}) {\n"
         + CHAIN.format(p="t", x="x", y="y") + "  return %t2\n}")
THEN_MATMUL = ("graph share_b(%a: f32[3,4] {arg}, %b: f32[3,4] {arg}, %w: f32[4,2] {arg}) {\n"
               + CHAIN.format(p="u", x="a", y="b")
               + "  %u3 = matmul(%u2, %w) : f32[3,2]\n  return %u3, %u2\n}")
MATMUL_BEFORE = ("graph share_c(%w: f32[2,3] {arg}, %p: f32[3,4] {arg}, %q: f32[3,4] {arg}) {\n"
                 + CHAIN.format(p="v", x="p", y="q")
                 + "  %v3 = matmul(%w, %v2) : f32[2,4]\n  return %v3\n}")

# Compiles each graph text of argv[1] (a JSON list) after fusion, runs it on random inputs
# against the interpreter, and prints per program Numba's cache [hits, misses] of its driver
# and of its fused kernel (``k<node>_fused`` in the program module).
SCRIPT = textwrap.dedent("""\
    import json, sys
    import numpy as np
    from graphjit.backend.cpu import compile_graph
    from graphjit.ir import parse_graph, run_graph
    from passes.fuse import fuse

    rng = np.random.default_rng(0)
    report = []
    for text in json.loads(sys.argv[1]):
        g = parse_graph(text)
        fuse(g)
        p = compile_graph(g)
        xs = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
        got, want = p(xs)[0], run_graph(g, xs)[0]
        names = p.dispatcher.py_func.__globals__
        (k,) = [d for n, d in names.items() if n.startswith("k") and n.endswith("_fused")]
        stats = lambda d: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
        ok = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got, want))
        report.append({"ok": ok, "driver": stats(p.dispatcher), "kernel": stats(k),
                       "kernel_file": k.py_func.__code__.co_filename})
    print(json.dumps(report))
""")


def fused(text):
    from passes.fuse import fuse
    g = parse_graph(text)
    fuse(g)
    verify(g)
    assert [n.op.name for n in g.nodes].count("fused") == 1
    return g


def check_values(program, graph, rng):
    xs = [rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs]
    got, want = program(xs)[0], run_graph(graph, xs)[0]
    for a, e in zip(got, want):
        assert_close(a, e, rtol=1e-5, atol=1e-6)


def the_fused_kernel(program):
    """The dispatcher the program module imported for its fused node."""
    names = program.dispatcher.py_func.__globals__
    (name,) = [n for n in names if n.startswith("k") and n.endswith("_fused")]
    return names[name]


def test_a_second_program_with_the_same_kernel_does_not_compile_it(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path))
    g1, g2 = fused(ALONE), fused(THEN_MATMUL)
    p1 = compile_graph(g1)
    p2 = compile_graph(g2)
    assert p1.path != p2.path
    k = the_fused_kernel(p1)
    assert the_fused_kernel(p2) is k  # one module, one dispatcher
    check_values(p1, g1, rng)
    check_values(p2, g2, rng)
    # A read-only, Fortran-ordered input is flattened into a writeable C array before the
    # driver sees it: no second signature for the driver, none for the kernel.
    a = np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32))
    a.flags.writeable = False
    b, w = rng.standard_normal((3, 4)).astype(np.float32), np.ones((4, 2), np.float32)
    p2([a, b, w])
    assert len(k.signatures) == 1 and len(p2.dispatcher.signatures) == 1
    # Compiled once, by the first program (the folder is new: nothing in Numba's cache).
    assert sum(k.stats.cache_misses.values()) == 1 and not k.stats.cache_hits
    # The kernel is in its own content-named module, next to the programs' modules, and
    # each program's source shows its text.
    path = k.py_func.__code__.co_filename
    assert os.path.dirname(path) == os.path.dirname(p1.path) == os.path.dirname(p2.path)
    with open(path, encoding="utf-8") as f:
        kernel_text = f.read()
    assert os.path.basename(path) == source.module_file_name(kernel_text, "kernel")
    body = kernel_text.split("def k(in0, in1, out):\n")[1]
    for program in (p1, p2):
        assert os.path.basename(path) in program.source and body in program.source


def test_the_kernel_text_holds_its_flags():
    g = fused(ALONE)
    plain = generate(g).kernel_sources[0]
    fast = generate(g, fastmath=True).kernel_sources[0]
    assert "fastmath" not in plain and "fastmath={" in fast
    assert source.module_file_name(plain, "kernel") != source.module_file_name(fast, "kernel")
    # Value names and graph names are not part of it.
    assert generate(fused(THEN_MATMUL)).kernel_sources[0] == plain


def _run(tmp_path, texts):
    # (Kernel bundles off: these runs are about Numba's own cache of each kernel.)
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=str(tmp_path / "cache"), GRAPHJIT_PARALLEL_MIN="1",
               GRAPHJIT_KERNEL_BUNDLES="0", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(texts)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stderr}"
    report = json.loads(done.stdout)
    assert all(r["ok"] for r in report), report
    return report


def test_a_new_process_loads_a_shared_kernel_from_the_cache_and_rebuilds_a_corrupted_one(
        tmp_path, monkeypatch, rng):
    # Parallel kernels (GRAPHJIT_PARALLEL_MIN=1): a driver compiled against a kernel
    # loaded from Numba's cache must still start the thread pool when it is itself loaded
    # from the cache (see _keep_reload_hooks in backend/source.py; it used to segfault).
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHJIT_PARALLEL_MIN", "1")
    g1 = fused(ALONE)
    first = compile_graph(g1)
    check_values(first, g1, rng)
    kernel_path = the_fused_kernel(first).py_func.__code__.co_filename
    assert "prange" in open(kernel_path, encoding="utf-8").read()

    # A new process, a program never compiled: its driver is compiled, the kernel loaded.
    (b,) = _run(tmp_path, [THEN_MATMUL])
    assert b["kernel_file"] == kernel_path
    assert b["kernel"] == [1, 0] and b["driver"] == [0, 1], b

    # Corrupt the kernel's module file and its Numba data (still a valid pickle, machine
    # code garbled: unchecked, Numba would crash), as tests/backend/test_disk_cache.py does.
    with open(kernel_path, "rb") as f:
        pristine = f.read()
    with open(kernel_path, "wb") as f:
        f.write(pristine[:len(pristine) // 2])
    stem = os.path.splitext(os.path.basename(kernel_path))[0]
    numba_folder = cache.numba_cache_folder(os.path.dirname(kernel_path))
    (data,) = glob.glob(os.path.join(numba_folder, f"{stem}.*.nbc"))
    blob = bytearray(open(data, "rb").read())
    for i in range(len(blob) // 3, len(blob) // 3 + 64):
        blob[i] ^= 0x5A
    open(data, "wb").write(bytes(blob))

    # The cached program runs first: its driver is loaded, its kernel's entry fails the
    # checksum and is rebuilt (the driver calls the kernel by address, so it needs the
    # kernel's own entry: [Kernel calls by address]); the module file was rewritten before
    # the first import. Then one more program finds that kernel compiled in the process.
    again, c = _run(tmp_path, [THEN_MATMUL, MATMUL_BEFORE])
    assert again["driver"] == [1, 0] and again["kernel"] == [0, 1], again
    assert c["kernel_file"] == kernel_path
    assert c["kernel"] == [0, 1] and c["driver"] == [0, 1], c
    with open(kernel_path, "rb") as f:
        assert f.read() == pristine
    (data,) = glob.glob(os.path.join(numba_folder, f"{stem}.*.nbc"))
    with open(data, "rb") as f:
        numba_cache.unseal(f.read(), data)  # a whole, checked entry again


def test_one_update_kernel_serves_every_size():
    """[Flat trip counts] in backend/cpu/fused.py: the same flat update over buffers of
    different sizes (an optimizer's per-parameter update) is one kernel, its trip count
    read from the buffer; a loop with index arithmetic (broadcasting) keeps its constants."""
    from passes.dce import dce
    from passes.fuse import fuse
    text = """
    graph sizes(%p: f32[10] {param}, %g: f32[10] {grad}, %q: f32[3,7] {param}, %h: f32[3,7] {grad}, %lr: f32[] {hyper}, %b: f32[7] {arg}) {
      %0 = mul(%g, %lr) : f32[10]
      %1 = sub(%p, %0) : f32[10]
      %2 = mul(%h, %lr) : f32[3,7]
      %3 = sub(%q, %2) : f32[3,7]
      %4 = add(%q, %b) : f32[3,7]
      %5 = tanh(%4) : f32[3,7]
      return %5
      update %p <- %1
      update %q <- %3
    }"""
    graph = dce.run(fuse.run(parse_graph(text)))
    generated = generate(graph)
    updates = [t for t in generated.kernel_sources if "len(" in t]
    assert len(updates) == 1, generated.source
    broadcast = [t for t in generated.kernel_sources if "tanh" in t]
    assert len(broadcast) == 1 and "len(" not in broadcast[0] and "range(3)" in broadcast[0]
    program = compile_graph(graph)
    rng = np.random.default_rng(5)
    inputs = [rng.normal(size=s).astype(np.float32) for s in ((10,), (10,), (3, 7), (3, 7))]
    inputs += [np.float32(0.1), rng.normal(size=7).astype(np.float32)]
    expected = run_graph(parse_graph(text), inputs)
    got = program(inputs)
    for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
        assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_a_kernel_using_the_helpers_names_their_version(monkeypatch):
    """Numba compiles vmath (with vmath_llvm) and accumulate into each kernel's cache entry,
    so editing them must give kernels new files (and new cache entries), not stale code."""
    from graphjit.backend.cpu import codegen
    graph = parse_graph("graph h(%x: f32[8] {arg}) {\n  %0 = exp(%x) : f32[8]\n  return %0\n}")
    before = generate(graph).kernel_sources
    assert len(before) == 1 and \
        f"# helpers (vmath.py, vmath_llvm.py, accumulate.py): {codegen._helpers_hash()}" \
        in before[0]
    for key in list(codegen._HASHES):
        monkeypatch.setitem(codegen._HASHES, key, "0" * 16)
    after = generate(graph).kernel_sources
    assert source.module_file_name(after[0], "kernel") != source.module_file_name(before[0], "kernel")
    plain = parse_graph("graph n(%x: f32[8] {arg}) {\n  %0 = neg(%x) : f32[8]\n  return %0\n}")
    assert "helpers" not in generate(plain).kernel_sources[0]


def test_a_program_module_names_the_version_of_the_drivers_intrinsics(monkeypatch):
    """Numba compiles native.py's intrinsics (load_address, buffer_view, run_kernel) into
    each driver's cache entry: editing them must give program modules new files."""
    from graphjit.backend.cpu import codegen
    graph = parse_graph("graph d(%x: f32[8] {arg}) {\n  %0 = neg(%x) : f32[8]\n  return %0\n}")
    before = generate(graph).module_source
    assert f"# helpers (native.py): {codegen._driver_helpers_hash()}" in before
    for key in list(codegen._HASHES):
        monkeypatch.setitem(codegen._HASHES, key, "0" * 16)
    after = generate(graph).module_source
    assert source.module_file_name(after, "d") != source.module_file_name(before, "d")
