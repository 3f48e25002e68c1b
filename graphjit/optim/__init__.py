"""graphjit.optim: PyTorch-style optimizers written with graphjit tensor ops."""

from .optimizer import Optimizer, required
from .sgd import SGD
from .adam import Adam, AdamW
from .adagrad import Adagrad
from .rmsprop import RMSprop
from .adadelta import Adadelta
from .lbfgs import LBFGS
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "LBFGS",
           "lr_scheduler"]
