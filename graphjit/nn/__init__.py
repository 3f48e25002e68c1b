"""``graphjit.nn``: modules, layers and losses with PyTorch's names."""
from . import functional, init, utils  # noqa: F401
from .layers import (GELU, Flatten, Identity, LeakyReLU, Linear,  # noqa: F401
                     LogSoftmax, ModuleDict, ModuleList, ReLU, Sequential, Sigmoid, SiLU,
                     Softmax, Softplus, Tanh)
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: F401
from .module import Module  # noqa: F401
from .parameter import Parameter  # noqa: F401
