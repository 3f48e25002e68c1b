"""Backends: turn a Graph into a runnable program, one ``Target`` per device type.

``target_for(device)`` gives the target (target.py): its pass list, its code generator and
program class. ``core/`` holds what both targets' code generators share (the buffers a
driver takes, the layout of fused bodies, index arithmetic, emitter tables, the checks of
a program call); ``cpu/`` and ``cuda/`` hold one emitter module per op family, named like
graphjit/ops/<family>.py. ``source.py`` writes generated modules to the disk cache
(``cache.py``, ``numba_cache.py``) and imports them; ``writer.py`` is the source writer.
Backends read the IR and the op registry only; they never import the passes or the front
end (DESIGN.md section 7, STYLE.md section 7).
"""
from .target import Target, describe_kernels, target_for  # noqa: F401
