"""Primitive ops. Importing this package registers every op family.

``graphjit.ops.describe(name)`` says where an op and each of its rules are defined.
"""
from . import creation, elementwise, grad, index, linalg, reduce, shape  # noqa: F401  (registration)
from . import window  # noqa: F401  (registration: unfold, fold)
from . import custom  # noqa: F401  (registration: custom_function, see graphjit.autograd.Function)
from . import random  # noqa: F401  (registration: rand_uniform)
from . import distributed  # noqa: F401  (registration: all_reduce, broadcast)
from . import scan  # noqa: F401  (registration: cumsum, prod, argsort)
from .registry import OpDef, all_ops, bind, describe, get, register  # noqa: F401
