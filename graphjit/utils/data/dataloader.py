"""``DataLoader``: batches from a dataset, in the main process or in worker processes.

Names, arguments, defaults, errors and ``len()`` follow ``torch.utils.data.DataLoader``. The
multi-process protocol is described in [DataLoader workers] (``worker.py``).
"""
from __future__ import annotations

import itertools
import math
import multiprocessing
import multiprocessing.context
import os
import pickle
import queue
import signal
import sys
import time
import weakref

from . import _fetch, _rng
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
from .worker import (STATUS_CHECK_INTERVAL, ExceptionWrapper, IterableDatasetStopIteration,
                     ResumeIteration, worker_loop)

__all__ = ["DataLoader"]

# How long shutting down waits for the workers, all together, before terminating them (s).
_SHUTDOWN_JOIN_TIMEOUT = 2.0


class _InfiniteConstantSampler(Sampler):
    """The sampler of an iterable dataset: ``None`` forever (the fetcher ignores indices)."""

    def __iter__(self):
        while True:
            yield None


def _default_context():
    # fork on Linux, as PyTorch (Python's own default there; 3.14 moves it to forkserver):
    # workers start in milliseconds and need nothing pickled. Elsewhere the platform's
    # default (spawn on macOS and Windows, where fork is unsafe or absent).
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


class DataLoader:
    """Iterate over ``dataset`` in batches, as ``torch.utils.data.DataLoader``.

    ``batch_size`` samples per batch (``None``: no batching, samples one by one through
    ``default_convert``); ``shuffle=True`` draws a new order every epoch (``RandomSampler``,
    from ``generator``, or with None from graphjit's global generator: ``gj.manual_seed(s)``
    fixes the order); or a custom ``sampler`` / ``batch_sampler``. ``collate_fn`` (default
    ``default_collate``) makes a batch from a list of samples; ``drop_last`` drops a last,
    short batch. ``num_workers > 0`` loads batches in that many worker processes (each seeded
    with ``base_seed + worker_id``; see ``get_worker_info``, ``worker_init_fn``), keeping
    ``prefetch_factor`` batches per worker in flight and returning batches in order; a
    worker's exception is re-raised here with its traceback; ``timeout`` (seconds, 0: none)
    bounds the wait for one batch; ``persistent_workers`` keeps the workers between epochs.
    ``pin_memory`` and ``pin_memory_device`` are accepted and do nothing (there is no pinned
    host memory on graphjit's CPU path); ``in_order=False`` is accepted and batches still come
    in order (which it allows).

    ``len(loader)`` is the number of batches (``len(batch_sampler)``); for an
    ``IterableDataset`` it is estimated from ``len(dataset)``, as in PyTorch.
    """

    __initialized = False

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers: int = 0, collate_fn=None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None,
                 persistent_workers: bool = False, pin_memory_device: str = "",
                 in_order: bool = True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; "
                             "use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order

        if isinstance(dataset, IterableDataset):
            self._iterable = True
            if shuffle not in (False, None):
                raise ValueError("DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler "
                                 f"option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified "
                                 f"batch_sampler option, but got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
            self._iterable = False

        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")

        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers
        self.__initialized = True
        self._iterator = None

    @property
    def multiprocessing_context(self):
        return self.__multiprocessing_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, context):
        if context is not None:
            if self.num_workers <= 0:
                raise ValueError("multiprocessing_context can only be used with multi-process "
                                 "loading (num_workers > 0), but got "
                                 f"num_workers={self.num_workers}")
            if isinstance(context, str):
                methods = multiprocessing.get_all_start_methods()
                if context not in methods:
                    raise ValueError("multiprocessing_context option should specify a valid start "
                                     f"method in {methods!r}, but got "
                                     f"multiprocessing_context={context!r}")
                context = multiprocessing.get_context(context)
            if not isinstance(context, multiprocessing.context.BaseContext):
                raise TypeError("multiprocessing_context option should be a valid context object "
                                "or a string specifying the start method, but got "
                                f"multiprocessing_context={context!r}")
        self.__multiprocessing_context = context

    def __setattr__(self, attr, value):
        if self.__initialized and attr in ("batch_size", "batch_sampler", "sampler", "drop_last",
                                           "dataset", "persistent_workers"):
            raise ValueError(f"{attr} attribute should not be set after "
                             f"{type(self).__name__} is initialized")
        super().__setattr__(attr, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        # What the iterators draw from: batches of indices, or single indices without batching.
        return self.batch_sampler if self._auto_collation else self.sampler

    def _get_iterator(self):
        if self.num_workers == 0:
            return _SingleProcessDataLoaderIter(self)
        return _MultiProcessingDataLoaderIter(self)

    def __iter__(self):
        if self.persistent_workers and self.num_workers > 0:
            if self._iterator is None:
                self._iterator = self._get_iterator()
            else:
                self._iterator._reset()
            return self._iterator
        return self._get_iterator()

    def __len__(self) -> int:
        if self._iterable:
            length = len(self.dataset)  # a TypeError where the dataset has no len, as PyTorch
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last \
                    else math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)


