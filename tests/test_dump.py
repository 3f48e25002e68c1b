"""The IR dump tool: ``graphjit dump``, ``GRAPHJIT_DUMP``, ``CompiledFunction.lower`` and
``graphjit cache``. Scripts run in subprocesses (a fresh process, as a user runs them)."""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphjit as gj
from graphjit.ir import parse_graph, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP_SCRIPT = textwrap.dedent("""
    import graphjit as gj
    import graphjit.nn as nn
    import graphjit.nn.functional as F

    gj.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    model[0].bias.requires_grad_(False)          # frozen: the report must say so
    opt = gj.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    @gj.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    @gj.compile
    def forward(x):
        return model(x).tanh().sum()

    x, y = gj.randn(4, 8), gj.tensor([0, 1, 2, 3])
    for _ in range(3):
        step(x, y)
    forward(x).backward()
""")


def graphjit_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "graphjit", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd or ROOT, env=env)


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    """The step script dumped once with every format."""
    work = tmp_path_factory.mktemp("dump")
    script = work / "train.py"
    script.write_text(STEP_SCRIPT)
    out = work / "out"
    r = graphjit_cli("dump", str(script), "--out", str(out), "--report")
    assert r.returncode == 0, r.stderr
    return out, r


def _stage_files(folder):
    return sorted(f for f in os.listdir(folder) if re.match(r"\d\d_\w+\.txt$", f))


def test_one_folder_per_function_and_signature_with_every_file(dumped):
    out, r = dumped
    # step: the one-shot first step and the steady state; forward: one signature.
    assert sorted(os.listdir(out)) == ["forward_1", "step_1", "step_2"]
    stages = ["00_trace", "01_autodiff", "02_decompose", "03_simplify", "04_cse", "05_batch", "06_dce",
              "07_fuse", "08_gemm", "09_dce", "10_memory"]
    for name in ("step_1", "step_2"):
        files = set(os.listdir(out / name))
        assert {f"{s}.txt" for s in stages} <= files
        assert {"kernels.py", "graph.dot", "graph.json", "report.txt"} <= files
    files = set(os.listdir(out / "forward_1"))
    assert {"11_forward.txt", "12_backward.txt", "kernels_forward.py", "kernels_backward.py",
            "forward.dot", "backward.dot", "forward.json", "backward.json"} <= files
    assert "compiled function step, trace 2" in r.stdout  # --report prints the reports


def test_ir_files_parse_back_and_verify(dumped):
    out, _ = dumped
    for name in os.listdir(out):
        for f in _stage_files(out / name):
            text = (out / name / f).read_text()
            g = parse_graph(text)
            if not f.startswith("00_"):
                verify(g)  # the trace still holds grad requests, which verify too
            assert text.strip() == __import__("graphjit").ir.print_graph(g)


def test_the_fusion_stage_differs_from_the_one_before_only_by_fusion(dumped):
    out, _ = dumped
    folder = out / "step_2"
    ops = {}
    for f in ("06_dce.txt", "07_fuse.txt"):
        text = (folder / f).read_text()
        ops[f] = collections.Counter(re.findall(r"^\s*%[^=]+ = (\w+)\(", text, re.M))
    gone = ops["06_dce.txt"] - ops["07_fuse.txt"]
    new = ops["07_fuse.txt"] - ops["06_dce.txt"]
    assert set(new) == {"fused"} and new["fused"] >= 3
    fusable = {n for n, op in gj.ops.all_ops().items() if op.kind == "elementwise"}
    assert gone and set(gone) <= fusable | {"sum", "amax", "amin", "expand"}
    assert sum(ops["07_fuse.txt"].values()) < sum(ops["06_dce.txt"].values())


def test_dot_is_valid_and_draws_fused_groups_as_clusters(dumped):
    pydot = pytest.importorskip("pydot")
    import networkx as nx
    out, _ = dumped
    for name, stem in (("step_2", "graph"), ("forward_1", "forward"), ("forward_1", "backward")):
        (g,) = pydot.graph_from_dot_file(str(out / name / f"{stem}.dot"))
        assert nx.drawing.nx_pydot.from_pydot(g).number_of_nodes() > 5
    (g,) = pydot.graph_from_dot_file(str(out / "step_2" / "graph.dot"))
    assert any(s.get_name().strip('"').startswith("cluster_") for s in g.get_subgraphs())
    text = (out / "step_2" / "graph.dot").read_text()
    assert "f32[4,16]" in text  # values are labelled with shape and dtype
    from graphjit.dump import COLOURS
    for part in ("forward", "backward", "optimizer"):
        assert COLOURS[part] in text, part  # the three parts of a training step, coloured


