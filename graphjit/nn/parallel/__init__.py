"""``graphjit.nn.parallel``: ``DistributedDataParallel`` (on graphjit.distributed, MPI)."""
from .distributed import DistributedDataParallel  # noqa: F401
