"""What every program shares: NumPy-made initial weights and data (so PyTorch and graphjit
start from the same numbers), the end-of-run checksum, and the result record.

Nothing here imports torch or graphjit: the library comes in as the ``torch`` argument.
"""
from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed, name=""):
    """A NumPy generator for one named thing: the same numbers whatever order a library
    lists parameters in."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def init_from_numpy(torch, module, seed, scale=1.0):
    """Overwrite every parameter of ``module`` with NumPy-made values (PyTorch's default
    scales: uniform(+-1/sqrt(fan_in)) for weights and biases, 1 +- 0.1 for norm weights),
    loaded with ``copy_`` under ``no_grad`` as a user would load pretrained weights."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            rng = rng_for(seed, name)
            shape = tuple(p.shape)
            if len(shape) >= 2:
                bound = scale / np.sqrt(np.prod(shape[1:]))
                value = rng.uniform(-bound, bound, size=shape)
            elif name.endswith("weight"):      # LayerNorm / BatchNorm scale
                value = 1.0 + 0.1 * rng.uniform(-1, 1, size=shape)
            else:
                value = 0.1 * scale * rng.uniform(-1, 1, size=shape)
            p.copy_(torch.from_numpy(value))


def checksum(module):
    """Per state-dict entry (parameters and buffers): its sum and a position-weighted sum,
    so a wrong value, a swapped element or a transposed weight all show."""
    out = {}
    for name, t in module.state_dict().items():
        a = np.asarray(t.detach().cpu().numpy(), dtype=np.float64)
        w = np.cos(np.arange(a.size, dtype=np.float64)).reshape(a.shape)
        out[name] = [float(a.sum()), float((a * w).sum())]
    return out


def result(losses, modules, **metrics):
    """The record a program returns: the loss at every step, other numbers it printed
    (accuracy, test loss, ...), and the checksum of each named module at the end."""
    return {"loss": [float(v) for v in losses],
            "metrics": {k: (float(v) if np.ndim(v) == 0 else [float(x) for x in v])
                        for k, v in metrics.items()},
            "checksum": {name: checksum(m) for name, m in modules.items()}}


class Double:
    """Run a program in float64 (``set_default_dtype``), restoring the previous default."""

    def __init__(self, torch):
        self.torch = torch

    def __enter__(self):
        self.previous = self.torch.get_default_dtype()
        self.torch.set_default_dtype(self.torch.float64)

    def __exit__(self, *exc):
        self.torch.set_default_dtype(self.previous)
