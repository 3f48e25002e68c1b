"""The package's layers, checked: a module imports only from its own layer and the layers below.

graphjit is built in layers, lowest first (DESIGN.md, "How the parts fit"):

    base      errors, dtypes, shapes and the small process-wide state every layer reads
    ops       the primitive ops: shapes, dtypes, NumPy implementations, VJP rules
    ir        the graph IR, its builder, printer, verifier and interpreter
    compiler  passes/ (graph -> graph) and graphjit/backend (graph -> kernels); passes never
              import the backend, so a pass can be read and tested without Numba
    tensor    Tensor, eager autograd, devices, creation, random numbers
    library   nn, optim, utils.data, save/load, distributed: what users build models from
    jit       graphjit.compile: tracing, lowering, the runtime of compiled programs
    tools     the public facade (``import graphjit``), dump, profile, the CLI, testing, fuzz

Every import counts, at module level or inside a function: a lazy import is still a
dependency, it only hides it. A lower layer that needs something from a higher one is given it
(a registration hook, as ``graphjit._tracing.set_compiler`` does for the compiler, or an
argument) rather than importing it. The test reads the source with ``ast``; nothing is imported.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

LAYERS = ["base", "ops", "ir", "compiler", "tensor", "library", "jit", "tools"]

# Module (or package prefix) -> layer. The longest matching prefix wins.
ASSIGNED = {
    "graphjit.errors": "base", "graphjit.dtypes": "base", "graphjit.shapes": "base",
    "graphjit._tracing": "base", "graphjit._gc": "base", "graphjit._blas": "base",
    "graphjit.cuda": "base",
    "graphjit.ops": "ops",
    "graphjit.ir": "ir",
    "passes": "compiler", "graphjit.backend": "compiler",
    "graphjit.devices": "tensor", "graphjit.tensor": "tensor", "graphjit.tensor_copy": "tensor",
    "graphjit.tensor_data": "tensor", "graphjit.tensor_device": "tensor",
    "graphjit.tensor_inplace": "tensor", "graphjit.tensor_print": "tensor",
    "graphjit.autograd": "tensor", "graphjit.autograd_tape": "tensor",
    "graphjit.autograd_engine": "tensor", "graphjit.autograd_function": "tensor",
    "graphjit.autograd_function_ctx": "tensor", "graphjit.autograd_function_trace": "tensor",
    "graphjit.creation": "tensor", "graphjit.random": "tensor", "graphjit.anomaly": "tensor",
    "graphjit.nn": "library", "graphjit.optim": "library", "graphjit.utils": "library",
    "graphjit.serialization": "library", "graphjit.serialization_save": "library",
    "graphjit.serialization_load": "library", "graphjit.serialization_format": "library",
    "graphjit.distributed": "library",
    "graphjit.jit": "jit",
    "graphjit": "tools", "graphjit.__main__": "tools", "graphjit.dump": "tools",
    "graphjit.profile": "tools", "graphjit.cli": "tools", "graphjit.testing": "tools",
    "graphjit.fuzz": "tools", "graphjit.run": "tools",
}


def _modules():
    """``{module name: (path, is_package)}`` for every module of graphjit and passes."""
    found = {}
    for package in ("graphjit", "passes"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def layer_of(module: str) -> str | None:
    best = None
    for prefix in ASSIGNED:
        if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else ASSIGNED[best]


def _imported(module: str, is_package: bool, node) -> list[str]:
    """The modules an import statement depends on (``from . import x`` names module x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        if not is_package:
            base.pop()
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
            for a in node.names]


def _edges():
    """``(importer, imported, line)`` for every import of one of our own modules."""
    for module, (path, is_package) in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(module, is_package, node):
                    if target.split(".")[0] in ("graphjit", "passes"):
                        yield module, target, node.lineno


EDGES = list(_edges())


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"give these modules a layer in ASSIGNED: {missing}"


