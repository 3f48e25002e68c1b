"""``default_collate`` and ``default_convert``: samples to batches, as PyTorch's.

``collate(batch, collate_fn_map=...)`` dispatches on the type of the batch's first element:
the map's exact type first, then the first ``isinstance`` match in the map's order, then the
containers (mappings, namedtuples, sequences), recursively. A custom ``collate_fn`` can reuse
it with a map extended by its own types, as ``torch.utils.data._utils.collate.collate``.
"""
from __future__ import annotations

import collections.abc
import copy
import re

import numpy as np

from ... import dtypes
from ...creation import as_tensor
from ...ops.api import stack
from ...tensor import Tensor, tensor

__all__ = ["collate", "default_collate", "default_convert", "default_collate_fn_map"]

_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        "found {}")
# NumPy dtypes of strings and objects, which make no tensor (PyTorch's pattern).
_NP_STR_OBJ = re.compile(r"[SaUO]")


def collate_tensor_fn(batch, *, collate_fn_map=None):
    """``graphjit.stack(batch, 0)``. CPU tensors that need no gradient are stacked by one
    ``np.stack`` (the same values; going op by op costs two ops per sample)."""
    first = batch[0]
    if all(isinstance(t, Tensor) and type(t._data) is np.ndarray and not t._requires_grad
           and t.dtype is first.dtype and t.shape == first.shape for t in batch):
        return Tensor._wrap(np.stack([t._data for t in batch]))
    return stack(list(batch), 0)


def collate_numpy_array_fn(batch, *, collate_fn_map=None):
    """Arrays become tensors (``as_tensor``: graphjit's dtype for the array's) and are stacked."""
    first = batch[0]
    if _NP_STR_OBJ.search(first.dtype.str) is not None:
        raise TypeError(_ERR.format(first.dtype))
    if all(b.shape == first.shape and b.dtype == first.dtype for b in batch):
        return as_tensor(np.stack(batch))
    return collate([as_tensor(b) for b in batch], collate_fn_map=collate_fn_map)


def collate_numpy_scalar_fn(batch, *, collate_fn_map=None):
    """NumPy scalars keep their dtype (``np.float64`` -> float64, ``np.float32`` -> float32);
    other widths become int64 or the default float dtype, graphjit's only kinds."""
    return as_tensor(np.asarray(batch))


def collate_float_fn(batch, *, collate_fn_map=None):
    return tensor(list(batch), dtype=dtypes.float64)  # PyTorch: Python floats -> float64


def collate_int_fn(batch, *, collate_fn_map=None):
    return tensor(list(batch))  # int64, or bool when every element is a bool


def collate_str_fn(batch, *, collate_fn_map=None):
    return batch  # strings stay a sequence (a tuple inside tuple samples, as in PyTorch)


default_collate_fn_map = {
    Tensor: collate_tensor_fn,
    np.ndarray: collate_numpy_array_fn,
    (np.bool_, np.number): collate_numpy_scalar_fn,
    float: collate_float_fn,
    int: collate_int_fn,  # bool too (a subclass of int)
    str: collate_str_fn,
    bytes: collate_str_fn,
}


def collate(batch, *, collate_fn_map=None):
    """Collate ``batch`` (a sequence of samples of one structure) with ``collate_fn_map``."""
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for collate_type, fn in collate_fn_map.items():
            if isinstance(elem, collate_type):
                return fn(batch, collate_fn_map=collate_fn_map)
    if isinstance(elem, collections.abc.Mapping):
        values = {key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map)
                  for key in elem}
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                clone = copy.copy(elem)  # keeps the mapping's type and its other state
                clone.update(values)
                return clone
            return elem_type(values)
        except TypeError:
            return values
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
        return elem_type(*(collate(samples, collate_fn_map=collate_fn_map)
                           for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size (got "
                               f"lengths {[len(e) for e in batch]})")
        columns = [collate(samples, collate_fn_map=collate_fn_map) for samples in zip(*batch)]
        if isinstance(elem, tuple):
            return columns  # a list, as PyTorch returns for tuples
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                clone = copy.copy(elem)
                for i, column in enumerate(columns):
                    clone[i] = column
                return clone
            return elem_type(columns)
        except TypeError:
            return columns
    raise TypeError(_ERR.format(elem_type))


def default_collate(batch):
    """Put a list of samples together as a batch, as ``torch.utils.data.default_collate``.

    Tensors are stacked on a new first dimension; NumPy arrays become tensors and are
    stacked; Python floats become a float64 tensor, ints an int64 tensor, bools a bool tensor;
    NumPy scalars a tensor of their dtype; strings and bytes stay a sequence. Mappings,
    namedtuples and sequences are collated element-wise and keep their type, except that tuples
    become lists (PyTorch's rule), so ``[(x0, y0), (x1, y1)]`` gives ``[X, Y]``.
    graphjit has four dtypes: other NumPy integer widths give int64, other float widths the
    default float dtype."""
    return collate(batch, collate_fn_map=default_collate_fn_map)


def default_convert(data):
    """Turn NumPy arrays and scalars inside ``data`` into tensors, keeping the structure; the
    ``collate_fn`` when automatic batching is off (``batch_size=None``), as in PyTorch."""
    elem_type = type(data)
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _NP_STR_OBJ.search(data.dtype.str) else as_tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        values = {key: default_convert(data[key]) for key in data}
        try:
            if isinstance(data, collections.abc.MutableMapping):
                clone = copy.copy(data)
                clone.update(values)
                return clone
            return elem_type(values)
        except TypeError:
            return values
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        converted = [default_convert(d) for d in data]
        try:
            if isinstance(data, collections.abc.MutableSequence):
                clone = copy.copy(data)
                for i, d in enumerate(converted):
                    clone[i] = d
                return clone
            return elem_type(converted)
        except TypeError:
            return converted
    return data
