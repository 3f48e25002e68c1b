"""Compiling a program's kernels on every core: forked processes fill Numba's disk cache.

# NOTE: [Parallel kernel compilation]
Numba compiles one function at a time, in Python (type inference, parfor passes, lowering)
and then in LLVM, so a cold compile of W2's step (18 kernels) kept one core of two busy
for ~5 s. Each kernel is a module of its own with ``cache=True`` ([Kernel modules] in
codegen.py), so any process that compiles it leaves its machine code in Numba's cache
for every other process. ``compile_kernels`` therefore forks worker processes that take
kernels from a shared queue, compile them and exit; this process takes from the same
queue meanwhile, then loads what the workers compiled from the cache (a few milliseconds
each). Fork, not spawn: a forked worker starts with graphjit, Numba and the kernel modules
already imported (a spawned one would pay ~0.5 s of imports first).

- The queue is a pipe holding the kernels' indices, most expensive first (parallel
  kernels, then by text length), as 2-byte records, written before the fork; a read of
  2 bytes from a pipe is atomic, so every index is taken by exactly one process.
- Nothing a worker does is trusted: this process compiles, or loads from the cache, every
  kernel itself afterwards. A worker that failed, crashed or was killed costs time, never
  correctness (a kernel that does not compile fails here, with the usual error; the
  cache's files are written atomically and checked, see [Generated modules on disk]).
- Only kernels with no entry in the cache at all are sent to workers (a kernel another
  program or process compiled already is loaded here), and workers are only forked for two
  kernels or more, so a warm start forks nothing.
- Forked while holding Numba's compiler lock, so no other thread of this process is in
  the middle of a compile whose half-done state the worker would copy. A worker exits with
  ``os._exit``: no atexit handlers, no flushing of this process's buffered output.
- ``GRAPHJIT_COMPILE_WORKERS=N`` sets the number of workers (0: compile everything here);
  by default one per usable core but this process's. Only on Linux: fork is unsafe on
  macOS with some system libraries and absent on Windows.
"""
from __future__ import annotations

import os
import signal
import struct
import sys

from .native import kernel_address

_RECORD = struct.Struct("<H")
# A pipe holds 64 KiB before a write blocks: at most this many indices fit before the fork.
_MAX_QUEUED = 30000


def compile_workers() -> int:
    """The number of worker processes ``compile_kernels`` may fork."""
    value = os.environ.get("GRAPHJIT_COMPILE_WORKERS", "").strip()
    if value:
        try:
            return max(int(value), 0)
        except ValueError:
            raise ValueError(f"GRAPHJIT_COMPILE_WORKERS must be a whole number, got {value!r}")
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(cores - 1, 0)


def compile_kernels(entries) -> list:
    """``entries``: ``(dispatcher, signature, cost)`` per kernel to compile (``signature``
    a tuple of Numba types, ``cost`` a guess of its compile time, only for the order).
    Returns each kernel's address, compiled (with the help of forked workers where
    worthwhile) or loaded from Numba's cache."""
    fresh = [i for i, (d, sig, _) in enumerate(entries)
             if tuple(sig) not in d.overloads and not _cached_or_uncacheable(d)]
    workers = min(compile_workers(), len(fresh) - 1)
    if workers > 0 and len(fresh) <= _MAX_QUEUED:
        fresh.sort(key=lambda i: -entries[i][2])
        _compile_forked([entries[i][:2] for i in fresh], workers)
    return [kernel_address(d, sig) for d, sig, _ in entries]


def _cached_or_uncacheable(dispatcher) -> bool:
    """Whether a worker cannot help with ``dispatcher``: Numba's cache has an index for it
    (it was compiled before, for some signature: this process loads it), or it has no disk
    cache at all (what a worker compiled would not reach this process)."""
    from numba.core.caching import Cache
    cache = getattr(dispatcher, "_cache", None)
    if not isinstance(cache, Cache):
        return True  # nothing a worker compiled would reach this process: compile here
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    return index is None or os.path.exists(index)


