"""An MPI program (run by test_mpi.py as ``mpiexec -n 2 python mpi_training.py``): data
parallel training against one process on the whole batch, eager and compiled.

Each check prints ``OK <name>`` on rank 0 or raises (which aborts the job: [Abort on
error]); the last line is ``DONE``. Every rank computes the single-process reference
itself, from the same seed, on the whole batch.
"""
import copy
import sys
import time

import numpy as np

import graphjit as gj
import graphjit.distributed as dist
import graphjit.nn as nn
import graphjit.nn.functional as F
from graphjit.nn.parallel import DistributedDataParallel as DDP

STEPS = 3
BATCH = 8
TOL = dict(rtol=2e-5, atol=2e-6)  # float32 rounding over a few steps

dist.init_process_group("mpi", timeout=120)
rank, world = dist.get_rank(), dist.get_world_size()
assert BATCH % world == 0


_start = time.perf_counter()


def ok(name):
    if rank == 0:
        print(f"OK {name} ({time.perf_counter() - _start:.1f} s)", flush=True)


def same_on_every_rank(arrays, what):
    """Every rank holds bitwise the same arrays."""
    flat = np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in arrays])
    mine = gj.tensor(flat)
    everyone = [gj.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    for r, theirs in enumerate(everyone):
        if not np.array_equal(theirs.numpy(), flat):
            raise AssertionError(f"{what}: rank {r} differs from rank {rank}")


def make_model(seed):
    gj.manual_seed(seed)
    # (Small: compiling its steps is most of what this program costs CI.)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def make_opt(name, params):
    if name == "sgd":
        return gj.optim.SGD(params, lr=0.1, momentum=0.9)
    return gj.optim.Adam(params, lr=0.01)


def data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, 6)).astype(np.float32)
    y = rng.integers(0, 3, BATCH).astype(np.int64)
    return x, y


def step_fn(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def reference(opt_name):
    """One process, the whole batch, plain eager."""
    model = make_model(0)
    step = step_fn(model, make_opt(opt_name, model.parameters()))
    x, y = data()
    for _ in range(STEPS):
        step(gj.from_numpy(x), gj.from_numpy(y))
    return [p.detach().numpy().copy() for p in model.parameters()]


def data_parallel(opt_name, compiled, bucket_cap_mb):
    # Rank 1 starts from other weights: DDP's broadcast must give it rank 0's.
    model = DDP(make_model(rank), bucket_cap_mb=bucket_cap_mb)
    step = step_fn(model, make_opt(opt_name, model.parameters()))
    if compiled:
        step = gj.compile(step)
    x, y = data()
    shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    for _ in range(STEPS):
        step(gj.from_numpy(x[shard].copy()), gj.from_numpy(y[shard].copy()))
    return model, step


def shard(a):
    return a[rank * BATCH // world:(rank + 1) * BATCH // world].copy()


for opt_name in ("sgd", "adam"):
    want = reference(opt_name)
    for compiled in (False, True):
        # 200 bytes: two buckets for four tensors (ordering, several MPI calls).
        model, step = data_parallel(opt_name, compiled, bucket_cap_mb=200 / 2**20)
        got = [p.detach().numpy() for p in model.parameters()]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **TOL)
        same_on_every_rank(got, f"{opt_name} compiled={compiled}")
        if compiled:
            graph = step.graphs()[-1]
            reduces = [n for n in graph.nodes if n.op.name == "all_reduce"]
            assert len(reduces) == len(model.reducer.buckets) == 2, \
                (len(reduces), len(model.reducer.buckets))
        ok(f"{opt_name} {'compiled' if compiled else 'eager'}: {world} ranks == 1 process")

# Eagerly, each bucket starts from the hook of its last gradient, before backward ends.
model = DDP(make_model(0), bucket_cap_mb=200 / 2**20)
x, y = data()
F.cross_entropy(model(gj.from_numpy(shard(x))), gj.from_numpy(shard(y))).backward()
assert model.reducer.started_during_backward == len(model.reducer.buckets) == 2, \
    model.reducer.started_during_backward
ok("eager buckets start during backward")

# CUDA tensors (Numba's simulator in the tests) go through host copies.
if gj.cuda.is_available():
    model = DDP(make_model(rank).to("cuda"))
    F.cross_entropy(model(gj.from_numpy(shard(x)).cuda()), gj.from_numpy(shard(y)).cuda()
                    ).backward()
    ref = make_model(0)
    F.cross_entropy(ref(gj.from_numpy(x)), gj.from_numpy(y)).backward()
    for p, r in zip(model.parameters(), ref.parameters()):
        assert p.grad.device.type == "cuda"
        np.testing.assert_allclose(p.grad.cpu().numpy(), r.grad.numpy(), **TOL)
    ok("cuda tensors through host copies")

# state_dict keys as PyTorch's, and the wrapped module.
model = DDP(make_model(0))
assert list(model.state_dict()) == ["module." + k for k in model.module.state_dict()]
assert isinstance(model.module, nn.Sequential)
ok("state_dict keys")

# no_sync: two half-batches accumulated locally, then synced == one whole-batch backward.
x, y = data()
half = BATCH // world // 2
mine = x[rank * BATCH // world:(rank + 1) * BATCH // world]
labels = y[rank * BATCH // world:(rank + 1) * BATCH // world]
model = DDP(make_model(0))
with model.no_sync():
    (F.cross_entropy(model(gj.from_numpy(mine[:half].copy())),
                     gj.from_numpy(labels[:half].copy())) / 2).backward()
local = [p.grad.numpy().copy() for p in model.parameters()]
(F.cross_entropy(model(gj.from_numpy(mine[half:].copy())),
                 gj.from_numpy(labels[half:].copy())) / 2).backward()
ref = make_model(0)
F.cross_entropy(ref(gj.from_numpy(x)), gj.from_numpy(y)).backward()
for p, r in zip(model.parameters(), ref.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), r.grad.numpy(), **TOL)
if world > 1:
    assert any(not np.allclose(a, p.grad.numpy()) for a, p in zip(local, model.parameters()))
ok("no_sync accumulates locally, the next backward averages")

# Buffers: rank 0's running statistics are broadcast at construction and every forward.
gj.manual_seed(rank)
bn = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4))
bn[1].running_mean.copy_(gj.full((4,), float(rank)))
model = DDP(bn)
same_on_every_rank([b.detach().numpy() for b in model.buffers()], "buffers after construction")
model(gj.from_numpy(x[rank * 2:rank * 2 + 4].copy()))
bn[1].running_mean.add_(float(rank))  # drift apart, as local updates would
model(gj.from_numpy(x[:4].copy()))
assert np.array_equal(bn[1].running_mean.numpy(), model.module[1].running_mean.numpy())
ok("buffers broadcast")

