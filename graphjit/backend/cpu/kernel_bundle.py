"""Kernel bundles: the machine code of all of a program's kernels in one file, loaded in
one step on a restart; and the driver's, in a file of its own ([Bundled drivers], below).

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
addresses: 16 ms for W5's 68 kernels (1-2 ms with the environments of ``_environment`` and
Numba's runtime from the disk, [The runtime's machine code on disk] in nrt_cache.py).

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
(kernels' and drivers') off.
"""
from __future__ import annotations

import os
import pickle
import sys
import threading
import types

from ..sealed import read_pickle, write_pickle
from .native import BUNDLED, bundle_key, kernel_address

FORMAT = 1
_ENVS: list = []   # the environments of loaded kernels, alive as long as their code
_LOCK = threading.Lock()  # (a tiered program's background compile loads too)


def enabled() -> bool:
    return os.environ.get("GRAPHJIT_KERNEL_BUNDLES", "1").strip().lower() not in (
        "0", "off", "false", "no")


def cpu_context():
    """Numba's CPU target context (what compiles and loads the CPU kernels)."""
    from numba.core.registry import cpu_target
    return cpu_target.target_context


def _bundle_path(what: str, keys) -> str:
    """The bundle file of ``what`` ("kernels" or "driver") named by ``keys`` (``bundle_key``
    each)."""
    from ..cache import cache_dir
    from ..nrt_cache import machine_key
    return os.path.join(cache_dir("bundles"), machine_key(
        f"{what} {FORMAT}", *(repr(key) for key in keys)) + ".pickle")


def _keys(kernels) -> list:
    return [bundle_key(d, sig) for d, sig, _ in kernels]


def exists(kernels) -> bool:
    """Whether ``kernels`` have a bundle (``load`` may still find it unusable)."""
    try:
        return (bool(kernels) and enabled()
                and os.path.exists(_bundle_path("kernels", _keys(kernels))))
    except Exception:
        return False


class _Unpickler(pickle.Unpickler):
    """Unpickles a bundle's records, with the environments of Numba's own helper functions
    rebuilt without importing their modules (``_environment``)."""

    def find_class(self, module, name):
        if (module, name) == ("numba.core.environment", "_rebuild_env"):
            return _environment
        return super().find_class(module, name)


def _environment(modname, consts, env_name):
    """A compiled function's environment (Numba's ``_rebuild_env``, which imports the
    function's module to make the module's namespace the environment's globals).

    For a function of Numba's own (a helper Numba compiled inside a kernel: the array
    allocation of ``numba.np.arrayobj``...) or of a generated module, whose module is not
    imported yet, the environment gets a namespace of its own instead: importing
    numba.np.arrayobj took 18-27 ms of a restart's 100, and a program loaded from its
    bundles imports none of its modules ([Programs from their bundles] in prepared.py). An
    environment's globals are read only by code Numba compiled in object mode
    (numba/core/pylowering.py); kernels, drivers and Numba's helpers are nopython code,
    which reads an environment's constants at most, and those are restored as they are."""
    from numba.core.environment import Environment, _rebuild_env, lookup_environment

    from ..source import GENERATED_PREFIX
    env = lookup_environment(env_name)
    if env is not None:
        return env
    if modname in sys.modules or not modname.startswith(("numba.", GENERATED_PREFIX)):
        return _rebuild_env(modname, consts, env_name)
    env = Environment({"__name__": modname})
    env.consts[:] = consts
    env.env_name = env_name
    Environment._memo[env_name] = env
    return env


def load(kernels) -> list | None:
    """The addresses of ``kernels`` (``(dispatcher, signature, cost)`` each) from their
    bundle, or None when there is none to use."""
    return load_keyed([(bundle_key(d, sig), d, sig) for d, sig, _ in kernels])