def test_json_describes_the_final_graph(dumped):
    out, _ = dumped
    data = json.loads((out / "step_2" / "graph.json").read_text())
    final = parse_graph((out / "step_2" / "09_dce.txt").read_text())
    assert len(data["nodes"]) == len(final.nodes)
    assert [i["name"] for i in data["inputs"]] == [v.name for v in final.inputs]
    assert {n["part"] for n in data["nodes"]} == {"forward", "backward", "optimizer"}
    assert all(n["source"] and "train.py" in n["source"] for n in data["nodes"])


def test_report_lists_kernels_saved_values_frozen_inputs_refusals_and_history(dumped):
    out, _ = dumped
    step = (out / "step_2" / "report.txt").read_text()
    assert re.search(r"fuse\s+\d+", step) and "fused[" in step and "FLOPs" in step
    assert re.search(r"peak buffer memory: [\d.]+ (B|KiB) \(each buffer freed", step)
    assert re.search(r"buffer plan: [\d.]+ (B|KiB) of workspace in \d+ slots", step)
    assert "model.0.bias: frozen (requires_grad=False)" in step
    assert "not fused into the loop of" in step
    assert "trace 2: the previous trace created optimizer state" in step
    fwd = (out / "forward_1" / "report.txt").read_text()
    saved = fwd.split("saved by the compiled forward for its backward:")[1].split("\n\n")[0]
    assert "train.py:" in saved and "B" in saved


def test_svg_is_rendered_or_its_absence_said_plainly(dumped):
    import shutil
    out, r = dumped
    if shutil.which("dot"):
        assert (out / "step_2" / "graph.svg").read_text().lstrip().startswith("<")
    else:
        assert "`dot` is not installed, so no SVG was rendered" in r.stderr
        assert not (out / "step_2" / "graph.svg").exists()


