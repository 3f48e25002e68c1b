"""``Parameter``: a leaf tensor that a Module registers as trainable state."""
from __future__ import annotations

import numpy as np

from .. import devices, dtypes
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that ``Module.__setattr__`` registers as a parameter. It shares memory with
    the tensor it wraps and requires grad unless told otherwise (``torch.nn.Parameter``)."""

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty((0,), dtype=dtypes.get_default_dtype().np)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        """A new Parameter with a copy of the data and the same ``requires_grad`` (not the
        ``.grad``: torch.nn.Parameter's deep copies have none; see [Copies of tensors] in
        graphjit/tensor_copy.py)."""
        if id(self) not in memo:
            memo[id(self)] = Parameter(Tensor._wrap(devices.copy(self._data)),
                                       requires_grad=self._requires_grad)
        return memo[id(self)]

    def __reduce_ex__(self, protocol):
        return (Parameter, (Tensor._wrap(self._data), self._requires_grad))