def load_keyed(kernels) -> list | None:
    """``load`` for kernels named by their ``bundle_key``: ``(key, dispatcher, signature)``
    each, the dispatcher None where the kernel's module is not imported in this process
    (a program loaded from its bundles alone: [Programs from their bundles] in prepared.py)."""
    if not kernels or not enabled():
        return None
    keys = [key for key, _, _ in kernels]
    try:
        path = _bundle_path("kernels", keys)
        # Machine code is run, not checked: a garbled file never reaches the engine (sealed).
        records = read_pickle(path, _Unpickler)
        if [r[0] for r in records] != keys:
            os.unlink(path)
            return None
    except Exception:  # none, or unusable: the kernels are loaded one by one, and
        return None    # ``write`` makes the bundle again
    with _LOCK:
        return _add(kernels, records)


def _add(kernels, records) -> list | None:
    addresses, fresh = [None] * len(kernels), []
    for i, ((key, d, sig), record) in enumerate(zip(kernels, records)):
        if key in BUNDLED:
            addresses[i] = BUNDLED[key]
        elif d is not None and tuple(sig) in d.overloads:  # Numba has it in this process
            addresses[i] = kernel_address(d, sig)
        elif all(key != records[j][0] for j in fresh):
            fresh.append(i)
    found = _load_code([records[i] for i in fresh])
    if found is None:
        return None
    for i, address in zip(fresh, found):
        BUNDLED[records[i][0]] = address
    for i, (key, _, _) in enumerate(kernels):
        if addresses[i] is None:
            addresses[i] = BUNDLED[key]
    return addresses


def _load_code(records) -> list | None:
    """Hand the object code of ``records`` to Numba's JIT engine at once; the addresses of
    their entry functions (None if LLVM does not resolve one)."""
    if not records:
        return []
    import llvmlite.binding as llvm

    from ..nrt_cache import initialize_runtime
    from .blas import cblas
    cblas()  # the GEMM symbols the code names (blas.py): registered before LLVM resolves them
    context = cpu_context()
    codegen = context.codegen()
    engine = codegen._engine._ee
    initialize_runtime(context)  # the runtime (NRT) the code refers to
    for hook in {hook for r in records for hook in r[4]}:
        hook()  # e.g. Numba's thread pool for a parallel kernel
    for r in records:
        engine.add_object_file(llvm.ObjectFileRef.from_data(r[5]))
    engine.finalize_object()
    addresses = []
    for key, entry, env_name, env, _, _, envs in records:
        address = engine.get_function_address(entry)
        if not address:
            return None
        codegen.set_env(env_name, env)
        for e in envs:
            codegen.set_env(e.env_name, e)
        _ENVS.append((env, envs))
        addresses.append(address)
    return addresses


def _record(d, sig, context, wrapper: bool = False):
    """What the bundle keeps of ``d``'s machine code for ``sig`` from Numba's disk cache:
    ``(key, entry function, environment name, environment, reload hooks, object code,
    referenced environments)``, the entry being the function itself or (``wrapper``) its
    CPython wrapper; None when Numba's cache has no such entry."""
    from numba.core.caching import Cache
    cache = getattr(d, "_cache", None)
    if not isinstance(cache, Cache):
        return None
    data = cache._cache_file.load(cache._index_key(tuple(sig), context.codegen()))
    if data is None:
        return None
    (_, kind, payload), fndesc, env = data[0], data[1], data[2]
    reload_init, referenced_envs = data[7], data[8]
    if kind != "object":
        return None
    entry = fndesc.llvm_cpython_wrapper_name if wrapper else fndesc.llvm_func_name
    return (bundle_key(d, sig), entry, context.get_env_name(fndesc), env,
            tuple(reload_init), payload[0], tuple(referenced_envs))