def test_stages_and_formats_select_files(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(STEP_SCRIPT)
    r = graphjit_cli("dump", str(script), "--out", str(tmp_path / "o"), "--stages", "trace,fuse",
                     "--format", "text")
    assert r.returncode == 0, r.stderr
    files = set(os.listdir(tmp_path / "o" / "step_2"))
    assert _stage_files(tmp_path / "o" / "step_2") == ["00_trace.txt", "07_fuse.txt"]
    assert not any(f.endswith((".dot", ".json")) for f in files) and "report.txt" in files


@pytest.mark.parametrize("args,message", [
    (["dump", "no_such_script.py"], "no such script: no_such_script.py"),
    (["dump", "examples/train_mlp.py", "--stages", "bogus"], "unknown stage 'bogus'"),
    (["dump", "examples/train_mlp.py", "--format", "png2"], "unknown format 'png2'"),
    (["dump", "examples/train_mlp.py", "--out", "/proc/graphjit"], "cannot write to /proc/graphjit"),
    (["dump"], "no script given"),
])
def test_bad_arguments_give_one_clear_line(args, message):
    r = graphjit_cli(*args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_the_mlp_example_dumps(tmp_path):
    r = graphjit_cli("dump", "examples/train_mlp.py", "--epochs", "1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    folders = sorted(os.listdir(tmp_path))
    assert "train_step_2" in folders and any(f.startswith("predict") for f in folders)
    assert "epoch 1:" in r.stdout  # the script's own argument reached it


def test_graphjit_dump_environment_variable(tmp_path):
    script = tmp_path / "f.py"
    script.write_text("import graphjit as gj\nf = gj.compile(lambda x: (x * 2).exp())\n"
                      "f(gj.ones(3))\n")
    env = dict(os.environ, GRAPHJIT_DUMP=str(tmp_path / "d"))
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (folder,) = os.listdir(tmp_path / "d")
    assert "fused(" in (tmp_path / "d" / folder / "07_fuse.txt").read_text()


def test_lower_gives_stage_text_without_running_the_step():
    w = gj.tensor(np.ones((2, 3)), requires_grad=True)
    opt = gj.optim.Adam([w], lr=0.1)

    @gj.compile
    def step(x):
        opt.zero_grad()
        loss = (x @ w.T).tanh().sum()
        loss.backward()
        opt.step()
        return loss

    lowered = step.lower(gj.ones(4, 3, dtype=gj.float64))
    assert lowered.stages == ["trace", "autodiff", "decompose", "simplify", "cse", "batch", "dce", "fuse",
                              "gemm", "dce", "memory"]
    assert "grad(" in lowered.as_text("trace") and "grad(" not in lowered.as_text("autodiff")
    assert "fused(" in lowered.as_text("fuse") and lowered.as_text() == lowered.as_text("dce")
    assert lowered.as_text("dce#1") != lowered.as_text("dce")
    assert "@njit(" in lowered.kernel_source()
    with pytest.raises(KeyError, match="stages: trace"):
        lowered.as_text("nope")
    # Nothing ran and nothing stayed behind: no gradient, no optimizer state, no program.
    np.testing.assert_array_equal(w.detach().numpy(), np.ones((2, 3)))
    assert w.grad is None and not opt.state and step.cache_size == 0


def test_cache_info_and_clear(tmp_path):
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", "import graphjit as gj; gj.compile(lambda x: x + 1)"
                    "(gj.ones(2))"], env=env, check=True)
    r = graphjit_cli("cache", "info", env=env)
    assert r.returncode == 0 and str(tmp_path) in r.stdout
    # The program's module and its kernel's ([Kernel modules] in backend/cpu/codegen.py).
    assert re.search(r"\b2 generated modules", r.stdout), r.stdout
    r = graphjit_cli("cache", "clear", env=env)
    assert r.returncode == 0 and "removed" in r.stdout
    assert not any(files for _, _, files in os.walk(tmp_path))


def test_profile_times_every_kernel_against_the_machines_limits(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(STEP_SCRIPT)
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=str(tmp_path / "cache"))
    r = graphjit_cli("dump", str(script), "--out", str(tmp_path / "o"), "--profile",
                     "--format", "text", env=env)
    assert r.returncode == 0, r.stderr
    limits = json.loads((tmp_path / "cache" / "machine.json").read_text())
    assert limits["bandwidth_gbs"] > 0.1 and limits["gemm_gflops"] > 0.1  # measured, cached
    text = (tmp_path / "o" / "step_2" / "report.txt").read_text()
    section = text.split("profile of the program step:")[1]
    assert f"{limits['bandwidth_gbs']:.1f} GB/s copy bandwidth" in section
    final = parse_graph((tmp_path / "o" / "step_2" / "09_dce.txt").read_text())
    kernels = [n for n in final.nodes if n.op.name not in ("reshape", "detach")]
    rows = re.findall(r"^  %\d+ .*\d+\.\dus", section, re.M)
    assert len(rows) == len(kernels)
    assert re.search(r"(?:matmul|gemm\[[^\n]*?)\s+\d+\.\dus\s+\d+\.\d+\s+\d+\.\d%", section)  # rates where timed
    backward = (tmp_path / "o" / "forward_1" / "report.txt").read_text()
    assert "profile of the backward program forward_backward:" in backward


def test_report_tells_frozen_unused_and_detached_inputs_apart(tmp_path):
    script = tmp_path / "three.py"
    script.write_text(textwrap.dedent("""
        import graphjit as gj
        a = gj.nn.Parameter(gj.ones(3))
        frozen = gj.nn.Parameter(gj.ones(3), requires_grad=False)
        unused = gj.nn.Parameter(gj.ones(3))
        detached = gj.nn.Parameter(gj.ones(3))

        @gj.compile
        def step(x):
            loss = (a * x * frozen + detached.detach()).sum()
            discarded = unused * 2.0  # computed, never reaches the loss
            loss.backward()
            return loss

        step(gj.ones(3))
    """))
    r = graphjit_cli("dump", str(script), "--out", str(tmp_path / "o"), "--format", "text")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "o" / "step_1" / "report.txt").read_text()
    section = text.split("inputs with no gradient work:")[1].split("\n\n")[0]
    lines = dict(line.strip().split(": ", 1) for line in section.strip().splitlines())
    assert lines["frozen"] == "frozen (requires_grad=False)"
    assert "it is detached" in lines["detached"] and "result is unused" in lines["unused"]
    assert "a" not in lines and "x" not in lines


def test_two_functions_of_one_name_get_folders_of_their_own(tmp_path):
    from graphjit import dump

    def make(scale):
        def step(x):
            return x * scale
        return gj.compile(step)

    first, second = make(2.0), make(3.0)
    dump.configure(str(tmp_path))
    try:
        first(gj.ones(3))
        second(gj.ones(3))
        first(gj.ones(4))  # the first function again: its own prefix, its second trace
    finally:
        dump._config = None
    folders = sorted(os.listdir(tmp_path))
    assert folders == ["step-2_1", "step_1", "step_2"], folders
    # Each folder holds its own function's program: the constant it multiplies by.
    assert "3.0" in (tmp_path / "step-2_1" / "00_trace.txt").read_text()
    assert "2.0" in (tmp_path / "step_1" / "00_trace.txt").read_text()
