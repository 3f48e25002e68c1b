"""The one piece of tracing state that lower layers may consult.

``graphjit.jit`` sets the active tracer here while it runs a user function; lower layers
(Tensor in-place ops, optimizers) tell it about side effects a static graph must capture,
without importing the compiler (layering: jit imports them, never the reverse).
"""
from __future__ import annotations

import contextvars

_active: contextvars.ContextVar = contextvars.ContextVar("graphjit_active_tracer", default=None)


def active():
    """The tracer running now, or None in eager mode."""
    return _active.get()


def note_optimizer(opt) -> None:
    """Called by ``Optimizer`` steps so a compiled step can guard on hyper-parameters."""
    tracer = _active.get()
    if tracer is not None:
        tracer.note_optimizer(opt)


def hyper_group(opt, index: int, group: dict) -> dict:
    """The view of param group ``index`` that ``opt.step()`` computes with.

    In eager mode that is the group itself. While tracing, its numeric options (``lr``,
    ``momentum``, each of ``betas``...) are runtime inputs of the compiled program, so that
    changing ``param_groups[i]["lr"]`` (an LR scheduler) never recompiles; see
    [Hyper-parameters] in graphjit/jit/optimizers.py.
    """
    tracer = _active.get()
    if tracer is None:
        return group
    return tracer.hyper_group(opt, index, group)


# The compiler (graphjit.jit.compile), registered by graphjit.jit when it is imported, so that
# lower layers (optimizers, clipping) can compile their eager work without importing it (see
# tests/test_layering.py). ``import graphjit`` imports graphjit.jit, and every submodule's
# import runs the package's first, so it is always there by the time anyone asks.
_compiler = None


def set_compiler(compile_fn) -> None:
    global _compiler
    _compiler = compile_fn


def compiler():
    assert _compiler is not None, "graphjit.jit registers the compiler when graphjit is imported"
    return _compiler