class _BaseDataLoaderIter:
    # The iterators copy what they need from the loader and keep no reference to it, so a
    # loader that goes away takes its persistent workers with it (no reference cycle).
    def __init__(self, loader: DataLoader):
        self._dataset = loader.dataset
        self._iterable = loader._iterable
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._collate_fn = loader.collate_fn
        self._timeout = loader.timeout
        self._sampler_iter = iter(self._index_sampler)
        # Drawn by every new iterator, workers or not, as PyTorch does: the global generator
        # advances the same way whatever num_workers is, so shuffles match between the two.
        # (Persistent workers keep one iterator: their later epochs draw no base seed.)
        self._base_seed = _rng.draw_seed(loader.generator)
        self._num_yielded = 0

    def __iter__(self):
        return self

    def _reset(self):
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0

    def _next_index(self):
        return next(self._sampler_iter)  # StopIteration ends the epoch

    def _next_data(self):
        raise NotImplementedError

    def __next__(self):
        data = self._next_data()
        self._num_yielded += 1
        return data

    def __len__(self) -> int:
        return len(self._index_sampler)

    def __getstate__(self):
        raise NotImplementedError(f"{type(self).__name__} cannot be pickled")


class _SingleProcessDataLoaderIter(_BaseDataLoaderIter):
    def __init__(self, loader: DataLoader):
        super().__init__(loader)
        self._fetcher = _fetch.make_fetcher(self._iterable, self._dataset, self._auto_collation,
                                            self._collate_fn, self._drop_last)

    def _next_data(self):
        index = self._next_index()
        return self._fetcher.fetch(index)


class _Workers:
    """The processes, index pipes, result queue and done event of one multi-process iterator.

    # NOTE: [Worker shutdown]
    The iterator is often collected as part of a reference cycle (an exception's traceback
    holds its frames), and the garbage collector runs the weakref finalizers and ``__del__``
    of everything in the cycle in no useful order: multiprocessing closes a Process's
    sentinel, a Connection its file descriptor, a Queue stops its writer thread, all possibly
    before an iterator ``__del__`` would ask the workers to exit. So these resources live here,
    held by a ``weakref.finalize`` on the iterator and never by anything the iterator's
    cycle can reach alone: when the iterator goes, they are still intact, and ``shutdown``
    runs (once) with them. ``weakref.finalize`` also runs it at interpreter exit.
    Tasks go through one-way pipes this process writes itself (PyTorch: queues, whose
    background writer thread is one of the things a collection can stop first); a task is at
    most a list of ``batch_size`` indices, far below a pipe's buffer.
    """

    def __init__(self, context):
        self.owner_pid = os.getpid()
        self.data_queue = context.Queue()
        self.done_event = context.Event()
        self.pipes = []
        self.processes = []


def _shutdown(workers: _Workers) -> None:
    """Stop the workers: ask, wait a little, then terminate; see [Worker shutdown]."""
    if os.getpid() != workers.owner_pid:
        return  # a forked copy of the iterator owns no workers
    try:
        workers.done_event.set()
        for pipe in workers.pipes:
            try:
                pipe.send(None)
            except OSError:
                pass  # that worker is gone
        deadline = time.monotonic() + _SHUTDOWN_JOIN_TIMEOUT
        for p in workers.processes:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for p in workers.processes:
            if p.is_alive():
                p.terminate()  # busy in __getitem__ past the deadline, or hung
        for p in workers.processes:
            p.join(timeout=1.0)
        for pipe in workers.pipes:
            pipe.close()
        workers.data_queue.cancel_join_thread()
        workers.data_queue.close()


