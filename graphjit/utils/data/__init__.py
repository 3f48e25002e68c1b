"""graphjit.utils.data: datasets, samplers and the DataLoader, as ``torch.utils.data``.

Batches are graphjit tensors. Shuffles and splits draw from graphjit's global generator
unless given ``generator=`` (see [Data generators] in ``_rng.py``), so ``graphjit.manual_seed``
makes them reproducible. ``num_workers > 0`` loads batches in worker processes
([DataLoader workers] in ``worker.py``).
"""
from .collate import default_collate, default_convert
from .dataloader import DataLoader
from .dataset import (ChainDataset, ConcatDataset, Dataset, IterableDataset, StackDataset, Subset,
                      TensorDataset, random_split)
from .distributed import DistributedSampler
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                      SubsetRandomSampler, WeightedRandomSampler)
from .worker import WorkerInfo, get_worker_info

__all__ = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset",
           "DistributedSampler",
           "IterableDataset", "RandomSampler", "Sampler", "SequentialSampler", "StackDataset",
           "Subset", "SubsetRandomSampler", "TensorDataset", "WeightedRandomSampler",
           "WorkerInfo", "default_collate", "default_convert", "get_worker_info", "random_split"]
