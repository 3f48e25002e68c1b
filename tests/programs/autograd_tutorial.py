"""The autograd tutorials: "A Gentle Introduction to torch.autograd" (Q = 3a^3 - b^2 with
``Q.backward(gradient=external_grad)``, ``requires_grad``, freezing), the autograd
basics tutorial (w, b with requires_grad, ``binary_cross_entropy_with_logits``, ``torch.no_grad``,
``detach``, ``out.backward(torch.ones_like(inp), retain_graph=True)`` accumulating twice),
and "Learning PyTorch with Examples" (a third-order polynomial fitting sin(x): tensors
with requires_grad, ``loss.backward()``, in-place updates under ``torch.no_grad()``,
``a.grad = None``). The polynomial fit is the trajectory; the rest are metrics.

``custom=True`` runs the fit through the tutorial's LegendrePolynomial3, a
``torch.autograd.Function`` with ``ctx.save_for_backward``.
"""
import math

import numpy as np

from .common import Double, result, rng_for

STEPS = 10


def run(torch, steps=STEPS, compiled=None, custom=False):
    metrics = {}
    with Double(torch):
        # -- A Gentle Introduction to torch.autograd
        a = torch.tensor([2., 3.], requires_grad=True)
        b = torch.tensor([6., 4.], requires_grad=True)
        Q = 3 * a**3 - b**2
        external_grad = torch.tensor([1., 1.])
        Q.backward(gradient=external_grad)
        metrics["a_grad"] = a.grad.tolist()
        metrics["b_grad"] = b.grad.tolist()
        x = torch.rand(5, 5)
        y = torch.rand(5, 5)
        z = torch.rand((5, 5), requires_grad=True)
        metrics["requires_grad"] = [float((x + y).requires_grad), float((x + z).requires_grad)]

        # -- Automatic differentiation with torch.autograd (basics)
        rng = rng_for(0, "autograd-basics")
        x = torch.ones(5)  # input tensor
        y = torch.zeros(3)  # expected output
        w = torch.from_numpy(rng.standard_normal((5, 3))).requires_grad_()
        b = torch.from_numpy(rng.standard_normal(3)).requires_grad_()
        z = torch.matmul(x, w) + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        loss.backward()
        metrics["w_grad"] = w.grad.numpy().ravel().tolist()
        metrics["b_grad_basics"] = b.grad.tolist()
        with torch.no_grad():
            z = torch.matmul(x, w) + b
        z_det = (torch.matmul(x, w) + b).detach()
        metrics["detached"] = [float(z.requires_grad), float(z_det.requires_grad)]
        inp = torch.eye(4, 5, requires_grad=True)
        out = (inp + 1).pow(2).t()
        out.backward(torch.ones_like(out), retain_graph=True)
        first = inp.grad.sum().item()
        out.backward(torch.ones_like(out))
        metrics["accumulated"] = [first, inp.grad.sum().item()]

        # -- Learning PyTorch with Examples: the polynomial fit
        x = torch.linspace(-math.pi, math.pi, 200)
        y = torch.sin(x)
        rng = rng_for(0, "polynomial")
        a, b, c, d = (torch.tensor(v, requires_grad=True) for v in rng.standard_normal(4))
        learning_rate = 1e-5

        class LegendrePolynomial3(torch.autograd.Function if custom else object):
            @staticmethod
            def forward(ctx, input):
                ctx.save_for_backward(input)
                return 0.5 * (5 * input ** 3 - 3 * input)

            @staticmethod
            def backward(ctx, grad_output):
                input, = ctx.saved_tensors
                return grad_output * 1.5 * (5 * input ** 2 - 1)

        def step(x, y):
            nonlocal a, b, c, d
            if custom:
                P3 = LegendrePolynomial3.apply
                y_pred = a + b * P3(c + d * x)
            else:
                y_pred = a + b * x + c * x ** 2 + d * x ** 3
            loss = (y_pred - y).pow(2).sum()
            loss.backward()
            with torch.no_grad():
                a -= learning_rate * a.grad
                b -= learning_rate * b.grad
                c -= learning_rate * c.grad
                d -= learning_rate * d.grad
                a.grad = None
                b.grad = None
                c.grad = None
                d.grad = None
            return loss

        if compiled == "step":
            step = torch.compile(step)
        losses = [step(x, y).item() for t in range(steps)]
        metrics["coefficients"] = [a.item(), b.item(), c.item(), d.item()]
        return result(losses, {}, **metrics)
