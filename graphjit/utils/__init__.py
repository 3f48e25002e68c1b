"""graphjit.utils: utilities outside the tensor library proper, as ``torch.utils``."""
from . import data

__all__ = ["data"]
