"""Layers and containers: Linear, activations, Flatten, Identity, Sequential, ModuleList/Dict."""
from __future__ import annotations

import math
import operator
from collections import OrderedDict

from .. import creation
from ..ops import api
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """``y = x @ weight.T + bias``; weight [out, in] and bias drawn from U(-1/sqrt(in), 1/sqrt(in))
    (PyTorch's default: kaiming_uniform_ with a=sqrt(5))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(creation.empty(out_features, in_features, dtype=dtype))
        if bias:
            self.bias = Parameter(creation.empty(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


def _activation(name, fn, doc, **defaults):
    """A Module class wrapping ``fn``; constructor arguments become keyword arguments."""
    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        opts = dict(defaults)
        for key, value in zip(defaults, args):
            opts[key] = value
        for key, value in kwargs.items():
            if key not in defaults:
                raise TypeError(f"{name}() got an unexpected argument {key!r}")
            opts[key] = value
        object.__setattr__(self, "_opts", opts)

    def forward(self, x):
        return fn(x, **self._opts)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._opts.items())

    return type(name, (Module,), {"__init__": __init__, "forward": forward,
                                  "extra_repr": extra_repr, "__doc__": doc})


ReLU = _activation("ReLU", api.relu, "max(x, 0)")
Tanh = _activation("Tanh", api.tanh, "tanh(x)")
Sigmoid = _activation("Sigmoid", api.sigmoid, "1 / (1 + exp(-x))")
GELU = _activation("GELU", api.gelu, "x * Phi(x) ('none') or its tanh approximation ('tanh')",
                   approximate="none")
SiLU = _activation("SiLU", api.silu, "x * sigmoid(x)")
LeakyReLU = _activation("LeakyReLU", api.leaky_relu, "x if x > 0 else negative_slope * x",
                        negative_slope=0.01)
Softplus = _activation("Softplus", api.softplus, "log(1 + exp(beta x)) / beta", beta=1.0,
                       threshold=20.0)
Softmax = _activation("Softmax", api.softmax, "softmax over dim", dim=None)
LogSoftmax = _activation("LogSoftmax", api.log_softmax, "log-softmax over dim", dim=None)


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        return api.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Sequential(Module):
    """Modules applied in order; indexable (``model[0]``, ``model[-1]``, ``model[1:]``)."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def _index(self, idx: int) -> int:
        n = len(self._modules)
        idx = operator.index(idx)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a Sequential of {n} modules")
        return idx % n

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[self._index(idx)][1]

    def __setitem__(self, idx, module):
        key = list(self._modules)[self._index(idx)]
        self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def __getitem__(self, idx):
        items = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(items[idx])
        return items[idx]

    def __setitem__(self, idx, module):
        key = list(self._modules)[idx]
        self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


class ModuleDict(Module):
    def __init__(self, modules=None):
        super().__init__()
        for k, m in (modules or {}).items():
            self.add_module(k, m)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()