class _MultiProcessingDataLoaderIter(_BaseDataLoaderIter):
    """Batches from worker processes, in order; see [DataLoader workers] in ``worker.py``."""

    def __init__(self, loader: DataLoader):
        super().__init__(loader)
        self._num_workers = loader.num_workers
        self._prefetch_factor = loader.prefetch_factor
        self._persistent_workers = loader.persistent_workers
        context = loader.multiprocessing_context or _default_context()
        self._start_method = context.get_start_method()
        res = _Workers(context)
        # Called to stop the workers; runs at most once (see [Worker shutdown]).
        self._shutdown_workers = weakref.finalize(self, _shutdown, res)
        self._data_queue = res.data_queue
        self._index_pipes = res.pipes
        self._workers = res.processes
        for worker_id in range(self._num_workers):
            reader, writer = context.Pipe(duplex=False)
            worker = context.Process(
                target=worker_loop, daemon=True,
                args=(self._iterable, self._dataset, reader, res.data_queue, res.done_event,
                      self._auto_collation, self._collate_fn, self._drop_last, self._base_seed,
                      loader.worker_init_fn, worker_id, self._num_workers, res.owner_pid))
            worker.start()
            reader.close()  # the worker has its own copy now (fork and spawn alike)
            res.pipes.append(writer)
            res.processes.append(worker)
        self._reset(first_iter=True)

    def _reset(self, first_iter: bool = False):
        super()._reset()
        self._send_idx = 0  # the next task to send
        self._rcvd_idx = 0  # the next task to return
        # task -> (worker_id,) while outstanding, (worker_id, data) once it came early
        self._task_info = {}
        self._tasks_outstanding = 0
        self._workers_status = [True] * self._num_workers
        self._worker_queue_idx_cycle = itertools.cycle(range(self._num_workers))
        if not first_iter:
            # Persistent workers: start the next epoch and drop whatever the last one left.
            for worker_id in range(self._num_workers):
                self._send(worker_id, ResumeIteration())
            waiting = self._num_workers
            while waiting > 0:
                idx, _ = self._get_data()
                if isinstance(idx, ResumeIteration):
                    waiting -= 1
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _try_put_index(self):
        try:
            index = self._next_index()
        except StopIteration:
            return
        for _ in range(self._num_workers):  # the next worker still working
            worker_id = next(self._worker_queue_idx_cycle)
            if self._workers_status[worker_id]:
                break
        else:
            return
        self._send(worker_id, (self._send_idx, index))
        self._task_info[self._send_idx] = (worker_id,)
        self._tasks_outstanding += 1
        self._send_idx += 1

    def _send(self, worker_id: int, message):
        try:
            self._index_pipes[worker_id].send(message)
        except OSError:
            pass  # the worker died: _check_workers reports it while waiting for its results

    def _check_workers(self):
        """Raise if a worker that should be working has died."""
        dead = [w for wid, w in enumerate(self._workers)
                if self._workers_status[wid] and not w.is_alive()]
        if not dead:
            return
        causes = []
        for w in dead:
            code = w.exitcode
            if code is not None and code < 0:
                try:
                    causes.append(f"pid {w.pid} killed by signal {signal.Signals(-code).name}")
                except ValueError:
                    causes.append(f"pid {w.pid} killed by signal {-code}")
            else:
                causes.append(f"pid {w.pid} exit code {code}")
        self._shutdown_workers()
        hint = ""
        if self._start_method == "fork":
            # Numba's GNU OpenMP threading layer aborts a forked child that uses it once the
            # parent has (a compiled parallel kernel ran here, then one runs in a worker).
            hint = (". If the workers run compiled (Numba parallel) code, pass "
                    "multiprocessing_context='spawn': OpenMP can't run in a process forked "
                    "from one that already used it")
        raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(str(w.pid) for w in dead)}) "
                           f"exited unexpectedly ({'; '.join(causes)}){hint}")

    def _get_data(self):
        """The next (task_idx, data) any worker sent, honouring ``timeout``."""
        if not self._shutdown_workers.alive:
            raise RuntimeError("this DataLoader iterator's workers were shut down after an "
                               "earlier error; start a new iteration over the DataLoader")
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait = STATUS_CHECK_INTERVAL
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            try:
                payload = self._data_queue.get(timeout=wait)
            except queue.Empty:
                self._check_workers()
                if deadline is not None and time.monotonic() >= deadline:
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds "
                                       "waiting for a batch from its workers") from None
                continue
            return pickle.loads(payload)

    def _next_data(self):
        while True:
            # Skip the tasks of workers whose iterable dataset is spent (they send no answer).
            while self._rcvd_idx < self._send_idx:
                info = self._task_info.get(self._rcvd_idx)
                if info is not None and (len(info) == 2 or self._workers_status[info[0]]):
                    break
                self._task_info.pop(self._rcvd_idx, None)
                self._rcvd_idx += 1
            else:
                if not self._persistent_workers:
                    self._shutdown_workers()
                raise StopIteration
            if len(self._task_info[self._rcvd_idx]) == 2:  # it came early
                return self._process_data(self._task_info.pop(self._rcvd_idx)[1])
            idx, data = self._get_data()
            self._tasks_outstanding -= 1
            if isinstance(data, IterableDatasetStopIteration):
                if self._persistent_workers:
                    self._workers_status[data.worker_id] = False  # idle until the next epoch
                else:
                    self._mark_worker_as_unavailable(data.worker_id)
                self._try_put_index()
                continue
            if idx != self._rcvd_idx:
                self._task_info[idx] += (data,)
                continue
            del self._task_info[idx]
            return self._process_data(data)

    def _process_data(self, data):
        self._rcvd_idx += 1
        self._try_put_index()
        if isinstance(data, ExceptionWrapper):
            data.reraise()
        return data

    def _mark_worker_as_unavailable(self, worker_id: int):
        self._send(worker_id, None)  # exit
        self._workers_status[worker_id] = False