def test_imports_only_go_down():
    upward = []
    for source, target, line in EDGES:
        here, there = layer_of(source), layer_of(target)
        if here is None or there is None:
            continue  # reported by test_every_module_has_a_layer
        if LAYERS.index(there) > LAYERS.index(here):
            path = MODULES[source][0].relative_to(ROOT)
            upward.append(f"{path}:{line}: {source} ({here}) imports {target} ({there})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_passes_do_not_import_the_backend():
    found = [f"{MODULES[s][0].relative_to(ROOT)}:{line}: {s} imports {t}"
             for s, t, line in EDGES
             if s.startswith("passes") and t.startswith("graphjit.backend")]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module, layer", [
    ("graphjit.ops.api", "ops"), ("graphjit.backend.cpu.kernel", "compiler"),
    ("passes.fuse", "compiler"), ("graphjit.jit.trace", "jit"), ("graphjit", "tools"),
    ("graphjit.nn.functional", "library"), ("graphjit.dtypes", "base"),
    ("graphjit.tensor_print", "tensor")])
def test_layer_of(module, layer):
    assert layer_of(module) == layer


def test_the_check_sees_an_upward_lazy_import():
    """The checker itself: a function-level import of the jit from the ops layer is seen."""
    node = ast.parse("def f():\n    from ..jit import trace\n").body[0].body[0]
    (target,) = _imported("graphjit.ops.api", False, node)
    assert target == "graphjit.jit.trace"
    assert LAYERS.index(layer_of(target)) > LAYERS.index(layer_of("graphjit.ops.api"))


def _owner(target: str) -> str:
    """The module that ``target`` names: itself, or the nearest package above it that exists."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def _import_graph():
    """Module -> the modules it imports. A package's own ``__init__`` is left out of its
    children's imports: Python runs it before any child, whoever imports what."""
    graph = {module: set() for module in MODULES}
    for source, target, _ in EDGES:
        target = _owner(target)
        if target and target != source and not source.startswith(target + "."):
            graph[source].add(target)
    return graph


# NOTE: [No circle in the tensor layer] Tensor and the autograd tape need each other (methods
# run ops through the tape, the tape wraps results in Tensors), yet import one way: the tape and
# the engine sit under Tensor and are handed the class by tensor.py (``set_tensor_class``), and
# what re-runs or builds on Tensors (anomaly mode's replays, Function, creation, random) sits
# above it, anomaly mode reaching the tape through hooks. See [The tape under Tensor] in
# graphjit/autograd_tape.py. graphjit.autograd only gathers public names; nothing inside the
# package but its facade imports it.


def test_no_import_circle():
    """No module reaches itself through imports: each pair has one direction, lower and higher
    (see [No circle in the tensor layer])."""
    import networkx as nx

    graph = nx.DiGraph([(s, t) for s, targets in _import_graph().items() for t in targets])
    found = []
    for component in sorted(nx.strongly_connected_components(graph), key=sorted):
        if len(component) > 1:
            path = nx.find_cycle(graph.subgraph(component))
            found.append(f"{len(component)} modules: {', '.join(sorted(component))}\n"
                         f"    e.g. {' -> '.join([a for a, _ in path] + [path[0][0]])}")
    assert not found, "import circles:\n" + "\n".join(found)


def test_only_the_package_imports_the_autograd_facade():
    """graphjit.autograd gathers public names; code inside the package imports their homes
    (autograd_tape, autograd_engine, anomaly, autograd_function), which the facade imports."""
    found = [f"{MODULES[s][0].relative_to(ROOT)}:{line}: {s} imports graphjit.autograd"
             for s, t, line in EDGES if _owner(t) == "graphjit.autograd" and s != "graphjit"]
    assert not found, "\n".join(found)


def test_the_check_sees_a_circle():
    """The checker itself: a circle made of a lazy import is found, a package's __init__ is not
    counted as its child's dependency."""
    import networkx as nx

    graph = _import_graph()
    assert "graphjit" not in graph["graphjit.ops.api"]
    graph = nx.DiGraph([(s, t) for s, targets in graph.items() for t in targets])
    graph.add_edge("graphjit.errors", "graphjit.jit.compile")  # as a lazy import would add
    assert any("graphjit.errors" in c and len(c) > 1
               for c in nx.strongly_connected_components(graph))


MAX_LINES = 700  # issue 19: no source file over about 700 lines (STYLE.md: split by job)


def test_no_source_file_is_too_long():
    long = {str(path.relative_to(ROOT)): n for path, _ in MODULES.values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by what they do: {long}"
