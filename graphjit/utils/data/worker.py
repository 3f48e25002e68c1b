"""The worker side of ``DataLoader(num_workers > 0)``: the loop each worker process runs,
``get_worker_info()``, and how results and exceptions travel back to the main process.

# NOTE: [DataLoader workers]
The protocol is PyTorch's. Each worker has its own index pipe (PyTorch: a queue; see
[Index pipes] in ``dataloader.py``); all share one result queue.
The main process sends ``(task_idx, index)`` round-robin over the workers (``index`` is what
the batch sampler yielded: a list of indices, or ``[None] * batch_size`` for an iterable
dataset), keeps ``prefetch_factor * num_workers`` tasks outstanding, and hands batches out in
task order, holding early arrivals back. A worker answers every task, with its batch or with
an ``ExceptionWrapper`` (the main process re-raises it with the worker's traceback text, at
that batch's place in the order), or, for an iterable dataset whose iterator is spent, with
``IterableDatasetStopIteration``: the main process then stops sending it work and skips the
tasks it had queued. ``None`` on an index pipe (or its end) tells a worker to exit;
``ResumeIteration`` (persistent workers) to start a new epoch, answered so stale results can
be told apart.

Results are pickled by the worker itself before they go on the queue, so a batch that
cannot be pickled becomes an error in the main process rather than a lost item and a hang
(multiprocessing's queue would pickle it in a background thread and only print the error).

Workers are daemonic and watch their parent's pid, so neither an interpreter exit nor a
killed parent leaves them behind; they take everything they need as arguments of a
module-level function, so any start method works (``fork`` on Linux is the default, as in
PyTorch; ``spawn`` requires a picklable dataset, collate_fn and worker_init_fn). A forked
worker must not run compiled parallel code once this process has: Numba's GNU OpenMP layer
kills such a child (the main process reports the dead worker and suggests ``spawn``).
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import sys
import traceback

import numpy as np

from ... import random as _random
from . import _fetch

# How often a worker waiting for work checks that its parent is alive, and how often the main
# process waiting for a batch checks that its workers are (seconds).
STATUS_CHECK_INTERVAL = 1.0

_worker_info = None


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: ``id``, ``num_workers``, ``seed``
    (the worker's seed for this run: ``base_seed + id``) and ``dataset`` (this worker's copy).
    Read-only, as in PyTorch."""

    __initialized = False

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.__keys = tuple(kwargs)
        self.__initialized = True

    def __setattr__(self, key, value):
        if self.__initialized:
            raise RuntimeError(f"Cannot assign attributes to {type(self).__name__} objects")
        super().__setattr__(key, value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__keys)
        return f"{type(self).__name__}({fields})"


def get_worker_info():
    """In a DataLoader worker process, its ``WorkerInfo``; in the main process, None.

    An ``IterableDataset.__iter__`` uses it to give each worker its own share of the data, and
    a ``worker_init_fn`` to configure the worker's copy of the dataset."""
    return _worker_info


class KeyErrorMessage(str):
    """A KeyError prints its message with ``repr`` (quotes, ``\\n``); this one prints as is."""

    def __repr__(self) -> str:
        return self


class ExceptionWrapper:
    """An exception raised in a worker: its type and its formatted traceback, picklable."""

    def __init__(self, exc_info=None, where: str = "in background"):
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def __getstate__(self):
        state = dict(self.__dict__)
        try:
            pickle.dumps(self.exc_type)
        except Exception:  # a class defined in a function: the text still names it
            state["exc_type"] = RuntimeError
        return state

    def reraise(self):
        """Raise the worker's exception type in this process, with the worker's traceback in
        the message (a type that can't be made from one message string becomes RuntimeError)."""
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = KeyErrorMessage(msg)
        try:
            exception = self.exc_type(msg)
        except Exception:
            raise RuntimeError(msg) from None
        raise exception


class IterableDatasetStopIteration:
    """A worker's iterable dataset is spent."""

    def __init__(self, worker_id: int):
        self.worker_id = worker_id


class ResumeIteration:
    """Persistent workers: start the next epoch (a worker echoes it back)."""


def worker_seeds(base_seed: int, worker_id: int):
    """The seed of worker ``worker_id`` (graphjit's and Python's ``random``), and a NumPy
    legacy seed derived from both numbers, as PyTorch seeds ``np.random`` in workers."""
    seed = base_seed + worker_id
    np_seed = np.random.SeedSequence([worker_id, base_seed]).generate_state(4)
    return seed, np_seed


def _dumps(idx, data, worker_id: int) -> bytes:
    try:
        return pickle.dumps((idx, data), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        wrapper = ExceptionWrapper(where=f"in DataLoader worker process {worker_id} while sending "
                                         "a batch to the main process (it must be picklable)")
        return pickle.dumps((idx, wrapper), protocol=pickle.HIGHEST_PROTOCOL)


def worker_loop(iterable, dataset, index_pipe, data_queue, done_event, auto_collation,
                collate_fn, drop_last, base_seed, init_fn, worker_id, num_workers, parent_pid):
    """The body of one worker process; see [DataLoader workers]."""
    global _worker_info
    try:
        seed, np_seed = worker_seeds(base_seed, worker_id)
        random.seed(seed)
        _random.manual_seed(seed)
        np.random.seed(np_seed)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed,
                                  dataset=dataset)
        where = f"in DataLoader worker process {worker_id}"

        def make_fetcher():
            return _fetch.make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last)

        init_exception = fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make_fetcher()
        except Exception:
            init_exception = ExceptionWrapper(where=where)
        iteration_end = False
        # A fork or spawn child watches its parent's pid (it changes when the parent dies); a
        # forkserver child's parent is the server, so it watches the main process's sentinel.
        direct = os.getppid() == parent_pid
        parent = multiprocessing.parent_process()

        def parent_alive():
            if direct:
                return os.getppid() == parent_pid
            return parent is None or parent.is_alive()

        while parent_alive():  # else the main process died: exit
            if not index_pipe.poll(STATUS_CHECK_INTERVAL):
                if done_event.is_set():
                    break
                continue
            try:
                r = index_pipe.recv()
            except EOFError:  # the main process closed the pipe
                break
            if isinstance(r, ResumeIteration):
                data_queue.put(_dumps(r, None, worker_id))
                iteration_end = False
                if init_exception is None:
                    try:
                        fetcher = make_fetcher()
                    except Exception:
                        init_exception = ExceptionWrapper(where=where)
                continue
            if r is None:
                break
            if done_event.is_set() or iteration_end:
                continue  # shutting down, or spent: the main process skips these tasks
            idx, index = r
            if init_exception is not None:
                data = init_exception  # worker_init_fn or iter(dataset) failed: every task says so
            else:
                try:
                    data = fetcher.fetch(index)
                except Exception as e:
                    if isinstance(e, StopIteration) and iterable:
                        data = IterableDatasetStopIteration(worker_id)
                        iteration_end = True
                    else:
                        data = ExceptionWrapper(where=where)
            data_queue.put(_dumps(idx, data, worker_id))
            del data, idx, index, r  # don't hold the last batch while waiting for work
    except KeyboardInterrupt:
        pass  # the main process gets it too and shuts the workers down
    if done_event.is_set():
        # Results nobody will read must not keep this process from exiting.
        data_queue.cancel_join_thread()
        data_queue.close()
