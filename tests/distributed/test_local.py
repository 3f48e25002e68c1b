"""What of graphjit.distributed runs in one process without MPI: the sampler, the bucket
assignment, the backward hooks DDP stands on, and the errors before init_process_group."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
import graphjit.distributed as dist
import graphjit.nn as nn
from graphjit import autograd
from graphjit.nn.parallel.distributed import assign_buckets
from graphjit.utils.data import DataLoader, DistributedSampler, TensorDataset


# ---- DistributedSampler (PyTorch's indices) -----------------------------------------------

@pytest.mark.parametrize("n, replicas, drop_last, want", [
    (10, 3, False, [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]),   # padded from the start
    (10, 3, True, [[0, 3, 6], [1, 4, 7], [2, 5, 8]]),            # cut to a multiple
    (2, 4, False, [[0], [1], [0], [1]]),                          # padding longer than n
    (8, 2, False, [[0, 2, 4, 6], [1, 3, 5, 7]]),
])
def test_sampler_shards_as_pytorch(n, replicas, drop_last, want):
    got = [list(DistributedSampler(range(n), replicas, r, shuffle=False, drop_last=drop_last))
           for r in range(replicas)]
    assert got == want
    assert all(len(DistributedSampler(range(n), replicas, r, shuffle=False,
                                      drop_last=drop_last)) == len(w) for r, w in enumerate(want))


def test_sampler_shuffles_alike_on_every_rank_and_per_epoch():
    shards = [DistributedSampler(range(11), 2, r, seed=3) for r in range(2)]
    first = [list(s) for s in shards]
    assert len(first[0]) == len(first[1]) == 6  # 11 padded to 12
    assert set(first[0]) | set(first[1]) == set(range(11))
    assert [list(s) for s in shards] == first  # the same epoch, the same order
    for s in shards:
        s.set_epoch(1)
    assert [list(s) for s in shards] != first
    assert set(sum(([*s] for s in shards), [])) == set(range(11))


def test_sampler_in_a_data_loader_and_its_errors():
    data = TensorDataset(gj.arange(6, dtype=gj.float32))
    loader = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, 2, 1, shuffle=False))
    assert [b[0].tolist() for b in loader] == [[1.0, 3.0], [5.0]]
    with pytest.raises(ValueError, match="Invalid rank 2"):
        DistributedSampler(data, 2, 2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(data)


# ---- gradient buckets -------------------------------------------------------------------

def test_buckets_in_reverse_order_first_small_then_capped_one_dtype_each():
    lin = [nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 4)]
    params = [p for m in lin for p in m.parameters()]
    extra = nn.Parameter(gj.zeros(8, dtype=gj.float64))
    buckets = assign_buckets(params + [extra], cap_bytes=1024, first_cap_bytes=256)
    names = {id(p): i for i, p in enumerate(params + [extra])}
    assert [[names[id(p)] for p in b] for b in buckets] == [[5, 4], [3, 2], [1, 0], [6]]
    assert all(len({p.dtype for p in b}) == 1 for b in buckets)


# ---- the hooks DDP uses ([Backward hooks]) ----------------------------------------------

def test_post_accumulate_grad_hooks_and_final_callbacks_eager_and_traced():
    gj.manual_seed(0)
    lin = nn.Linear(3, 2)
    seen = []

    def hook(p):
        seen.append(tuple(p.shape))
        if len(seen) == 1:
            autograd.queue_callback(lambda: seen.append("done"))

    handles = [p.register_post_accumulate_grad_hook(hook) for p in lin.parameters()]
    lin(gj.randn(4, 3)).sum().backward()
    assert seen == [(2,), (2, 3), "done"]  # backward's order, then the callback

    opt = gj.optim.SGD(lin.parameters(), lr=0.1)

    @gj.compile
    def step(x):
        opt.zero_grad()
        loss = lin(x).sum()
        loss.backward()
        opt.step()
        return loss

    seen.clear()
    step(gj.randn(4, 3))
    assert sorted(map(str, seen)) == sorted(["(2, 3)", "(2,)", "done"])  # at trace time
    seen.clear()
    step(gj.randn(4, 3))
    assert seen == []  # the program runs; nothing is traced again
    for h in handles:
        h.remove()
    lin(gj.randn(4, 3)).sum().backward()
    assert seen == []
    with pytest.raises(gj.AutogradError, match="during the backward pass"):
        autograd.queue_callback(lambda: None)
    with pytest.raises(gj.AutogradError, match="non-leaf"):
        (lin.weight * 2).register_post_accumulate_grad_hook(hook)


# ---- before init_process_group ----------------------------------------------------------

def test_errors_before_init_and_for_other_backends():
    assert dist.is_available() and not dist.is_initialized()
    with pytest.raises(dist.DistributedError, match="has not been initialized"):
        dist.get_rank()
    with pytest.raises(dist.DistributedError, match="has not been initialized"):
        dist.all_reduce(gj.ones(2))
    with pytest.raises(dist.DistributedError, match="MPI only"):
        dist.init_process_group("nccl")
    with pytest.raises(dist.DistributedError, match="has not been initialized"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))


def test_a_collective_op_without_its_group_says_so():
    handles = gj.tensor(np.zeros(gj.ops.distributed.TABLE_SIZE, np.int64))
    with pytest.raises(gj.GraphjitError, match="not initialised in this process"):
        gj.ops.distributed.all_reduce(gj.ones(3), handles)
    with pytest.raises(gj.DTypeError, match="float32, float64 or int64"):
        gj.ops.distributed.all_reduce(gj.ones(3, dtype=gj.bool), handles)
