"""Kernel bundles: the machine code of all of a program's kernels in one file, loaded in
one step on a restart.

NOTE: [Kernel bundles]
Numba loads a cached function in about 10 ms on the 2-core VM: it reads the function's
index and data files, unpickles its descriptor, parses its LLVM bitcode (kept for inlining
into other functions), hands the object code to the JIT engine and builds a Python
wrapper. W5's 68 kernels took 0.7 s of a restart that way, where graphjit needs only
each kernel's machine code: the driver calls kernels by address ([Kernel calls by
address] in codegen.py), never through Numba's wrappers or by linking.

So once a program's kernels are compiled or loaded by Numba, ``write`` copies from Numba's
cache files what each one's code needs into ``<cache>/bundles/<key>.pickle``: the object
code, the name of its entry function, its Numba environment (and those it refers to: the
objects the code may reach, which ``set_env`` points its globals at, as Numba's loader
does) and its reload hooks (starting Numba's thread pool before a parallel kernel runs).
``load`` hands all the object files to Numba's JIT engine at once and looks up the entry
addresses: 16 ms for W5's 68 kernels.

The key is what Numba's own cache key is made of, for every kernel together: the kernel
module's file name (the hash of its text: the code, its flags), the signature, Numba's
and llvmlite's versions, the machine (``codegen.magic_tuple()``: target triple, CPU name
and features) and the ``NUMBA_*`` settings. A bundle that cannot be read, or whose code
LLVM does not resolve, is ignored and the kernels are loaded the usual way.

Each kernel's code is added to the engine once per process: ``native.BUNDLED`` maps the
kernels loaded from bundles to their addresses, and ``native.kernel_address`` answers
from it first, so a later program with the same kernel, bundled or not, reuses that code
(two definitions of one symbol in the engine would leave one of them without its
environment). A kernel Numba has already loaded in this process is taken from Numba.
A bundle is sealed with a checksum as Numba's cache files are here (numba_cache.py): a
garbled one is a miss, never machine code run. ``GRAPHJIT_KERNEL_BUNDLES=0`` turns bundles
off.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading

from ..numba_cache import seal, unseal
from ..source import write_atomically
from .native import BUNDLED, bundle_key, kernel_address

FORMAT = 1
_ENVS: list = []   # the environments of loaded kernels, alive as long as their code
_LOCK = threading.Lock()  # (a tiered program's background compile loads too)


def enabled() -> bool:
    return os.environ.get("GRAPHJIT_KERNEL_BUNDLES", "1").strip().lower() not in (
        "0", "off", "false", "no")


def _context():
    from numba.core.registry import cpu_target
    return cpu_target.target_context


def _path(kernels) -> str:
    import llvmlite
    import numba

    from ..cache import cache_dir
    h = hashlib.sha256(f"{FORMAT} {numba.__version__} {llvmlite.__version__} "
                       f"{_context().codegen().magic_tuple()}".encode())
    h.update(repr(sorted((k, v) for k, v in os.environ.items()
                         if k.startswith("NUMBA_") and k != "NUMBA_CACHE_DIR")).encode())
    for d, sig, _ in kernels:
        h.update(repr(bundle_key(d, sig)).encode())
    return os.path.join(cache_dir("bundles"), h.hexdigest()[:40] + ".pickle")


def exists(kernels) -> bool:
    """Whether ``kernels`` have a bundle (``load`` may still find it unusable)."""
    try:
        return bool(kernels) and enabled() and os.path.exists(_path(kernels))
    except Exception:
        return False


def load(kernels) -> list | None:
    """The addresses of ``kernels`` (``(dispatcher, signature, cost)`` each) from their
    bundle, or None when there is none to use."""
    if not kernels or not enabled():
        return None
    try:
        path = _path(kernels)
        with open(path, "rb") as f:
            blob = f.read()
        # Machine code is run, not checked: a garbled file must never reach the engine.
        records = pickle.loads(unseal(blob, path))
        if [r[0] for r in records] != [bundle_key(d, sig) for d, sig, _ in kernels]:
            raise ValueError(f"{path}: a bundle of other kernels")
    except FileNotFoundError:
        return None
    except Exception:  # truncated, garbled: the kernels are loaded one by one, and
        try:           # ``write`` makes the bundle again
            os.unlink(path)
        except OSError:
            pass
        return None
    with _LOCK:
        return _add(kernels, records)


def _add(kernels, records) -> list | None:
    import llvmlite.binding as llvm
    from numba.core.runtime import rtsys

    from .blas import cblas
    cblas()  # the GEMM symbols the code names (blas.py): registered before LLVM resolves them
    context = _context()
    codegen = context.codegen()
    engine = codegen._engine._ee
    addresses, fresh = [None] * len(kernels), []
    for i, ((d, sig, _), record) in enumerate(zip(kernels, records)):
        key = record[0]
        if key in BUNDLED or tuple(sig) in d.overloads:
            addresses[i] = kernel_address(d, sig)
        elif all(key != records[j][0] for j in fresh):
            fresh.append(i)
    if fresh:
        rtsys.initialize(context)  # the runtime (NRT) the code refers to
        hooks = {hook for i in fresh for hook in records[i][4]}
        for hook in hooks:  # e.g. Numba's thread pool for a parallel kernel
            hook()
        for i in fresh:
            engine.add_object_file(llvm.ObjectFileRef.from_data(records[i][5]))
        engine.finalize_object()
        for i in fresh:
            key, entry, env_name, env, _, _, envs = records[i]
            address = engine.get_function_address(entry)
            if not address:
                return None
            codegen.set_env(env_name, env)
            for e in envs:
                codegen.set_env(e.env_name, e)
            _ENVS.append((env, envs))
            BUNDLED[key] = address
    for i, ((d, sig, _), record) in enumerate(zip(kernels, records)):
        if addresses[i] is None:
            addresses[i] = BUNDLED[record[0]]
    return addresses


def write(kernels) -> None:
    """Write the bundle of ``kernels``, compiled or loaded by Numba in this process and in
    Numba's disk cache, unless it exists; nothing when a kernel has no cache entry."""
    if not kernels or not enabled():
        return
    try:
        path = _path(kernels)
        if os.path.exists(path):
            return
        from numba.core.caching import Cache
        context = _context()
        records = []
        for d, sig, _ in kernels:
            cache = getattr(d, "_cache", None)
            if not isinstance(cache, Cache):
                return
            data = cache._cache_file.load(cache._index_key(tuple(sig), context.codegen()))
            if data is None:
                return
            (_, kind, payload), fndesc, env = data[0], data[1], data[2]
            reload_init, referenced_envs = data[7], data[8]
            if kind != "object":
                return
            records.append((bundle_key(d, sig), fndesc.llvm_func_name,
                            context.get_env_name(fndesc), env, tuple(reload_init),
                            payload[0], tuple(referenced_envs)))
        write_atomically(path, seal(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)))
    except Exception:  # a bundle is only a faster next start
        return
