"""passes/manager and passes/pipeline: order, snapshots, verification between passes, layering."""
import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

from graphjit.ir import parse_graph, print_graph
from graphjit.shapes import TensorType
from passes import pipeline
from passes.manager import FunctionPass, PassManager, PassVerifyError, graph_pass
from passes.simplify import simplify

PASSES_DIR = pathlib.Path(__file__).resolve().parents[2] / "passes"

TEXT = textwrap.dedent("""
    graph f(%x: f64[3] {param}) {
      %0 = neg(%x) : f64[3]
      %1 = neg(%0) : f64[3]
      %2 = exp(%1) : f64[3]
      %3 = exp(%x) : f64[3]
      %4 = sum(%2, dims=[0], keepdim=false) : f64[]
      return %4
    }""").strip()


@graph_pass("identity")
def identity(graph):
    return graph


@graph_pass("breaker")
def breaker(graph):
    """Corrupts the graph: a node claims a type its op does not infer."""
    n = graph.nodes[0]
    n.out.type = TensorType((4,), n.out.type.dtype)
    return graph


def test_snapshots_start_with_the_trace_and_follow_the_passes():
    from passes.dce import dce
    manager = PassManager([identity, simplify, dce], verify=True)
    g = manager.run(parse_graph(TEXT))
    assert [name for name, _ in manager.snapshots] == ["trace", "identity", "simplify", "dce"]
    assert manager.snapshots[0][1] == TEXT
    assert manager.snapshots[1][1] == TEXT
    assert manager.snapshots[-1][1] == print_graph(g)
    assert "neg" not in manager.snapshots[-1][1] and "%3 = " not in manager.snapshots[-1][1]
    # Passes that report statistics leave them per stage.
    assert ("simplify", {"neg_neg": 1}) in manager.stats
    assert ("dce", {"nodes_removed": 2, "consts_removed": 0}) in manager.stats


def test_a_pass_that_breaks_the_graph_is_named():
    manager = PassManager([identity, breaker, identity], verify=True)
    with pytest.raises(PassVerifyError, match="pass 'breaker' produced an invalid graph") as e:
        manager.run(parse_graph(TEXT))
    assert "node 0 (neg)" in str(e.value)
    assert [name for name, _ in manager.snapshots] == ["trace", "identity"]


def test_an_invalid_input_graph_is_reported_as_such():
    g = parse_graph(TEXT.replace("%2 = exp(%1) : f64[3]", "%2 = exp(%1) : f64[2]"))
    with pytest.raises(PassVerifyError, match="the input graph"):
        PassManager([identity], verify=True).run(g)


def test_verification_is_off_by_default_and_on_with_the_env_var(monkeypatch):
    monkeypatch.delenv("GRAPHJIT_VERIFY", raising=False)
    PassManager([breaker]).run(parse_graph(TEXT))  # not checked
    monkeypatch.setenv("GRAPHJIT_VERIFY", "1")
    with pytest.raises(PassVerifyError, match="breaker"):
        PassManager([breaker]).run(parse_graph(TEXT))
    monkeypatch.setenv("GRAPHJIT_VERIFY", "0")
    PassManager([breaker]).run(parse_graph(TEXT))


def test_what_counts_as_a_pass():
    assert isinstance(identity, FunctionPass) and identity.name == "identity"
    assert identity(parse_graph(TEXT)) is not None  # a FunctionPass is callable too
    with pytest.raises(TypeError, match="is not a pass"):
        PassManager([lambda g: g])

    @graph_pass("forgetful")
    def forgetful(graph):
        graph.nodes = graph.nodes

    with pytest.raises(TypeError, match="forgetful"):
        PassManager([forgetful]).run(parse_graph(TEXT))


def test_the_pipeline_order():
    order = ["autodiff", "decompose", "simplify", "cse", "batch", "dce", "fuse", "gemm", "dce",
             "memory"]
    assert [p.name for p in pipeline.DEFAULT] == order
    # The CUDA target's list: the CPU's without the lowering onto BLAS calls.
    assert pipeline.PIPELINES["cuda"] == [p for p in pipeline.CPU if p.name != "gemm"]
    assert pipeline.DEFAULT is pipeline.PIPELINES["cpu"]
    g, snapshots = pipeline.run_pipeline(parse_graph(TEXT), verify=True)
    assert [name for name, _ in snapshots] == ["trace"] + order
    assert print_graph(g) == textwrap.dedent("""
        graph f(%x: f64[3] {param}) {
          %0 = fused(%x, body='t0 = exp(i0); t1 = sum(t0, dims=[0], keepdim=false)') : f64[]
          return %0
        }""").strip()
    g, snapshots = pipeline.run_pipeline(parse_graph(TEXT), passes=[identity])
    assert [name for name, _ in snapshots] == ["trace", "identity"]
    g, snapshots = pipeline.run_pipeline(parse_graph(TEXT), passes="cuda")
    assert [name for name, _ in snapshots] == ["trace"] + [n for n in order if n != "gemm"]


# ---- layering ---------------------------------------------------------------------------------

ALLOWED = ("graphjit.ops", "graphjit.ir", "graphjit.shapes", "graphjit.dtypes", "graphjit.errors")


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


@pytest.mark.parametrize("path", sorted(PASSES_DIR.glob("*.py")), ids=lambda p: p.name)
def test_passes_import_only_the_ir_and_the_registry(path):
    for name in _imports(path):
        if name == "graphjit" or name.startswith("graphjit."):
            assert name.startswith(ALLOWED), f"{path.name} imports {name}"


def test_importing_the_package_does_no_work():
    code = ("import sys, passes; "
            "print(sorted(m for m in sys.modules if m.startswith(('graphjit', 'passes.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PASSES_DIR.parent).stdout
    assert out.strip() == "[]"
