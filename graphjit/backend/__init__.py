"""Backends: turn a Graph into a runnable program.

``backend.cpu.compile_graph(graph)`` generates Python source with ``numba.njit`` kernels
and one driver, writes it to a content-hash named file and imports it (``source.py`` holds
the parts every code generator shares). Backends read the IR and the op registry only;
they never import the passes or the front end (DESIGN.md section 7, STYLE.md section 7).
"""