# Collectives (the API): every op, in place, eager and inside a compiled function.
t = gj.tensor([1.0, -2.0]) * (rank + 1)
dist.all_reduce(t, dist.ReduceOp.MAX)
np.testing.assert_array_equal(t.numpy(), [world, -2.0])
t = gj.tensor([3, 4]) * (rank + 1)
dist.all_reduce(t)
assert t.dtype is gj.int64 and t.tolist() == [3 * world * (world + 1) // 2,
                                              4 * world * (world + 1) // 2]
work = dist.all_reduce(gj.ones(3), dist.ReduceOp.AVG, async_op=True)
work.wait()


@gj.compile
def compiled_collectives(x):
    y = x * 2.0
    dist.all_reduce(y, dist.ReduceOp.AVG)
    z = x + 0.0
    dist.broadcast(z, world - 1)
    return y, z


for _ in range(2):
    y, z = compiled_collectives(gj.full((5,), float(rank)))
    np.testing.assert_allclose(y.numpy(), np.full(5, world - 1.0))
    np.testing.assert_array_equal(z.numpy(), np.full(5, world - 1.0))
ok("collectives eager and compiled")

# Differentiable all_reduce: y = sum_q (q + 1) x_q on every rank, each rank's loss
# sum(y ** 2), so d(sum of the losses)/dx_r = world * 2 y (r + 1).
from graphjit.distributed.nn import functional as DF  # noqa: E402

x = gj.tensor([1.0, 2.0], requires_grad=True)
(DF.all_reduce(x * (rank + 1)) ** 2).sum().backward()
y = sum(q + 1 for q in range(world)) * np.array([1.0, 2.0])
np.testing.assert_allclose(x.grad.numpy(), world * 2 * y * (rank + 1), rtol=1e-6)
ok("all_reduce gradient")

dist.barrier()
dist.destroy_process_group()
assert not dist.is_initialized()
if rank == 0:
    print("DONE", flush=True)
sys.exit(0)
