"""The autograd walkthrough of the PyTorch tutorials, in graphjit's eager mode.

    python examples/autograd_basics.py
"""
import graphjit as gj

# Q = 3a^3 - b^2, so dQ/da = 9a^2 and dQ/db = -2b.
a = gj.tensor([2.0, 3.0], requires_grad=True)
b = gj.tensor([6.0, 4.0], requires_grad=True)
Q = 3 * a**3 - b**2
print("Q =", Q)

# Q is a vector: backward needs the vector of the vector-Jacobian product.
Q.backward(gradient=gj.ones_like(Q))
print("a.grad =", a.grad, "  expected 9a^2 =", 9 * a.detach() ** 2)
print("b.grad =", b.grad, "  expected -2b  =", -2 * b.detach())

# Gradients accumulate until zeroed: the same backward through .sum() doubles them.
Q = 3 * a**3 - b**2
Q.sum().backward()
print("after a second backward (accumulated):", a.grad, b.grad)

# requires_grad propagates: a result needs grad if any input does.
x = gj.rand(5, 5)
y = gj.rand(5, 5)
z = gj.rand(5, 5, requires_grad=True)
print("x + y requires grad?", (x + y).requires_grad)
print("x + z requires grad?", (x + z).requires_grad)

# Frozen parameters: a model whose first layer is frozen gets no gradient there.
model = gj.nn.Sequential(gj.nn.Linear(4, 8), gj.nn.ReLU(), gj.nn.Linear(8, 1))
model[0].requires_grad_(False)
model(gj.randn(3, 4)).sum().backward()
print("frozen layer grad:", model[0].weight.grad, " trained layer grad shape:",
      model[2].weight.grad.shape)

# no_grad: nothing is recorded inside.
with gj.no_grad():
    w = z * 2
print("computed under no_grad, requires grad?", w.requires_grad)

# Higher-order gradients: d^2/dx^2 x^3 = 6x.
x = gj.tensor(2.0, requires_grad=True)
(dx,) = gj.grad(x**3, x, create_graph=True)
(d2x,) = gj.grad(dx, x)
print(f"d/dx x^3 at 2 = {dx.item():g} (expected 12), d2/dx2 = {d2x.item():g} (expected 12)")
