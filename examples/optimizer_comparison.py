"""The same model and data trained with seven optimizers, each step compiled.

    python examples/optimizer_comparison.py [--epochs 8] [--plot losses.png]

A small MLP on scikit-learn's digits (generated blobs without scikit-learn) is trained from
the same initial weights with SGD, SGD with momentum, Nesterov, Adagrad, RMSprop, Adadelta
and Adam. Each prints its loss and test accuracy per epoch (with a progress bar when tqdm is
installed); a table at the end ranks them by final loss, and a PNG of the loss curves is
saved when matplotlib is installed.
"""
import argparse
import copy
import sys

import numpy as np

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from train_mlp import load_data  # noqa: E402  (the same data as the main demo)

OPTIMIZERS = {
    "SGD": lambda p: gj.optim.SGD(p, lr=0.05),
    "SGD+momentum": lambda p: gj.optim.SGD(p, lr=0.05, momentum=0.9),
    "Nesterov": lambda p: gj.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "Adagrad": lambda p: gj.optim.Adagrad(p, lr=0.05),
    "RMSprop": lambda p: gj.optim.RMSprop(p, lr=0.002),
    "Adadelta": lambda p: gj.optim.Adadelta(p, lr=1.0),
    "Adam": lambda p: gj.optim.Adam(p, lr=0.003),
}


def progress(items, label):
    try:
        from tqdm import tqdm
        return tqdm(items, desc=label, leave=False)
    except ImportError:
        return items


def train(name, make_opt, model, batches, test, epochs):
    opt = make_opt(model.parameters())

    @gj.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    @gj.compile
    def predict(x):
        return model(x).argmax(-1)

    curve = []
    for epoch in range(epochs):
        losses = [step(x, y).item() for x, y in progress(batches, f"{name} epoch {epoch + 1}")]
        with gj.no_grad():
            acc = float((predict(test[0]).numpy() == test[1]).mean())
        curve.append(float(np.mean(losses)))
        print(f"{name:<13} epoch {epoch + 1}: loss {curve[-1]:.4f}  test accuracy {acc:.3f}")
    return curve, acc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--plot", default="optimizer_comparison.png")
    args = parser.parse_args()

    gj.manual_seed(0)
    rng = np.random.default_rng(0)
    data_name, (xtr, ytr), (xte, yte) = load_data(rng)
    print(f"data: {data_name}: {len(ytr)} train, {len(yte)} test samples")
    n = len(ytr) // args.batch
    batches = [(gj.from_numpy(xtr[i * args.batch:(i + 1) * args.batch]),
                gj.from_numpy(ytr[i * args.batch:(i + 1) * args.batch])) for i in range(n)]
    test = (gj.from_numpy(xte), yte)
    start = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))

    results = {}
    for name, make_opt in OPTIMIZERS.items():
        results[name] = train(name, make_opt, copy.deepcopy(start), batches, test, args.epochs)

    print(f"\n{'optimizer':<13} {'final loss':>10} {'accuracy':>9}")
    for name, (curve, acc) in sorted(results.items(), key=lambda kv: kv[1][0][-1]):
        print(f"{name:<13} {curve[-1]:>10.4f} {acc:>9.3f}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(install matplotlib for a plot of the loss curves)")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (curve, _) in results.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_yscale("log")
    ax.set_title("same model, data and initial weights; each step compiled", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"loss curves saved to {args.plot}")


if __name__ == "__main__":
    main()