def _compile_forked(entries, workers: int) -> None:
    read_end, pids = _fork(entries, workers)
    try:
        _drain(read_end, entries, keep_going=False)
    except BaseException:
        kill_workers(pids)
        raise
    finally:
        os.close(read_end)
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass


def start_workers(entries, workers: int, nice: int = 0, then=None) -> list:
    """Fork ``workers`` processes that compile ``entries`` (``(dispatcher, signature)``,
    dearest first) into Numba's disk cache from a shared queue and exit; returns their pids
    without waiting (the caller reaps them: ``os.waitpid``). Nothing is compiled here.
    ``nice``: added to the workers' niceness (19: they run only on cores nothing else wants).
    ``then``: a function one more forked process runs once every worker has exited (its
    pid is returned too)."""
    read_end, pids = _fork(entries, workers, nice, then)
    os.close(read_end)
    return pids


def kill_workers(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _fork(entries, workers: int, nice: int = 0, then=None):
    """The queue's read end and the pids of ``workers`` forked processes draining it, their
    niceness raised by ``nice`` (and of the process running ``then``: see start_workers).

    ``then``'s process knows the workers are done by a pipe whose write end every worker
    holds (inherited) and no one else: its read sees the end of the pipe once the last
    worker has exited, however it ended."""
    from numba.core.compiler_lock import global_compiler_lock
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"".join(_RECORD.pack(i) for i in range(len(entries))))
    finally:
        os.close(write_end)
    done_read, done_write = os.pipe() if then is not None else (None, None)
    pids = []
    try:
        with global_compiler_lock:
            for _ in range(workers):
                pid = os.fork()
                if pid == 0:  # the worker
                    status = 1
                    try:
                        _own_symbol_names()
                        if nice:
                            os.nice(nice)
                        _drain(read_end, entries, keep_going=True)
                        status = 0
                    finally:
                        os._exit(status)
                pids.append(pid)
            if then is not None:
                pid = os.fork()
                if pid == 0:  # waits for the workers, then runs ``then``
                    status = 1
                    try:
                        os.close(done_write)
                        os.close(read_end)
                        if nice:
                            os.nice(nice)
                        while os.read(done_read, 1):
                            pass
                        _own_symbol_names()
                        then()
                        status = 0
                    finally:
                        os._exit(status)
                pids.append(pid)
    except BaseException:
        kill_workers(pids)
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        os.close(read_end)
        raise
    finally:
        if then is not None:
            os.close(done_read)
            os.close(done_write)
    return read_end, pids


def _own_symbol_names() -> None:
    """Give this forked worker symbol names of its own. Numba names a function's machine
    code after a per-process counter (``FunctionIdentity._unique_ids``) and, for a parallel
    loop's body, after the address of its parfor object (``__numba_parfor_gufunc_<hash>``):
    workers forked from one parent start with the same counter and the same heap, so two
    workers compiling two different kernels can produce the same symbol. The parent then
    loads both kernels' code into one LLVM engine, and one kernel's call binds to the other's
    loop body (suspected cause of intermittent wrong results and heap corruption with
    parallel kernels compiled by workers; see the closing note of 2026-12-07). A random
    start of the counter makes each worker's names its own."""
    import itertools
    import secrets

    from numba.core.bytecode import FunctionIdentity
    FunctionIdentity._unique_ids = itertools.count(1 + (secrets.randbits(40) << 20))


def _drain(read_end: int, entries, keep_going: bool) -> None:
    """Compile the kernels whose indices this process takes from the queue until it is
    empty. A worker (``keep_going``) skips a kernel that fails: this process reports it."""
    while True:
        record = os.read(read_end, _RECORD.size)
        if len(record) < _RECORD.size:
            return
        dispatcher, signature = entries[_RECORD.unpack(record)[0]]
        try:
            dispatcher.compile(signature)
        except Exception:
            if not keep_going:
                raise
