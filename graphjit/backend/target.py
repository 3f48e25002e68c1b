"""A ``Target``: one device type's code generator and everything that goes with it.

    target = graphjit.backend.target_for(device)        # "cpu", "cuda", or a device
    graph, _ = passes.pipeline.run_pipeline(graph, passes=target.pipeline)
    program = target.compile(graph, inplace=True, fastmath=False)
    outputs, updates = program(inputs)

A target names its pass list (``pipeline``, a key of ``passes.pipeline.PIPELINES``: the
backends may not import passes/, so the caller runs it), and its backend package
(``graphjit.backend.cpu``, ``graphjit.backend.cuda``), imported on first use so that
asking for the CPU target never loads ``numba.cuda`` (see [Devices] in graphjit/devices.py).
The package provides ``generate(graph, name, inplace, **options)`` (the program's text,
nothing compiled), ``compile_graph(...)`` (a program), ``emitter_for(op)`` and the program
class. ``options`` are the compile options the target honours; the others are accepted
and ignored (CUDA kernels compile without fastmath), so callers need not ask which target
they hold.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str                   # the device type it runs on: "cpu", "cuda"
    pipeline: str               # its pass list: passes.pipeline.PIPELINES[pipeline]
    package: str                # its backend package
    program_class_name: str     # the class of the programs it compiles
    options: frozenset          # compile options it honours (``fastmath``)

    @property
    def backend(self):
        """The backend package (imported on first use)."""
        return importlib.import_module(self.package)

    @property
    def program_class(self):
        return getattr(self.backend, self.program_class_name)

    def _options(self, options) -> dict:
        return {k: v for k, v in options.items() if k in self.options}

    def generate(self, graph, name: str | None = None, *, inplace: bool = False, **options):
        """The generated program of ``graph`` (its text; nothing written or compiled)."""
        return self.backend.generate(graph, name, inplace=inplace, **self._options(options))

    def compile(self, graph, name: str | None = None, *, inplace: bool = False, **options):
        """Generate, write, import and compile the program of ``graph``. ``inplace``:
        updates computed in their targets' buffers where legal ([In-place updates] in
        graphjit/ir/buffers.py)."""
        return self.backend.compile_graph(graph, name, inplace=inplace, **self._options(options))

    def emitter_for(self, op):
        """The emitter of ``op`` on this target, or None (see core/kernel.py)."""
        return self.backend.emitter_for(op)

    def describe(self, op) -> list:
        """Lines saying where ``op``'s kernel comes from on this target."""
        return self.backend.EMITTERS.describe(op)

    def __repr__(self) -> str:
        return f"<Target {self.name}>"


CPU = Target("cpu", pipeline="cpu", package="graphjit.backend.cpu",
             program_class_name="CompiledProgram",
             options=frozenset({"fastmath", "tier", "generated"}))
CUDA = Target("cuda", pipeline="cuda", package="graphjit.backend.cuda",
              program_class_name="CudaProgram", options=frozenset())
TARGETS = {t.name: t for t in (CPU, CUDA)}


def target_for(device) -> Target:
    """The target that runs programs on ``device``: a ``graphjit.device``, or its type as a
    string ("cpu", "cuda", "cuda:0")."""
    kind = device if isinstance(device, str) else device.type
    kind = kind.split(":")[0]
    try:
        return TARGETS[kind]
    except KeyError:
        raise ValueError(f"no backend for device {device!r}; targets: "
                         f"{', '.join(TARGETS)}") from None


def describe_kernels(op_name: str) -> str:
    """Where op ``op_name``'s kernel comes from on each target (``graphjit describe``):
    the emitter's file:line, and any per-target override of its scalar expression."""
    from ..ops import registry
    op = registry.get(op_name)
    lines = ["  kernels:"]
    for target in TARGETS.values():
        lines += ["    " + line for line in target.describe(op)]
    return "\n".join(lines)
