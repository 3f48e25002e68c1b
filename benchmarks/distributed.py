"""Weak scaling of W2 (784-512-512-10 ReLU MLP, batch 256 per rank, Adam) data-parallel on
MPI: time per training step on 1 and 2 ranks, and the share spent communicating.

    python benchmarks/distributed.py [--ranks 1 2] [--steps 30] [--json out.json]

launches itself as ``mpiexec -n N python benchmarks/distributed.py --worker`` for each N
(the distributed extra's mpiexec) and prints one table. Per rank and mode it times the
median step after warm-up (the first calls compile), the modes' steps interleaved so that
other load on the machine weighs on each alike; a row reports the slowest rank:

- ``local``: the same step with no DistributedDataParallel (no communication), the N
  ranks running at once: what sharing the machine costs on its own;
- ``ddp``: the step with DistributedDataParallel (its gradient all-reduce, 2 buckets);
- ``all-reduce``: only the collectives DDP makes, as one compiled function on buffers of
  the buckets' sizes: communication alone.

``comm share`` is (ddp - local) / ddp: what the gradient all-reduce adds to a step,
waiting for the slower rank included. Compiled and eager (``--eager-too``) steps.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def worker(args) -> None:
    import graphjit as gj
    import graphjit.distributed as dist
    import graphjit.nn as nn
    import graphjit.nn.functional as F
    from graphjit.nn.parallel import DistributedDataParallel
    from workloads.base import gj_load_linear
    from workloads.mlp import W2_SPEC as spec

    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    init = spec.init()
    rng = np.random.default_rng(rank)
    x = gj.from_numpy(init["x"] + 0.01 * rng.standard_normal(init["x"].shape, np.float32))
    y = gj.from_numpy(init["y"])

    def model_and_step(ddp: bool, compiled: bool):
        layers = []
        for k, (i, o) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:])):
            lin = nn.Linear(i, o)
            gj_load_linear(lin, init[f"W{k}"], init[f"b{k}"])
            layers += [lin] + ([nn.ReLU()] if k < spec.n_layers - 1 else [])
        model = nn.Sequential(*layers)
        if ddp:
            model = DistributedDataParallel(model)
        opt = gj.optim.Adam(model.parameters(), lr=spec.lr)

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        fn = gj.compile(step) if compiled else step
        return model, (lambda: fn().item())

    @gj.compile
    def reduce_all(*tensors):
        return [dist.nn.functional.all_reduce(t) for t in tensors]

    # The modes' steps interleaved, so that the other load on the machine weighs on all
    # alike: per round one step of each, after warm-up (compiling).
    results = {}
    for compiled in [True] + ([False] if args.eager_too else []):
        kind = "compiled" if compiled else "eager"
        _, local = model_and_step(False, compiled)
        model, ddp = model_and_step(True, compiled)
        buckets = [sum(p.numel() for p in b) for b in model.reducer.buckets]
        flats = [gj.zeros(n) for n in buckets]  # DDP's collectives alone
        runs = {f"{kind} local": local, f"{kind} ddp": ddp,
                f"{kind} all-reduce": lambda: reduce_all(*flats)}
        times = {name: [] for name in runs}
        for _ in range(3):
            for fn in runs.values():
                fn()
        dist.barrier()
        for _ in range(args.steps):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        results.update({name: float(np.median(t)) for name, t in times.items()})
    everyone = [gj.zeros(len(results), dtype=gj.float64) for _ in range(world)]
    dist.all_gather(everyone, gj.tensor(list(results.values()), dtype=gj.float64))
    if rank == 0:
        slowest = np.max([t.numpy() for t in everyone], axis=0)
        print("RESULT " + json.dumps({"ranks": world, "buckets": buckets,
                                      "bytes": 4 * sum(buckets),
                                      "seconds": dict(zip(results, slowest.tolist()))}),
              flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eager-too", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    rows = []
    for n in args.ranks:
        command = [mpiexec, "-n", str(n), sys.executable, os.path.abspath(__file__), "--worker",
                   "--steps", str(args.steps)] + (["--eager-too"] if args.eager_too else [])
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        found = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode or not found:
            sys.exit(f"mpiexec -n {n} failed:\n{out.stdout}\n{out.stderr}")
        rows.append(json.loads(found[0][len("RESULT "):]))
    first = rows[0]
    print(f"W2 weak scaling: batch 256 per rank, {first['bytes'] / 1e6:.2f} MB of gradients "
          f"in {len(first['buckets'])} buckets ({first['buckets']} floats), "
          f"{os.cpu_count()} cores")
    print(f"{'ranks':>5} {'step':>9} {'local ms':>9} {'ddp ms':>8} {'all-reduce ms':>14} "
          f"{'comm share':>11} {'samples/s':>10}")
    for row in rows:
        s = row["seconds"]
        for kind in ("compiled", "eager"):
            if f"{kind} ddp" not in s:
                continue
            local, ddp = s[f"{kind} local"], s[f"{kind} ddp"]
            print(f"{row['ranks']:>5} {kind:>9} {local * 1e3:>9.2f} {ddp * 1e3:>8.2f} "
                  f"{s[f'{kind} all-reduce'] * 1e3:>14.2f} {(ddp - local) / ddp:>11.0%} "
                  f"{256 * row['ranks'] / ddp:>10.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
