"""``graphjit.nn``: modules, layers and losses with PyTorch's names."""
from . import functional, init, parallel, utils  # noqa: F401
from .attention import MultiheadAttention  # noqa: F401
from .batchnorm import BatchNorm1d, BatchNorm2d  # noqa: F401
from .conv import Conv1d, Conv2d, ConvTranspose2d, Fold, Unfold  # noqa: F401
from .dropout import Dropout, Dropout1d, Dropout2d  # noqa: F401
from .layers import (ELU, GELU, Flatten, Identity, LeakyReLU, Linear,  # noqa: F401
                     LogSoftmax, ModuleDict, ModuleList, ReLU, Sequential, Sigmoid, SiLU,
                     Softmax, Softplus, Tanh)
from .loss import (BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss,  # noqa: F401
                   CosineSimilarity, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss,
                   NLLLoss, SmoothL1Loss)
from .module import Module  # noqa: F401
from .normalization import GroupNorm, LayerNorm  # noqa: F401
from .padding import (CircularPad1d, CircularPad2d, ConstantPad1d,  # noqa: F401
                      ConstantPad2d, ReflectionPad1d, ReflectionPad2d, ReplicationPad1d,
                      ReplicationPad2d, ZeroPad1d, ZeroPad2d)
from .parameter import Parameter  # noqa: F401
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d,  # noqa: F401
                      AdaptiveMaxPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d)
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase  # noqa: F401
from .sparse import Embedding  # noqa: F401
from .transformer import TransformerEncoder, TransformerEncoderLayer  # noqa: F401
from .upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d  # noqa: F401
