"""The targets (graphjit/backend/target.py) and what their code generators share
(graphjit/backend/core/): every op has an emitter on each target, the layout of the
backend package, the Target API. No Numba compile here."""
from __future__ import annotations

import ast
import pathlib

import pytest

import graphjit as gj
from graphjit.backend import Target, describe_kernels, target_for
from graphjit.backend.target import TARGETS
from graphjit.ir import parse_graph
from graphjit.ir.buffers import aliases_input
from graphjit.ops.registry import all_ops

BACKEND = pathlib.Path(gj.__file__).parent / "backend"


def _never_emitted(target) -> set:
    """Ops no code generator ever sees: ``grad`` (expanded by passes/autodiff), ops that
    passes/decompose always replaces and that have no emitter of their own
    (custom_function); on CUDA ``gemm`` and ``window_gemm``, made only by passes/gemm,
    which is not in the CUDA target's pass list."""
    from passes.pipeline import PIPELINES
    never = {"grad"} | {name for name, op in all_ops().items()
                        if op.decompose is not None and target.emitter_for(op) is None}
    if all(p.name != "gemm" for p in PIPELINES[target.pipeline]):
        never |= {"gemm", "window_gemm"}
    return never | set(ELSEWHERE.get(target.name, {}))


# Ops a target leaves to others on purpose, with the reason (a new op without an emitter
# still fails the test below).
ELSEWHERE = {"cuda": {
    "all_reduce": "on a GPU the collectives run eagerly on host copies (backend/cpu/collective.py)",
    "broadcast": "on a GPU the collectives run eagerly on host copies (backend/cpu/collective.py)",
}}


@pytest.mark.parametrize("target", TARGETS.values(), ids=lambda t: t.name)
def test_every_op_has_an_emitter(target):
    """An emitter of its own, the target's generic elementwise one (a scalar expression),
    or none needed (a flat view: its input's buffer)."""
    missing = [name for name, op in all_ops().items()
               if name not in _never_emitted(target) and not aliases_input(op)
               and target.emitter_for(op) is None]
    assert not missing, f"ops with no {target.name} emitter: {missing}"


def test_emitters_of_one_op_sit_in_files_of_the_same_name():
    """An op's CPU and CUDA emitters are in backend/cpu/<family>.py and
    backend/cuda/<family>.py (one family may hold both a generic and an own emitter)."""
    for name, op in all_ops().items():
        files = {}
        for target in TARGETS.values():
            fn = target.emitter_for(op)
            if fn is not None:
                files[target.name] = pathlib.Path(fn.__code__.co_filename).name
        if len(files) == 2:
            assert files["cpu"] == files["cuda"], (name, files)


def test_target_for_devices_and_names():
    assert target_for("cpu") is target_for(gj.device("cpu")) is TARGETS["cpu"]
    assert target_for("cuda:0").name == "cuda"
    assert target_for("cuda").pipeline == "cuda"
    with pytest.raises(ValueError, match="no backend for device"):
        target_for("tpu")
    assert isinstance(target_for("cpu"), Target)
    from graphjit.backend.cpu import CompiledProgram
    assert target_for("cpu").program_class is CompiledProgram
    assert target_for("cuda").program_class.__name__ == "CudaProgram"


def test_options_a_target_does_not_honour_are_dropped():
    """fastmath changes CPU kernels; CUDA kernels compile without it, so asking changes
    nothing there (callers need not ask which target they hold)."""
    g = parse_graph("graph f(%x: f32[4] {arg}) {\n  %0 = exp(%x) : f32[4]\n  return %0\n}")
    cpu = [target_for("cpu").generate(g, fastmath=f).source for f in (False, True)]
    assert cpu[0] != cpu[1] and "fastmath" in cpu[1]
    cuda = [target_for("cuda").generate(g, fastmath=f).source for f in (False, True)]
    assert cuda[0] == cuda[1]


def test_describe_names_each_targets_emitter():
    text = describe_kernels("sum")
    assert "cpu: emit_reduce at graphjit/backend/cpu/reduce.py:" in text
    assert "cuda: emit_reduce at graphjit/backend/cuda/reduce.py:" in text
    assert "scalar expression overridden: _sign at graphjit/backend/cuda/elementwise.py:" \
        in describe_kernels("sign")
    assert "math.exp as exp_f32 (float32), exp_f64 (float64)" in describe_kernels("exp")
    assert describe_kernels("reshape").count("no kernel") == 2
    assert "cuda: none" in describe_kernels("gemm")


def test_the_cli_describes_kernels(capsys):
    from graphjit import cli
    assert cli.main(["describe", "matmul"]) == 0
    out = capsys.readouterr().out
    assert "vjp:" in out and "cpu: emit_matmul" in out and "cuda: emit_matmul" in out


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or "")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


@pytest.mark.parametrize("path", sorted(BACKEND.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(BACKEND)))
def test_backends_import_neither_passes_nor_each_other(path):
    """The backends never import passes/ (DESIGN.md's layering); the CPU and CUDA targets
    share code through core/ only, never one's private helpers from the other; core/
    knows neither."""
    part = path.relative_to(BACKEND).parts[0]
    for name in _imports(path):
        assert name != "passes" and not name.startswith("passes."), f"{path.name}: {name}"
        if part == "cuda":
            assert "cpu" not in name.split("."), f"cuda/{path.name} imports {name}"
        if part == "cpu":
            assert "cuda" not in name.split("."), f"cpu/{path.name} imports {name}"
        if part == "core":
            assert not set(name.split(".")) & {"cpu", "cuda"}, f"core/{path.name}: {name}"


@pytest.mark.parametrize("path", sorted(BACKEND.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(BACKEND)))
def test_no_backend_module_is_too_long(path):
    """STYLE.md section 8: split a module when it passes about 500 lines."""
    assert len(path.read_text().splitlines()) <= 600, path
