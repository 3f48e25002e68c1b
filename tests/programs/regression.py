"""Regression: an MLP fitting a noisy nonlinear function of 3 inputs (in the style of
pytorch/examples regression and the "Learning PyTorch with Examples" nn tutorial).

Exercises: nn.Sequential of Linear/Tanh, nn.MSELoss, SGD with momentum and weight decay,
mini-batches by slicing, a no_grad evaluation, a compiled training step.
"""
import numpy as np

from .common import Double, init_from_numpy, result, rng_for

STEPS = 8


def make_data(n=32):
    rng = rng_for(0, "regression-data")
    x = rng.uniform(-1, 1, size=(n, 3))
    y = np.sin(x @ np.array([1.5, -2.0, 0.5]))[:, None] + 0.3 * x[:, :1] ** 2
    return x, y + 0.05 * rng.standard_normal((n, 1))


def run(torch, steps=STEPS, compiled=None):
    nn, optim = torch.nn, torch.optim
    with Double(torch):
        x_np, y_np = make_data()
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)

        model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
        init_from_numpy(torch, model, seed=1)
        loss_fn = nn.MSELoss()
        optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        if compiled == "model":
            model = torch.compile(model)

        def train_step(xb, yb):
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            return loss

        if compiled == "step":
            train_step = torch.compile(train_step)

        losses = []
        batch = 16
        for step in range(steps):
            i = (step * batch) % len(x)
            losses.append(train_step(x[i:i + batch], y[i:i + batch]).item())

        with torch.no_grad():
            full_loss = loss_fn(model(x), y).item()
        return result(losses, {"model": model}, full_loss=full_loss)
