"""Optimizer update throughput: one step over N float32 parameters with given gradients.

    python benchmarks/optimizer_update.py [--params 10000000] [--repeats 30]

An Adam step must move at least 28 bytes per parameter (read p, g, m, v; write p, m, v) and
SGD with momentum 16 (read p, g, b; write p, b); the achieved GB/s is set against this
machine's copy bandwidth measured in the same run. Compared: graphjit's compiled eager
``opt.step()`` (the default), graphjit's op-by-op reference (``fused=False``), a NumPy
version written with in-place ufuncs, a hand-written Numba kernel, and PyTorch's
``fused=True`` Adam when torch happens to be installed. Also reports how much the process's
resident memory grows over 100 compiled steps (the update must not allocate per step).
"""
from __future__ import annotations

import argparse

import numpy as np

import graphjit as gj
from common import copy_bandwidth, median_seconds, rss_mib


def graphjit_step(n, make, fused):
    rng = np.random.default_rng(0)
    p = gj.nn.Parameter(gj.tensor(rng.standard_normal(n, dtype=np.float32)))
    p.grad = gj.tensor(rng.standard_normal(n, dtype=np.float32) * 1e-3)
    opt = make([p], fused)
    opt.step()
    opt.step()  # past the first step: state exists, the steady-state program is compiled
    return opt.step, opt


def _param_and_grad(n, p, g):
    if p is None:
        rng = np.random.default_rng(0)
        p = rng.standard_normal(n, dtype=np.float32)
        g = rng.standard_normal(n, dtype=np.float32) * 1e-3
    return p, g


def numpy_adam(n, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, p=None, g=None):
    """An Adam step written with NumPy in-place ufuncs; updates ``p`` (and its state) in place.

    ``p`` and ``g`` default to seeded random arrays of ``n`` values; the returned step
    function has ``state``: a dict of ``p``, ``m`` and ``v``.
    """
    p, g = _param_and_grad(n, p, g)
    m, v, tmp = np.zeros_like(p), np.zeros_like(p), np.empty_like(p)
    t = [0]

    def step():
        t[0] += 1
        np.multiply(m, b1, out=m)
        np.multiply(g, 1 - b1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, 1 - b2, out=tmp)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.divide(tmp, np.float32(np.sqrt(1 - b2 ** t[0])), out=tmp)
        np.add(tmp, np.float32(eps), out=tmp)
        np.divide(m, tmp, out=tmp)
        np.multiply(tmp, np.float32(lr / (1 - b1 ** t[0])), out=tmp)
        np.subtract(p, tmp, out=p)
    step.state = {"p": p, "m": m, "v": v}
    return step


def numba_adam(n, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, p=None, g=None):
    """The same step as one hand-written Numba loop (same arguments as ``numpy_adam``)."""
    import numba

    @numba.njit(error_model="numpy", fastmath=False)
    def kernel(p, g, m, v, c1, c2):
        for i in range(p.shape[0]):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            p[i] -= lr * (m[i] / c1) / (np.sqrt(v[i] / c2) + eps)

    p, g = _param_and_grad(n, p, g)
    m, v = np.zeros_like(p), np.zeros_like(p)
    t = [0]

    def step():
        t[0] += 1
        kernel(p, g, m, v, np.float32(1 - b1 ** t[0]), np.float32(1 - b2 ** t[0]))
    kernel(p.copy(), g, m.copy(), v.copy(), np.float32(1.0), np.float32(1.0))  # compile
    step.state = {"p": p, "m": m, "v": v}
    return step


def torch_adam(n):
    try:
        import torch
    except ImportError:
        return None
    p = torch.nn.Parameter(torch.randn(n))
    p.grad = torch.randn(n) * 1e-3
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    return opt.step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    n, reps = args.params, args.repeats
    bw = copy_bandwidth(max(n, 1 << 24))
    print(f"{n:,} float32 parameters; copy bandwidth measured now: {bw:.1f} GB/s")
    adam = lambda ps, fused: gj.optim.Adam(ps, lr=1e-3, fused=fused)  # noqa: E731
    sgd = lambda ps, fused: gj.optim.SGD(ps, lr=1e-3, momentum=0.9, fused=fused)  # noqa: E731
    rows = []
    for name, make, bytes_per in (("Adam", adam, 28), ("SGD momentum", sgd, 16)):
        compiled, opt = graphjit_step(n, make, True)
        t_c = median_seconds(compiled, reps)
        before = rss_mib()
        for _ in range(100):
            compiled()
        grown = rss_mib() - before
        reference, _ = graphjit_step(n, make, False)
        t_r = median_seconds(reference, max(3, reps // 5))
        rows.append((name, "graphjit compiled", t_c, bytes_per))
        rows.append((name, "graphjit op by op (fused=False)", t_r, bytes_per))
        if name == "Adam":
            rows.append((name, "NumPy, in-place ufuncs", median_seconds(numpy_adam(n), reps), 28))
            rows.append((name, "hand-written Numba kernel", median_seconds(numba_adam(n), reps), 28))
            t = torch_adam(n)
            if t is not None:
                rows.append((name, "PyTorch Adam(fused=True)", median_seconds(t, reps), 28))
        print(f"{name}: resident memory grew {grown:+.1f} MiB over 100 compiled steps "
              f"(the parameters and state take {n * 4 * (4 if name == 'Adam' else 3) / 2**20:.0f} MiB)")
    print(f"\n{'update':<14} {'implementation':<34} {'median':>10} {'GB/s':>7} {'of bw':>6}")
    for name, impl, t, bytes_per in rows:
        gbs = bytes_per * n / t / 1e9
        print(f"{name:<14} {impl:<34} {t * 1e3:>8.2f}ms {gbs:>7.1f} {gbs / bw:>6.0%}")


if __name__ == "__main__":
    main()
