"""Train the MLP of train_mlp.py data-parallel on MPI: one process per rank.

    mpiexec -n 2 python examples/train_distributed.py [--epochs 5] [--batch 64] [--eager]

(``pip install -e ".[distributed,examples]"`` brings mpi4py, MPICH and its mpiexec; across
machines, give mpiexec a host file.) Every rank holds a replica of the model
(``DistributedDataParallel``: rank 0's weights broadcast at construction) and trains on
its own shard of each epoch (``DistributedSampler``); after each backward the gradients
are averaged over the ranks, inside the one compiled training step (``--eager``: op by
op), so the replicas stay identical. Each rank reports its throughput. Run without
mpiexec, it is one rank.
"""
import argparse
import os
import sys
import time

import numpy as np

import graphjit as gj
import graphjit.distributed as dist
import graphjit.nn as nn
from graphjit.nn.parallel import DistributedDataParallel
from graphjit.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_mlp import load_data, make_step  # noqa: E402  (the same data and step)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="samples per rank and step")
    parser.add_argument("--eager", action="store_true", help="run the step op by op")
    args = parser.parse_args()

    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    say = print if rank == 0 else (lambda *a, **k: None)

    gj.manual_seed(rank)  # different initial weights per rank: DDP gives all rank 0's
    name, (xtr, ytr), (xte, yte) = load_data(np.random.default_rng(0))  # the same everywhere
    train = TensorDataset(gj.from_numpy(xtr), gj.from_numpy(ytr))
    sampler = DistributedSampler(train, shuffle=True, seed=0, drop_last=True)
    # Full batches only: one static shape, one program.
    loader = DataLoader(train, batch_size=args.batch, sampler=sampler, drop_last=True)
    say(f"data: {name}: {len(ytr)} train samples, {len(sampler)} per rank on {world} ranks, "
        f"{len(loader)} steps of {args.batch} per rank and epoch")

    model = DistributedDataParallel(nn.Sequential(nn.Linear(64, 128), nn.ReLU(),
                                                  nn.Linear(128, 10)))
    opt = gj.optim.Adam(model.parameters(), lr=1e-2)
    step = make_step(model, opt)
    if not args.eager:
        step = gj.compile(step)

    @gj.compile
    def predict(x):
        return model.module(x).argmax(-1)

    steady = []  # seconds per step after the first epoch (which compiles)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        losses = []
        for x, y in loader:
            start = time.perf_counter()
            losses.append(step(x, y).item())
            if epoch > 0:
                steady.append(time.perf_counter() - start)
        loss = gj.tensor(float(np.mean(losses)))
        dist.all_reduce(loss, dist.ReduceOp.AVG)  # the mean over ranks, for the report
        with gj.no_grad():
            acc = float((predict(gj.from_numpy(xte)).numpy() == yte).mean())
        say(f"epoch {epoch + 1}: loss {loss.item():.4f}  test accuracy {acc:.3f}")

    # Per-rank throughput in the steady state, gathered to rank 0.
    per_step = float(np.median(steady)) if steady else float("nan")
    mine = gj.tensor([per_step, args.batch / per_step])
    everyone = [gj.zeros(2, dtype=gj.float64) for _ in range(world)]
    dist.all_gather(everyone, mine.to(gj.float64))
    say(f"throughput ({'eager' if args.eager else 'compiled'} step, median after epoch 1):")
    for r, t in enumerate(everyone):
        seconds, samples = t.tolist()
        say(f"  rank {r}: {seconds * 1e3:.2f} ms per step, {samples:.0f} samples/s")
    total = sum(t.tolist()[1] for t in everyone)
    say(f"  all ranks: {total:.0f} samples/s")
    weights = model.module[0].weight.detach().numpy()
    mine = gj.tensor(np.array([np.float64(weights.sum())]))
    same = [gj.zeros(1, dtype=gj.float64) for _ in range(world)]
    dist.all_gather(same, mine)
    say(f"replicas identical: {len({t.item() for t in same}) == 1}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
