"""A generated CPU program's machine code, compiled or loaded: ``PreparedProgram`` (its
modules imported, codegen.py's ``prepare_program``) compiles or loads its kernels and
driver; ``load_from_bundles`` loads a program from its bundles without its modules."""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from ...errors import GraphjitError
from ..nrt_cache import initialize_runtime
from ..source import module_name, module_path
from . import kernel_bundle
from .native import ADDRESS_DTYPE
from .program import CompiledProgram
from .workers import _cached_or_uncacheable, compile_kernels

KERNEL_FUNCTION = "k"  # the kernel's function in its module ([Kernel modules] in codegen.py)


def _driver_signature():
    """The Numba signature of every driver: its buffers' array objects' addresses and its
    kernels' ([Driver arguments], [Kernel calls by address] in native.py)."""
    return _signature([ADDRESS_DTYPE, ADDRESS_DTYPE])


def _signature(params):
    from numba import from_dtype, types
    return tuple(types.Array(from_dtype(np.dtype(dt)), 1, "C") for dt in params)


# NOTE: [Programs from their bundles]
# A restart whose program the lowering cache knows (``generated`` given) and whose machine
# code is all in bundles (its kernels' bundle, its driver's: [Kernel bundles], [Bundled
# drivers] in kernel_bundle.py) needs none of the program's modules: ``load_from_bundles``
# names every kernel and the driver by its module's file name (the hash of its text, which
# ``generated`` holds) and signature, as the bundles do, and loads their code. Writing,
# checking and importing the modules, which makes one Numba dispatcher per kernel, took
# 7-28 ms of a restart (W5's 68 kernels the most). The program's ``dispatcher`` imports
# them when something asks for it (the dump tool, tests). Where this process imported the
# program module already, the usual way is as cheap, and taken.

def load_from_bundles(graph, name, generated, prepare) -> CompiledProgram | None:
    """The program of ``generated`` from its bundles alone, or None (see [Programs from
    their bundles]); ``prepare()`` imports its modules when its dispatcher is asked for
    (codegen.py's ``prepare_program``)."""
    files = getattr(generated, "kernel_files", None)
    if files is None or not kernel_bundle.enabled():
        return None
    name = name or graph.name
    start = time.perf_counter()
    path = module_path(generated.module_source, name, "cpu")
    if module_name(path) in sys.modules:
        return None
    folder = os.path.dirname(path)
    kernels = []
    for kernel, dtypes, _ in generated.kernel_table:
        sig = _signature([dt.np for dt in dtypes])
        module = sys.modules.get(module_name(os.path.join(folder, files[kernel])))
        kernels.append(((files[kernel], str(tuple(sig))), getattr(module, KERNEL_FUNCTION, None),
                        sig))
    addresses = kernel_bundle.load_keyed(kernels) if kernels else []
    if addresses is None:
        return None
    driver = kernel_bundle.load_driver_keyed(
        (os.path.basename(path), str(tuple(_driver_signature()))), module_name(path),
        generated.driver_name)
    if driver is None:
        return None
    program = CompiledProgram(graph, name, generated, path, driver,
                              np.array(addresses, dtype=ADDRESS_DTYPE),
                              time.perf_counter() - start)
    program.import_later(prepare)
    return program


class PreparedProgram:
    """A program whose modules are imported and whose kernels and driver are still to be
    compiled (or loaded from Numba's cache): ``finish()`` does it."""

    def __init__(self, graph, name, generated, path, module):
        self.graph, self.name, self.generated, self.path = graph, name, generated, path
        if module is None:
            return
        self.driver = getattr(module, generated.driver_name)
        self.kernels = [(getattr(module, kernel), _signature([dt.np for dt in dtypes]), cost)
                        for kernel, dtypes, cost in generated.kernel_table]
        self.driver_signature = _driver_signature()

    def missing(self) -> list:
        """``(dispatcher, signature)`` of the kernels, and the driver, that are neither
        compiled in this process nor in Numba's disk cache, dearest first."""
        driver_cost = 1 + max((cost for _, _, cost in self.kernels), default=0)
        found = [(cost, d, sig) for d, sig, cost in
                 self.kernels + [(self.driver, self.driver_signature, driver_cost)]
                 if tuple(sig) not in d.overloads and not _cached_or_uncacheable(d)]
        found.sort(key=lambda entry: -entry[0])
        return [(d, sig) for _, d, sig in found]

    def needs_bundles(self) -> bool:
        """Whether bundles are on and the kernels or the driver have none ([Kernel
        bundles], [Bundled drivers] in kernel_bundle.py)."""
        return kernel_bundle.enabled() and not (
            (not self.kernels or kernel_bundle.exists(self.kernels))
            and kernel_bundle.driver_bundled(self.driver, self.driver_signature))

    def all_available(self) -> bool:
        """Whether ``finish()`` only loads (nothing to compile, nothing uncacheable)."""
        from numba.core.caching import Cache
        entries = self.kernels + [(self.driver, self.driver_signature, 0)]
        if kernel_bundle.exists(self.kernels):
            entries = entries[-1:]
        if kernel_bundle.driver_bundled(self.driver, self.driver_signature):
            entries = entries[:-1]
        return all(tuple(sig) in d.overloads
                   or (isinstance(getattr(d, "_cache", None), Cache) and _cached_or_uncacheable(d))
                   for d, sig, _ in entries)

    def finish(self) -> CompiledProgram:
        start = time.perf_counter()
        try:
            # Numba's runtime first, from the disk cache ([The runtime's machine code on
            # disk]) before Numba's own compile would start it the slow way.
            initialize_runtime(kernel_bundle.cpu_context())
            # [Kernel bundles]: all kernels' machine code in one file, after a first run.
            addresses = kernel_bundle.load(self.kernels)
            if addresses is None:
                addresses = compile_kernels(self.kernels)
                kernel_bundle.write(self.kernels)
            table = np.array(addresses, dtype=ADDRESS_DTYPE)
            # [Bundled drivers]: the driver's CPython wrapper, called without Numba's
            # dispatcher, after a first run.
            driver = kernel_bundle.load_driver(self.driver, self.driver_signature)
            if driver is None:
                self.driver.compile(self.driver_signature)
                kernel_bundle.write_driver(self.driver, self.driver_signature)
                driver = self.driver
        except Exception as e:
            raise GraphjitError(f"Numba could not compile the program generated for graph "
                                f"{self.name!r} ({self.path}): {type(e).__name__}: {e}") from e
        program = CompiledProgram(self.graph, self.name, self.generated, self.path, driver,
                                  table, time.perf_counter() - start)
        program.dispatcher = self.driver  # (Numba's, whichever ran: its stats, its source)
        return program
