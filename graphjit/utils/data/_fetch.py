"""Fetchers: one batch (or sample) from a dataset, given what the sampler yielded. The same
code runs in the main process (``num_workers=0``) and in worker processes."""
from __future__ import annotations

import numpy as np

from ...tensor import Tensor
from .collate import default_collate
from .dataset import Subset, TensorDataset


def gather_tensor_rows(dataset, indices):
    """``default_collate([dataset[i] for i in indices])`` for a ``TensorDataset`` of CPU
    tensors that need no gradient, or a ``Subset`` (of a Subset...) of one, in one NumPy
    gather per tensor; None where that does not hold.

    The same values, dtypes and structure (a list, as default_collate makes of tuples) as the
    sample-by-sample path, which indexes every tensor once per sample through the op layer
    and stacks the rows: 17.7 ms against 0.2 ms for a shuffled batch of 64 MNIST-sized rows
    (60000 x 784 float32 and int64 labels, measured on the development machine)."""
    while type(dataset) is Subset:
        try:
            indices = [dataset.indices[i] for i in indices]
        except Exception:
            return None  # let the ordinary path raise its own error
        dataset = dataset.dataset
    if type(dataset) is not TensorDataset:
        return None
    tensors = dataset.tensors
    if not all(isinstance(t, Tensor) and type(t._data) is np.ndarray and not t._requires_grad
               for t in tensors):
        return None
    rows = np.asarray(indices)
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        return None
    return [Tensor._wrap(t._data[rows]) for t in tensors]


class MapDatasetFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool):
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last

    def fetch(self, index):
        if self.auto_collation:
            if self.collate_fn is default_collate:
                batch = gather_tensor_rows(self.dataset, index)
                if batch is not None:
                    return batch
            getitems = getattr(self.dataset, "__getitems__", None)
            if callable(getitems):
                data = getitems(index)
            else:
                data = [self.dataset[i] for i in index]
        else:
            data = self.dataset[index]
        return self.collate_fn(data)


class IterableDatasetFetcher:
    """Takes ``len(index)`` samples from the dataset's iterator per batch (the index itself is
    ``[None] * batch_size``); raises StopIteration once the iterator is spent."""

    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool):
        self.dataset_iter = iter(dataset)
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if self.auto_collation:
            data = []
            for _ in index:
                try:
                    data.append(next(self.dataset_iter))
                except StopIteration:
                    self.ended = True
                    break
            if not data or (self.drop_last and len(data) < len(index)):
                raise StopIteration
        else:
            data = next(self.dataset_iter)
        return self.collate_fn(data)


def make_fetcher(iterable: bool, dataset, auto_collation, collate_fn, drop_last):
    cls = IterableDatasetFetcher if iterable else MapDatasetFetcher
    return cls(dataset, auto_collation, collate_fn, drop_last)
