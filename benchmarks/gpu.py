"""CUDA benchmarks: graphjit's CUDA target against the GPU's own limits.

    python benchmarks/gpu.py [--repeats N] [--json PATH]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu.py --smoke   # tiny shapes, no timing claims

It measures the GPU once (device-to-device copy bandwidth; a float32 matrix product:
PyTorch's cuBLAS when torch with CUDA happens to be installed, else graphjit's own tiled
kernel, said so), then per workload the median time over ``--repeats`` runs after warmup,
each run ended by ``cuda.synchronize()``:

- mlp: a compiled training step (784-512-512-10 MLP, batch 256, cross-entropy, Adam):
  time, and GFLOP/s against the matrix-product rate;
- chain: an elementwise chain of 8 ops over 16M float32 values, compiled (one fused kernel):
  time and GB/s of the bytes it must move (one read, one write) against copy bandwidth;
- adam: the compiled Adam update of 10M float32 parameters (param, grad, two moments):
  time and GB/s (7 arrays of 40 MB read or written) against copy bandwidth.

Under Numba's simulator (``--smoke``) it only checks that every workload runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def _sync():
    from numba import cuda
    cuda.synchronize()


def _median_seconds(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(nbytes, repeats):
    """GB/s of a device-to-device copy (read + write counted)."""
    from numba import cuda
    src = cuda.to_device(np.ones(nbytes // 4, np.float32))
    dst = cuda.device_array_like(src)
    t = _median_seconds(lambda: dst.copy_to_device(src), repeats)
    return 2 * nbytes / t / 1e9


def matmul_rate(n, repeats):
    """(GFLOP/s, what measured it) of an n x n float32 matrix product."""
    try:
        import torch
        if torch.cuda.is_available():
            a = torch.randn(n, n, device="cuda")
            b = torch.randn(n, n, device="cuda")
            t = _median_seconds(lambda: a @ b, repeats)
            torch.cuda.synchronize()
            return 2 * n ** 3 / t / 1e9, "torch (cuBLAS)"
    except ImportError:
        pass
    import graphjit as gj
    a, b = gj.randn(n, n, device="cuda"), gj.randn(n, n, device="cuda")
    f = gj.compile(lambda a, b: a @ b)
    t = _median_seconds(lambda: f(a, b), repeats)
    return 2 * n ** 3 / t / 1e9, "graphjit's tiled kernel (no cuBLAS to compare with)"


def mlp_step(batch, sizes):
    import graphjit as gj
    import graphjit.nn as nn
    import graphjit.nn.functional as F
    gj.manual_seed(0)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).cuda()
    opt = gj.optim.Adam(model.parameters(), lr=1e-3)
    x = gj.randn(batch, sizes[0], device="cuda")
    y = gj.randint(0, sizes[-1], (batch,), device="cuda")

    @gj.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    flops = 6 * batch * sum(a * b for a, b in zip(sizes, sizes[1:]))  # forward + backward
    return (lambda: step(x, y)), flops


def chain(n):
    import graphjit as gj
    x = gj.randn(n, device="cuda")
    f = gj.compile(lambda x: ((x * 1.5 + 0.5).tanh() * x - 0.25).relu().exp() * 0.5 + x)
    return (lambda: f(x)), 2 * 4 * n


def adam_update(n):
    import graphjit as gj
    p = gj.zeros(n, device="cuda", requires_grad=True)
    p.grad = gj.randn(n, device="cuda")
    opt = gj.optim.Adam([p], lr=1e-3, fused=True)
    # param, exp_avg, exp_avg_sq read and written, grad read: 7 arrays of n floats.
    return (lambda: opt.step()), 7 * 4 * n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, no timing claims")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)
    import graphjit as gj
    if not gj.cuda.is_available():
        print(f"no CUDA device: {gj.cuda.why_unavailable()}")
        return 1
    if gj.cuda.is_simulator() and not args.smoke:
        print("Numba's CUDA simulator is not a GPU: run with --smoke to check the workloads run")
        return 1
    small = args.smoke
    repeats = 2 if small else args.repeats
    result = {"device": gj.cuda.get_device_name()}
    print(f"device: {result['device']}")
    bw = copy_bandwidth(1 << (16 if small else 28), repeats)
    gemm, how = matmul_rate(16 if small else 4096, repeats)
    result["limits"] = {"copy_GBps": bw, "matmul_GFLOPs": gemm, "matmul_by": how}
    print(f"limits: copy {bw:.1f} GB/s; float32 matmul {gemm:.0f} GFLOP/s ({how})")
    workloads = {
        "mlp": (mlp_step(8, [16, 8, 8, 4]) if small else mlp_step(256, [784, 512, 512, 10]), "flops"),
        "chain": (chain(64 if small else 16 << 20), "bytes"),
        "adam": (adam_update(64 if small else 10_000_000), "bytes"),
    }
    for name, ((fn, amount), kind) in workloads.items():
        t = _median_seconds(fn, repeats)
        rate = amount / t / 1e9
        limit = gemm if kind == "flops" else bw
        unit = "GFLOP/s" if kind == "flops" else "GB/s"
        result[name] = {"median_ms": t * 1e3, unit: rate, "fraction_of_limit": rate / limit}
        print(f"{name:6s} {t * 1e3:9.3f} ms  {rate:9.1f} {unit}  {100 * rate / limit:5.1f}% of the "
              "limit")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
