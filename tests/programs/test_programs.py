"""Everyday PyTorch programs run on graphjit, step by step against PyTorch's own numbers.

Each program in this folder is written once against a ``torch`` module passed in. Here it
gets graphjit through ``graphjit run``'s aliases (``graphjit.run.torch_alias()``: what
``import torch`` gives a script under ``graphjit run``), and runs eagerly and compiled;
record.py ran the very same code with PyTorch 2.13 and wrote data/*.json. Compared: the
loss at every step, the other numbers the program reports (accuracy, test loss, generated
tokens, ...) and a checksum of every state-dict entry (parameters and buffers) at the end.

Tolerance: everything runs in float64 from the same NumPy-made weights and data, so the
only differences are rounding in a different order (BLAS blocking, fused loops, pairwise
sums): about 1e-16 relative per operation. Over these few steps that grew to at most 1e-10
(the transformer's checksums, eager and compiled alike); rtol=1e-8 keeps a hundredfold
margin above that, while any real difference (a wrong gradient, a missed momentum or
weight-decay term, wrong batch-norm statistics, an update applied twice) moves the numbers
at 1e-4 or more within a step or two.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import graphjit as gj
from graphjit.run import torch_alias

from . import RECORDINGS, load_program

HERE = os.path.dirname(os.path.abspath(__file__))
RTOL, ATOL = 1e-8, 1e-10


def has(path):
    """Whether graphjit has ``torch.<path>`` under ``graphjit run``'s aliases."""
    obj = torch_alias()
    try:
        for part in path.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        return False
    return True


def missing(path):
    """Expected to fail while graphjit lacks ``torch.<path>``, and a plain test once it has
    it (strict: a pass while it is still missing would mean the program no longer uses it)."""
    return pytest.mark.xfail(not has(path), reason=f"graphjit has no torch.{path} yet",
                             strict=True)


# (recording, compiled, extra run() arguments, marks). compiled: None (eager), "step"
# (torch.compile of the training-step function) or "model" (torch.compile(model), with
# eager backward and optimizer step).
CASES = [
    ("regression", None, {}, ()),
    ("regression", "step", {}, ()),
    ("regression", "model", {}, ()),
    ("mlp_classifier", None, {}, ()),
    ("mlp_classifier", "model", {}, ()),
    ("mnist_cnn", None, {}, ()),
    ("mnist_cnn", "step", {}, ()),
    ("mnist_cnn", None, {"dropout": True}, (missing("nn.Dropout"),)),
    ("cifar_cnn", None, {}, ()),
    ("cifar_cnn", "model", {}, ()),
    ("vae", None, {}, ()),
    ("vae", "step", {}, ()),
    ("word_lm", None, {}, ()),
    ("word_lm", "step", {}, ()),
    ("word_lm", None, {"dropout": True}, (missing("nn.Dropout"),)),
    ("time_series", None, {}, ()),
    ("time_series", "model", {}, ()),
    ("time_series_lbfgs", None, {}, (missing("optim.LBFGS"),)),
    ("time_series_lbfgs", "model", {}, (missing("optim.LBFGS"),)),
    ("finetune", None, {}, ()),
    ("finetune", "step", {}, ()),
    ("dcgan", None, {}, ()),
    ("dcgan", "step", {}, ()),
    ("autograd_tutorial", None, {}, ()),
    ("autograd_tutorial", "step", {}, ()),
    ("autograd_tutorial_custom", None, {}, (missing("autograd.Function"),)),
    ("autograd_tutorial_custom", "step", {}, (missing("autograd.Function"),)),
    ("transformer", None, {}, ()),
    ("transformer", "step", {}, ()),
]


def _id(case):
    name, compiled, kwargs, _ = case
    return "-".join([name, compiled or "eager"] + [k for k in kwargs])


def recording(name):
    with open(os.path.join(HERE, "data", f"{name}.json")) as f:
        return json.load(f)


def assert_same_run(got, want):
    """Loss per step, reported numbers and end-of-run checksums within RTOL/ATOL, with the
    first step that differs named."""
    g, w = np.array(got["loss"]), np.array(want["loss"])
    assert g.shape == w.shape, f"{len(g)} steps, PyTorch ran {len(w)}"
    bad = ~np.isclose(g, w, rtol=RTOL, atol=ATOL)
    assert not bad.any(), (f"loss differs from step {int(np.argmax(bad))} on:\n"
                           f"  graphjit {g.tolist()}\n  pytorch  {w.tolist()}")
    assert set(got["metrics"]) == set(want["metrics"])
    for key, value in want["metrics"].items():
        np.testing.assert_allclose(got["metrics"][key], value, rtol=RTOL, atol=ATOL,
                                   err_msg=f"reported number {key!r}")
    assert set(got["checksum"]) == set(want["checksum"])
    for module, entries in want["checksum"].items():
        # The same state-dict keys as PyTorch: state dicts load across the two libraries.
        assert sorted(got["checksum"][module]) == sorted(entries), module
        for key, value in entries.items():
            np.testing.assert_allclose(got["checksum"][module][key], value, rtol=RTOL,
                                       atol=ATOL, err_msg=f"{module}.{key} at the end")


@pytest.mark.parametrize(
    "name, compiled, kwargs",
    [pytest.param(*case[:3], marks=case[3], id=_id(case)) for case in CASES])
def test_program_matches_pytorch(name, compiled, kwargs):
    module_name, record_kwargs = RECORDINGS[name]
    want = recording(name)
    assert want["recorded_with"]["kwargs"] == record_kwargs
    got = load_program(module_name).run(torch_alias(), compiled=compiled,
                                        **record_kwargs, **kwargs)
    assert_same_run(got, want)


def test_every_recording_is_tested_and_every_program_recorded():
    assert {c[0] for c in CASES} == set(RECORDINGS)
    assert sorted(f[:-5] for f in os.listdir(os.path.join(HERE, "data"))
                  if f.endswith(".json")) == sorted(RECORDINGS)
    for name in RECORDINGS:
        assert recording(name)["recorded_with"]["torch"].startswith("2.13.0")
    for name in RECORDINGS:
        modes = {c[1] for c in CASES if c[0] == name and not c[2]}
        assert None in modes and modes - {None}, f"{name} runs {modes}"


# PyTorch idioms from the tutorials and examples that the programs above write another
# way while graphjit lacks them: (code, expected value of `out`). Each runs with the
# ``torch`` alias; values are PyTorch's.
IDIOMS = [
    # quickstart_tutorial test(): counting correct predictions
    ("out = (torch.tensor([2, 0, 1]) == torch.tensor([2, 1, 1])).type(torch.float).sum()"
     ".item()", 2.0, "Tensor.type"),
    # word_language_model/data.py tokenize()
    ("out = torch.tensor([3, 1, 2]).type(torch.int64).tolist()", [3, 1, 2], "Tensor.type"),
]


@pytest.mark.parametrize("code, expected",
                         [pytest.param(c, e, marks=missing(m), id=m) for c, e, m in IDIOMS])
def test_tutorial_idiom(code, expected):
    scope = {"torch": torch_alias()}
    exec(code, scope)
    assert scope["out"] == expected


def test_programs_restore_default_dtype():
    """Programs switch to float64 with set_default_dtype and put the default back."""
    assert gj.get_default_dtype() == gj.float32
    load_program("regression").run(torch_alias(), steps=1)
    assert gj.get_default_dtype() == gj.float32
