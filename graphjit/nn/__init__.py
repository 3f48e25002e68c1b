"""``graphjit.nn``: modules, layers and losses with PyTorch's names."""
from . import functional, init  # noqa: F401
from .layers import (GELU, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ModuleDict,  # noqa: F401
                     ModuleList, ReLU, Sequential, Sigmoid, SiLU, Softmax, Softplus, Tanh)
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: F401
from .module import Module  # noqa: F401
from .parameter import Parameter  # noqa: F401
