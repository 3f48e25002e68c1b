"""Numba's runtime (NRT) started from machine code kept on disk.

NOTE: [The runtime's machine code on disk]
Before any Numba-compiled code runs, ``rtsys.initialize`` registers the runtime's C
functions with LLVM and compiles a small LLVM module of the runtime's own functions
(``NRT_incref``, ``NRT_decref``, ``NRT_MemInfo_data_fast``...), which every compiled
function calls. Numba compiles that module again in every process: 17-30 ms of each
restart on the 2-core VM (W7's restart spent more there than in loading all 60 of its
kernels from their bundle).

``initialize_runtime`` does what ``rtsys.initialize`` does, with the module's machine code
from ``<cache>/runtime/<key>.pickle`` when an earlier process left it there (Numba loads
it as it loads a cached function: object code, plus the bitcode that later compiles link
in), and otherwise compiles it as Numba does, keeping the object code, and writes the file.
The key is the machine and Numba's versions (``machine_key``): the same code Numba would
compile here. The file is sealed with a checksum (numba_cache.py): a garbled one is
compiled again, never run. Numba's own call to ``rtsys.initialize`` (before it compiles
anything) finds the runtime started and does nothing.
"""
from __future__ import annotations

import hashlib
import os

from .sealed import read_pickle, write_pickle

FORMAT = 1
# Where this process's runtime functions came from: "disk", "compiled" (and written), or
# None (not started by ``initialize_runtime``).
started_from = None


_MACHINE = []  # the hash of the machine part of machine_key, once per process


def machine_key(*parts: str) -> str:
    """A hash of what machine code compiled by this Numba on this machine depends on:
    Numba's and llvmlite's versions, the target (``codegen.magic_tuple()``: triple, CPU name
    and features) and the ``NUMBA_*`` settings but where its cache is (Numba reads them
    once, at its import), and ``parts``."""
    if not _MACHINE:  # (magic_tuple asks LLVM for the CPU's features: 5 ms each time)
        import llvmlite
        import numba
        from numba.core.registry import cpu_target
        h = hashlib.sha256(f"{numba.__version__} {llvmlite.__version__} "
                           f"{cpu_target.target_context.codegen().magic_tuple()}".encode())
        h.update(repr(sorted((k, v) for k, v in os.environ.items()
                             if k.startswith("NUMBA_") and k != "NUMBA_CACHE_DIR")).encode())
        _MACHINE.append(h.copy())
    h = _MACHINE[0].copy()
    for part in parts:
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:40]


def _path() -> str:
    from .cache import cache_dir
    return os.path.join(cache_dir("runtime"), machine_key(f"nrt {FORMAT}") + ".pickle")


def _read(path):
    """The serialized runtime library at ``path``, or None (missing or unusable)."""
    try:
        state = read_pickle(path)
        name, kind, (obj, bitcode) = state
        if kind == "object" and isinstance(obj, bytes) and isinstance(bitcode, bytes):
            return state
    except Exception:  # (read_pickle deleted an unusable file)
        return None
    return None


def initialize_runtime(context) -> None:
    """``rtsys.initialize(context)``, the runtime's own functions loaded from the disk cache
    when they are there (see [The runtime's machine code on disk])."""
    global started_from
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import nrtdynmod, rtsys
    if rtsys._init:
        return
    with global_compiler_lock:
        if rtsys._init:
            return
        try:
            path = _path()
        except Exception:  # no cache folder: Numba's way
            rtsys.initialize(context)
            return
        state = _read(path)
        compile_functions = nrtdynmod.compile_nrt_functions
        written = []

        def from_disk(ctx):
            return ctx.codegen().unserialize_library(state)

        def compiled_and_kept(ctx):
            ir_module, library = nrtdynmod.create_nrt_module(ctx)
            library.enable_object_caching()
            library.add_ir_module(ir_module)
            library.finalize()
            written.append(library.serialize_using_object_code())
            return library

        # rtsys.initialize does the rest (registering the C functions, its flags) as always.
        nrtdynmod.compile_nrt_functions = from_disk if state is not None else compiled_and_kept
        try:
            rtsys.initialize(context)
            started_from = "disk" if state is not None else "compiled"
        except Exception:
            if state is None or rtsys._init:
                raise
            nrtdynmod.compile_nrt_functions = compile_functions  # an unusable file: compile
            rtsys.initialize(context)
            started_from = "compiled"
        finally:
            nrtdynmod.compile_nrt_functions = compile_functions
        if written:
            try:
                write_pickle(path, written[0])
            except OSError:  # only a slower next start
                pass