def write(kernels) -> None:
    """Write the bundle of ``kernels``, compiled or loaded by Numba in this process and in
    Numba's disk cache, unless it exists; nothing when a kernel has no cache entry."""
    if not kernels or not enabled():
        return
    try:
        path = _bundle_path("kernels", _keys(kernels))
        if os.path.exists(path):
            return
        context = cpu_context()
        records = [_record(d, sig, context) for d, sig, _ in kernels]
        if all(r is not None for r in records):
            write_pickle(path, records)
    except Exception:  # a bundle is only a faster next start
        return


# ---- drivers --------------------------------------------------------------------------------
# NOTE: [Bundled drivers]
# A program's driver is called from Python, so what the bundle keeps of it is its CPython
# wrapper (the function Numba's dispatcher calls once it has chosen the overload), and
# ``load_driver`` makes that a Python callable as Numba does (``_dynfunc.make_function``,
# numba/core/cpu.py get_executable). Against loading it through Numba's cache, a restart
# saves the cache lookup (5-25 ms), and the dispatcher's typing of the first call's arrays,
# which imported numpy.ma (21-28 ms: Numba's typeof asks whether an array is a masked one).
# Every later call saves the dispatcher's type checks too.
#
# The wrapper unboxes its two arguments, checking only that each is an array of the
# signature's itemsize: a callable loaded so must only ever get two intp arrays, the
# buffers' object addresses and the kernels' ([Driver arguments] in native.py), which
# ``CompiledProgram.run_trusted`` makes ([Trusted program calls] in program.py). The
# dispatcher would have compiled another version for other arrays.
#
# ``DRIVERS`` keeps each driver loaded so per process, as ``BUNDLED`` does the kernels: its
# code is added to the engine once, and a program whose driver Numba has loaded or compiled
# in this process uses Numba's (``load_driver`` answers None).

DRIVERS: dict = {}  # bundle_key -> the driver's callable


def driver_bundled(d, sig) -> bool:
    """Whether driver ``d`` has a bundle for ``sig`` (``load_driver`` may still find it
    unusable), or was loaded from one in this process."""
    try:
        key = bundle_key(d, sig)
        return enabled() and (key in DRIVERS or os.path.exists(_bundle_path("driver", [key])))
    except Exception:
        return False


def load_driver(d, sig):
    """A callable running driver ``d``'s machine code for ``sig`` from its bundle (see
    [Bundled drivers]), or None: no bundle, or Numba has the driver in this process."""
    if tuple(sig) in d.overloads:
        return DRIVERS.get(bundle_key(d, sig))
    return load_driver_keyed(bundle_key(d, sig), d.py_func.__module__, d.py_func.__name__)


def load_driver_keyed(key, module_name: str, name: str):
    """``load_driver`` for the driver named by its ``bundle_key``, function ``name`` of the
    generated module ``module_name`` (which need not be imported)."""
    if not enabled():
        return None
    found = DRIVERS.get(key)
    if found is not None:
        return found
    try:
        record = read_pickle(_bundle_path("driver", [key]), _Unpickler)
        if record[0] != key:
            return None
    except Exception:
        return None
    from numba import _dynfunc
    with _LOCK:
        if key in DRIVERS:
            return DRIVERS[key]
        found = _load_code([record])
        if found is None:
            return None
        # (The module gives the callable its __module__ only.)
        module = sys.modules.get(module_name) or types.ModuleType(module_name)
        DRIVERS[key] = _dynfunc.make_function(module, name, f"compiled wrapper for {name!r}",
                                              found[0], record[3], ())
        return DRIVERS[key]


def write_driver(d, sig) -> None:
    """Write the bundle of driver ``d`` for ``sig`` (compiled or loaded by Numba in this
    process, and in Numba's disk cache) unless it exists."""
    if not enabled():
        return
    try:
        path = _bundle_path("driver", [bundle_key(d, sig)])
        if os.path.exists(path):
            return
        record = _record(d, sig, cpu_context(), wrapper=True)
        if record is not None:
            write_pickle(path, record)
    except Exception:  # a bundle is only a faster next start
        return
