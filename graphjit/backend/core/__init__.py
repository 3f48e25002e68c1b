"""What both targets' code generators share: nothing in here knows CPU loops or CUDA threads.

- ``indexing.py``: static index arithmetic (strides, broadcasting, affine offsets, slices);
- ``literals.py``: dtypes and values as generated source (``np.float32(0.5)``);
- ``scalar.py``: an op's scalar expression with typed literals (``OpDef.scalar``);
- ``kernel.py``: the kernel writer every emitter writes through, the emitter tables,
  the graph check before code generation;
- ``buffers.py``: the buffers a program's driver takes (results, workspace slots, updates
  in place), from the graph's buffer plan (graphjit/ir/buffers.py);
- ``fused.py``: the layout of a fused body over its loop domain, and the writer of its
  steps (loads, scalar expressions, stores);
- ``reduce.py``, ``index.py``, ``linalg.py``, ``shape.py``, ``scan.py``: what one op
  family's emitters share on both targets (combining reductions, index plans, matrix
  product sizes, slices, the rows and the sort order of scans);
- ``program.py``: what a compiled program checks and returns on every call.
"""
