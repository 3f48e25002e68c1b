"""Train a small classifier with a compiled training step; compare with eager.

    python examples/train_mlp.py [--epochs 5]

Uses scikit-learn's digits (8x8 images, 10 classes) when scikit-learn is installed
(``pip install -e ".[examples]"``), and generated Gaussian blobs otherwise.
"""
import argparse
import copy
import time

import numpy as np

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F


def load_data(rng):
    try:
        from sklearn.datasets import load_digits
        digits = load_digits()
        x = digits.data.astype(np.float32) / 16.0
        y = digits.target.astype(np.int64)
        name = "scikit-learn digits"
    except ImportError:
        centers = rng.normal(size=(10, 64)).astype(np.float32)
        y = rng.integers(0, 10, 1797)
        x = centers[y] + 0.8 * rng.normal(size=(1797, 64)).astype(np.float32)
        name = "generated blobs (install scikit-learn for the digits data set)"
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return name, (x[:split], y[:split]), (x[split:], y[split:])


def make_step(model, opt):
    def train_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return train_step


def median_step_time(step, batches, repeats):
    times = []
    for i in range(repeats):
        x, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        step(x, y).item()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    gj.manual_seed(0)
    rng = np.random.default_rng(0)
    name, (xtr, ytr), (xte, yte) = load_data(rng)
    print(f"data: {name}: {len(ytr)} train, {len(yte)} test samples")

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    eager_model = copy.deepcopy(model)
    opt = gj.optim.Adam(model.parameters(), lr=1e-2)
    train_step = gj.compile(make_step(model, opt))

    @gj.compile
    def predict(x):
        return model(x).argmax(-1)

    n_batches = len(ytr) // args.batch  # full batches only: one static shape, one program
    batches = [(gj.from_numpy(xtr[i * args.batch:(i + 1) * args.batch]),
                gj.from_numpy(ytr[i * args.batch:(i + 1) * args.batch])) for i in range(n_batches)]
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        losses = [train_step(x, y).item() for x, y in batches]
        with gj.no_grad():
            acc = float((predict(gj.from_numpy(xte)).numpy() == yte).mean())
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  test accuracy {acc:.3f}")
    print(f"total {time.perf_counter() - t0:.2f} s (includes compiling; see train_step.explain())")

    eager_step = make_step(eager_model, gj.optim.Adam(eager_model.parameters(), lr=1e-2))
    t_compiled = median_step_time(train_step, batches, 50)
    t_eager = median_step_time(eager_step, batches, 50)
    print(f"time per step (median of 50): compiled {t_compiled * 1e6:.0f} us, "
          f"eager {t_eager * 1e6:.0f} us, eager/compiled {t_eager / t_compiled:.1f}x")


if __name__ == "__main__":
    main()
