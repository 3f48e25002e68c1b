"""Linear regression by gradient descent: hand-written NumPy next to graphjit.

The NumPy loop computes the MSE gradient by hand; the graphjit loop gets it from
``loss.backward()`` and updates with ``optim.SGD``. Both print the same numbers.

    python examples/linear_regression.py
"""
import numpy as np

import graphjit as gj

rng = np.random.default_rng(0)
n, d = 200, 3
X = rng.normal(size=(n, d))
true_w, true_b = np.array([2.0, -3.4, 1.5]), 4.2
y = X @ true_w + true_b + 0.01 * rng.normal(size=n)
lr, steps = 0.1, 50

# NumPy: y_hat = X w + b, loss = mean((y_hat - y)^2), gradients by hand.
w_np, b_np = np.zeros(d), 0.0
for step in range(steps):
    err = X @ w_np + b_np - y
    loss_np = np.mean(err**2)
    w_np -= lr * (2.0 / n) * (X.T @ err)
    b_np -= lr * (2.0 / n) * err.sum()

# graphjit: the same model, autograd for the gradients, SGD for the update.
Xt, yt = gj.from_numpy(X), gj.from_numpy(y)
w = gj.zeros(d, dtype=gj.float64, requires_grad=True)
b = gj.zeros((), dtype=gj.float64, requires_grad=True)
opt = gj.optim.SGD([w, b], lr=lr)
for step in range(steps):
    opt.zero_grad()
    loss = ((Xt @ w + b - yt) ** 2).mean()
    loss.backward()
    opt.step()

print(f"numpy    : w = {np.round(w_np, 6)}, b = {b_np:.6f}, last loss {loss_np:.6f}")
print(f"graphjit : w = {np.round(w.detach().numpy(), 6)}, b = {b.item():.6f}, last loss {loss.item():.6f}")
print(f"true     : w = {true_w}, b = {true_b}")
print("max |difference| numpy vs graphjit:",
      max(np.abs(w_np - w.detach().numpy()).max(), abs(b_np - b.item())))
