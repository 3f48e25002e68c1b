"""``DistributedSampler``: each rank's share of a data set (``torch.utils.data.distributed``)."""
from __future__ import annotations

import math

from .sampler import Sampler


class DistributedSampler(Sampler):
    """The indices of ``dataset`` for rank ``rank`` of ``num_replicas`` (by default this
    process's rank and the world size of graphjit.distributed), as PyTorch's: every rank
    takes the same order (a permutation drawn from ``seed + epoch`` with ``shuffle``, else
    ``0, 1, ...``), padded by repeating its start to a multiple of ``num_replicas`` (or,
    with ``drop_last``, cut to one), and keeps every ``num_replicas``-th index from
    position ``rank``. So the ranks' shares are disjoint (up to the padding), equally
    long, and together the whole data set. Call ``set_epoch(e)`` before each epoch for a
    new order; pass it to a ``DataLoader`` as ``sampler=`` (with ``shuffle`` unset)."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from ... import distributed as dist
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler needs num_replicas and rank, or an "
                                   "initialised process group (graphjit.distributed."
                                   "init_process_group)")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        if drop_last and len(dataset) % num_replicas != 0:
            self.num_samples = math.ceil((len(dataset) - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(len(dataset) / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            from ...creation import randperm
            from ...random import Generator
            g = Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = randperm(n, generator=g).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            else:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order ``__iter__`` gives next (with ``shuffle``)."""
        self.epoch = epoch
