"""Compiler passes over graphjit's graph IR (Graph -> Graph).

The package depends on ``graphjit``'s IR and op registry only, never on the front end
or the backends (see DESIGN.md section 6). The passes themselves arrive with the
static-graph compiler; this package exists now so the layout is fixed from the start.
"""
