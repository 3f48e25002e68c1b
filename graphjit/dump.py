"""The IR dump: every stage of the compiler for every compiled program, as files.

Turn it on with ``graphjit dump SCRIPT.py`` (see ``graphjit.cli``) or ``GRAPHJIT_DUMP=DIR``.
Each traced signature of each compiled function gets a folder ``DIR/<function>_<trace>/``:

    00_trace.txt 01_autodiff.txt ... 10_memory.txt  the IR after tracing and after each pass
    11_forward.txt 12_backward.txt                 a compiled forward's two programs
    kernels.py (or kernels_forward.py, kernels_backward.py)   the generated program, as one
                                                   module: its driver and its kernels
    graph.dot / graph.svg (forward.*, backward.*)  the final graph, drawn
    graph.json (forward.json, backward.json)       the final graph, machine-readable
    report.txt                                     sizes, kernels, costs, saved values, ...

Numbered files follow the pipeline, so ``diff 06_dce.txt 07_fuse.txt`` shows what fusion did.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import weakref

from .backend import target_for
from .ir.buffers import aliases_input, peak_bytes
from .ir.labels import kernel_label
from .ir.printer import format_attr, print_graph, value_names
from .jit import lowering as _lowering
from .jit.tiers import programs_of, tier_lines
from .shapes import numel

FORMATS = ("text", "dot", "svg", "json")


class DumpConfig:
    def __init__(self, out_dir, stages=None, formats=FORMATS, profile=False):
        self.out_dir = out_dir
        self.profile = profile                          # time each kernel (graphjit.profile)
        self.stages = set(stages) if stages else None   # None: every stage
        self.formats = set(formats)
        self.written: list[str] = []                    # folders written so far
        self.notes: list[str] = []                      # e.g. "dot is not installed"
        # Each compiled function's folder prefix: its name, or "name-2", "name-3", ... for
        # a second function of the same name (two closures, two modules' ``step``), so
        # one's folders never overwrite the other's.
        self._prefixes: dict[int, tuple] = {}           # id(cf) -> (weakref to cf, prefix)
        self._taken: dict[str, int] = {}                # name -> functions seen with it

    def prefix(self, cf) -> str:
        known = self._prefixes.get(id(cf))
        if known is not None and known[0]() is cf:
            return known[1]
        name = cf.__name__
        count = self._taken.get(name, 0) + 1
        self._taken[name] = count
        prefix = name if count == 1 else f"{name}-{count}"
        self._prefixes[id(cf)] = (weakref.ref(cf), prefix)
        return prefix


_config: DumpConfig | None = None


def configure(out_dir, stages=None, formats=FORMATS, profile=False) -> DumpConfig:
    global _config
    _config = DumpConfig(out_dir, stages, formats, profile)
    return _config


def active() -> DumpConfig | None:
    if _config is not None:
        return _config
    env = os.environ.get("GRAPHJIT_DUMP")
    return configure(env) if env else None


def stage_names() -> list:
    """The stage names a dump can hold, in pipeline order."""
    from passes.pipeline import DEFAULT
    names = ["trace"]
    for p in DEFAULT:
        if p.name not in names:
            names.append(p.name)
    return names + ["forward", "backward"]


# ---- writing one program ------------------------------------------------------------------

def write_entry(cf, entry, flat_args=None) -> str:
    """Write the folder of one traced signature of compiled function ``cf`` (with
    ``--profile``, time its kernels on this call's arguments ``flat_args``)."""
    target = target_for(entry.device)  # the target the program was compiled for
    cfg = active()
    folder = os.path.join(cfg.out_dir, f"{cfg.prefix(cf)}_{entry.trace_number}")
    os.makedirs(folder, exist_ok=True)
    programs = _programs(entry)
    want = (lambda name: cfg.stages is None or name in cfg.stages)
    n = 0
    if "text" in cfg.formats:
        for name, text in entry.snapshots:
            if want(name):
                _write(folder, f"{n:02d}_{name}.txt", text + "\n")
            n += 1
        if len(programs) == 2:
            for label, graph in programs:
                if want(label):
                    _write(folder, f"{n:02d}_{label}.txt", print_graph(graph) + "\n")
                n += 1
    for label, graph in programs:
        stem = "graph" if len(programs) == 1 else label
        # As the program was compiled: updates in place where legal (none in a backward).
        source = target.generate(graph, graph.name, inplace=(label != "backward")).source
        _write(folder, "kernels.py" if len(programs) == 1 else f"kernels_{label}.py", source)
        parts = classify(graph) if len(programs) == 1 else {n: label for n in graph.nodes}
        if "dot" in cfg.formats or "svg" in cfg.formats:
            dot = to_dot(graph, parts)
            _write(folder, f"{stem}.dot", dot)
            if "svg" in cfg.formats:
                _render(cfg, folder, stem)
        if "json" in cfg.formats:
            _write(folder, f"{stem}.json", json.dumps(to_json(graph, parts), indent=1) + "\n")
    text = report(cf, entry)
    if cfg.profile and flat_args is not None:
        text += "\n" + "\n".join(profile_lines(entry, flat_args)) + "\n"
    _write(folder, "report.txt", text)
    cfg.written.append(folder)
    return folder


def _programs(entry):
    backward = getattr(entry, "backward_graph", None)
    if backward is None:
        return [("program", entry.graph)]
    return [("forward", entry.graph), ("backward", backward)]


def _write(folder, name, text):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text)


