"""Compiler passes over graphjit's graph IR (Graph -> Graph).

One module per pass (``autodiff``, ``decompose``, ``simplify``, ``cse``, ``batch``, ``dce``,
``fuse``, ``gemm``; ``memory`` plans buffers; ``partition`` cuts a compiled forward's joint
graph into its forward and backward programs), ``manager.py`` to run a list of them with
verification and snapshots, and ``pipeline.py`` holding THE order.
The package depends on ``graphjit``'s IR and op registry only, never on the front end
or the backends (see DESIGN.md section 6). Importing it does no work: import the modules
you need (``from passes.pipeline import run_pipeline``).
"""

__all__ = ["autodiff", "batch", "cse", "dce", "decompose", "fuse", "gemm", "manager", "memory",
           "partition", "pipeline", "rewrite", "simplify"]