def _render(cfg, folder, stem):
    dot = shutil.which("dot")
    if dot is None:
        note = ("the Graphviz program `dot` is not installed, so no SVG was rendered; the .dot "
                "files are written (install graphviz, e.g. `apt-get install graphviz`)")
        if note not in cfg.notes:
            cfg.notes.append(note)
        return
    subprocess.run([dot, "-Tsvg", f"{stem}.dot", "-o", f"{stem}.svg"], cwd=folder, check=True,
                   capture_output=True)


# ---- forward / backward / optimizer -------------------------------------------------------

COLOURS = {"forward": "#dbe9f6", "backward": "#f9dcc4", "optimizer": "#d8f0d2",
           "program": "#eeeeee"}


def classify(graph) -> dict:
    """Each node's part of a training-step graph: "forward" (what the outputs need),
    "backward" (what the gradient buffers need beyond that), "optimizer" (the rest: what
    parameter and optimizer-state updates need)."""
    def ancestors(values):
        need = set(values)
        for n in reversed(graph.nodes):
            if any(v in need for v in n.outs):
                need.update(n.inputs)
        return need

    fwd = ancestors(graph.outputs)
    bwd = ancestors([v for t, v in graph.updates if t.role == "grad"]) - fwd
    parts = {}
    for n in graph.nodes:
        parts[n] = ("forward" if any(v in fwd for v in n.outs) else
                    "backward" if any(v in bwd for v in n.outs) else "optimizer")
    return parts


# ---- DOT and JSON ---------------------------------------------------------------------------

def _q(text) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph, parts) -> str:
    """Graphviz text: inputs as ellipses, nodes as boxes coloured by part, fused nodes as
    clusters holding their body's steps; every value labelled with its shape and dtype."""
    from .ir.fused import body_graph
    names = value_names(graph)
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10];']
    for v in graph.inputs:
        lines.append(f"  {_q(names[v])} [shape=ellipse, label={_q(f'%{names[v]}: {v.type} {{{v.role}}}')}];")
    for i, n in enumerate(graph.nodes):
        colour = COLOURS[parts.get(n, "program")]
        vid = _q(names[n.outs[0]])
        if n.op.name == "fused":
            body = body_graph(n.attrs["body"], [v.type for v in n.inputs])
            results = ", ".join(f"%{names[v]}" for v in n.outs)
            types = ", ".join(str(v.type) for v in n.outs)
            lines.append(f"  subgraph {_q(f'cluster_{i}')} {{")
            lines.append(f"    style=filled; fillcolor={_q(colour)}; label={_q(f'{results} fused: {types}')};")
            step_ids = {}
            for j, step in enumerate(body.nodes):
                sid = _q(f"{names[n.outs[0]]}.t{j}")
                step_ids[step.out] = sid
                lines.append(f"    {sid} [shape=box, style=rounded, label={_q(f't{j} = {step.op.name} : {step.out.type}')}];")
            lines.append("  }")
            for j, step in enumerate(body.nodes):
                for w in step.inputs:
                    if w in step_ids:
                        lines.append(f"  {step_ids[w]} -> {step_ids[step.out]};")
                    else:
                        outer = n.inputs[body.inputs.index(w)]
                        lines.append(f"  {_q(names[outer])} -> {step_ids[step.out]};")
            for out, res in zip(n.outs, body.outputs):
                rid = _q(names[out])
                lines.append(f"  {rid} [shape=point, width=0.05];")
                lines.append(f"  {step_ids[res]} -> {rid} [arrowhead=none];")
            continue
        attrs = ", ".join(f"{k}={format_attr(n.attrs[k])}" for k in sorted(n.attrs))
        results = ", ".join(f"%{names[v]}" for v in n.outs)
        types = ", ".join(str(v.type) for v in n.outs)
        label = f"{results} = {n.op.name}" + (f"({attrs})" if attrs else "") + f"\n{types}"
        lines.append(f"  {vid} [shape=box, style=filled, fillcolor={_q(colour)}, label={_q(label)}];")
        for v in n.inputs:
            lines.append(f"  {_q(names[v])} -> {vid};")
        for v in n.outs[1:]:  # further results of the node: points fed by its box
            lines.append(f"  {_q(names[v])} [shape=point, width=0.05];")
            lines.append(f"  {vid} -> {_q(names[v])} [arrowhead=none];")
    for j, v in enumerate(graph.outputs):
        lines.append(f"  {_q(f'return{j}')} [shape=plaintext, label={_q(f'return {j}')}];")
        lines.append(f"  {_q(names[v])} -> {_q(f'return{j}')};")
    for t, v in graph.updates:
        uid = _q(f"update.{names[t]}")
        lines.append(f"  {uid} [shape=plaintext, label={_q(f'update %{names[t]}')}];")
        lines.append(f"  {_q(names[v])} -> {uid} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(graph, parts) -> dict:
    names = value_names(graph)

    def ty(v):
        return {"shape": list(v.shape), "dtype": v.dtype.name}

    return {
        "name": graph.name,
        "inputs": [dict(name=names[v], role=v.role, **ty(v)) for v in graph.inputs],
        # ``name``/``shape``/``dtype`` are the first result's; ``results`` lists them all
        # (a multi-result fused node has several).
        "nodes": [dict(name=names[n.outs[0]], op=n.op.name, inputs=[names[v] for v in n.inputs],
                       attrs={k: format_attr(a) for k, a in sorted(n.attrs.items())},
                       part=parts.get(n, "program"), source=n.source, **ty(n.outs[0]),
                       results=[dict(name=names[v], **ty(v)) for v in n.outs])
                  for n in graph.nodes],
        "outputs": [names[v] for v in graph.outputs],
        "updates": [{"target": names[t], "value": names[v]} for t, v in graph.updates],
    }


# ---- the report ---------------------------------------------------------------------------

def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def report(cf, entry) -> str:
    """The text of report.txt for one traced signature."""
    lines = [f"compiled function {cf.__name__}, trace {entry.trace_number}", ""]
    lines.append("nodes per stage:")
    for name, text in entry.snapshots:
        count = sum(1 for line in text.splitlines() if line.strip().startswith("%"))
        lines.append(f"  {name:<10} {count}")
    for label, graph in _programs(entry):
        what = "" if label == "program" else f"{label} "
        lines += ["", f"kernels of the {what}program {graph.name} (one loop nest each; "
                      "reshapes are free):"]
        names = value_names(graph)
        total_flops = total_bytes = buffers = 0
        for n in graph.nodes:
            if aliases_input(n.op):
                continue
            flops, moved = n.op.cost(n.out_type, *[v.type for v in n.inputs], **n.attrs)
            total_flops += flops
            total_bytes += moved
            buffers += sum(numel(v.shape) * v.dtype.itemsize for v in n.outs)
            what = kernel_label(n)
            result = ",".join(f"%{names[v]}" for v in n.outs)
            types = ", ".join(str(v.type) for v in n.outs)
            lines.append(f"  {result:<6} {what:<40} {types:<16} "
                         f"{_bytes(moved):>10} moved {flops:>12,} FLOPs")
        lines.append(f"  total: {_bytes(total_bytes)} moved, {total_flops:,} FLOPs")
        generated = target_for(entry.device).generate(graph, graph.name, inplace=True)
        workspace = sum(n * dt.itemsize for n, dt in generated.slots)
        results = sum(n * dt.itemsize for n, dt in generated.result_buffers)
        lines.append(f"  peak buffer memory: {_bytes(peak_bytes(graph))} (each buffer freed "
                     f"after its last use; {_bytes(buffers)} if all were held)")
        slots = getattr(generated, "slot_count", len(generated.slots))
        lines.append(f"  buffer plan: {_bytes(workspace)} of workspace in {slots} "
                     "slots shared by the temporaries (allocated once, reused every call), "
                     f"{_bytes(results)} of results (pooled), updates in place where legal")
    if entry.residuals:
        lines += ["", "saved by the compiled forward for its backward:"]
        for v in entry.residuals:
            where = v.node.source if v.node is not None and v.node.source else "an input"
            lines.append(f"  {str(v.type):<16} {_bytes(numel(v.shape) * v.dtype.itemsize):>10}  "
                         f"{v.node.op.name if v.node is not None else '%' + v.name}  ({where})")
    lines += ["", "inputs with no gradient work:"]
    lines += [f"  {name}: {why}" for name, why in no_gradient_inputs(entry)] or ["  none"]
    refused = [r for stage, st in entry.pass_stats if stage == "fuse" for r in st.get("refused", [])]
    lines += ["", "fusion candidates refused (value names of the stage before fuse):"]
    lines += [f"  {p} not fused into the loop of {root}: {why}" for p, root, why in refused] \
        or ["  none"]
    lines += ["", "tiers (what each program has run on; rewritten when native code takes over):"]
    lines += [f"  {line}" for line in tier_lines(entry)] \
        or ["  native code, compiled before the first call (GRAPHJIT_TIERED=0 or compile(fn, "
            "tiered=False))"]
    lines += ["", "trace history:"] + [f"  {h}" for h in cf.explain().splitlines()]
    return "\n".join(lines) + "\n"


def no_gradient_inputs(entry) -> list:
    """``(input name, reason)`` for each floating tensor input that got no gradient work."""
    got = set()
    grad_targets = {t for t, _ in entry.graph.updates if t.role == "grad"}
    for s in entry.slots:
        if s.kind == "grad" and s.value in grad_targets:
            got.add(id(s.owner))
    for i in getattr(entry, "wrt", []):  # a compiled forward: what its backward computes
        if entry.slots[i].tensor is not None:
            got.add(id(entry.slots[i].tensor))
    from .ir import parse_graph
    traced = parse_graph(entry.snapshots[0][1])  # before DCE dropped anything
    readers = traced.users()
    read = {v.name for v in traced.inputs if readers.get(v)}
    out = []
    for s in entry.slots:
        if s.kind not in ("tensor", "arg") or not s.value.dtype.is_floating_point:
            continue
        t = s.tensor
        if t is None:
            continue  # an argument: read at call time, nothing to say about it here
        if id(t) in got:
            continue
        if not t.requires_grad:
            if s.value.role == "param":
                out.append((s.name, "frozen (requires_grad=False)"))
            continue
        if s.name in read:
            out.append((s.name, "requires grad, but no loss it is differentiated for depends on "
                                "it through differentiable ops: it is detached (detach(), "
                                "comparisons, integer casts) or its result is unused"))
        else:
            out.append((s.name, "unused: requires grad but nothing reads it"))
    return out


def profile_lines(entry, flat_args) -> list:
    """The report's ``--profile`` section: every kernel of every program, timed."""
    import numpy as np

    from . import profile
    if entry.device.type != "cpu":
        return [f"profile: not available for programs on {entry.device} (it times the CPU "
                "kernels one by one)"]
    limits = profile.machine_limits()
    inputs = entry.input_arrays([s.resolve(flat_args) for s in entry.slots])
    lines = []
    programs = _programs(entry)
    rows, env = profile.profile_graph(programs[0][1], inputs)
    label = "" if programs[0][0] == "program" else programs[0][0] + " "
    lines += [f"profile of the {label}program {programs[0][1].name}:"]
    lines += profile.format_profile(programs[0][1], rows, limits)
    if len(programs) == 2:  # the backward program reads the saved values and the seeds
        backward = programs[1][1]
        seeds = [np.ones(v.shape, v.dtype.np) for v in backward.inputs[len(entry.residuals):]]
        saved = [env[v] for v in entry.residuals]
        rows, _ = profile.profile_graph(backward, saved + seeds)
        lines += ["", f"profile of the backward program {backward.name}:"]
        lines += profile.format_profile(backward, rows, limits)
    return lines


def _on_lowered(cf, entry, flat_args) -> None:
    """The jit calls this after lowering each new signature (``LOWERED_HOOKS``)."""
    if active():
        folder = write_entry(cf, entry, flat_args)
        _rewrite_when_native(cf, entry, folder)


def _rewrite_when_native(cf, entry, folder) -> None:
    """report.txt says which tier each program ran on: written again when a program that
    started on the NumPy interpreter switches to native code ([Tiered execution] in
    graphjit/backend/cpu/tiered.py)."""
    def rewrite(_status):
        _write(folder, "report.txt", report(cf, entry))
    for _, program in programs_of(entry):
        status = getattr(program, "tier", None)
        if status is not None and status.mode == "tiered" and status.native_since is None:
            status.listeners.append(rewrite)


_lowering.LOWERED_HOOKS.append(_on_lowered)
