"""``graphjit run SCRIPT.py``: PyTorch scripts run unchanged with graphjit as ``torch``
(graphjit/run.py), and the coverage figure of docs/coverage in the README."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import graphjit
from graphjit.run import MissingTorchModule, MissingTorchName, run_script, torch_aliases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(tmp_path, text, name="script.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def graphjit_run(*args, command=(sys.executable, "-m", "graphjit")):
    out = subprocess.run([*command, "run", *args], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    return out.returncode, out.stdout, out.stderr


TRAINING_SCRIPT = """
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset

import graphjit

print("args", sys.argv[1:])
print("torch is graphjit:", torch.Tensor is graphjit.Tensor and nn.Linear is graphjit.nn.Linear)
torch.manual_seed(0)
x = torch.from_numpy(np.linspace(-1, 1, 32).reshape(16, 2))
y = (x[:, :1] * 2 - x[:, 1:]).clone()
model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
opt = optim.SGD(model.parameters(), lr=0.1)
sched = StepLR(opt, step_size=2, gamma=0.5)
loader = DataLoader(TensorDataset(x, y), batch_size=8)
first = None
for epoch in range(3):
    for xb, yb in loader:
        opt.zero_grad()
        loss = F.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    sched.step()
print(f"loss {first:.4f} -> {loss.item():.4f}")

@torch.compile
def total(t):
    return (t * 2).sum()

print("compiled", total(torch.ones(3)).item())
print("cuda", torch.cuda.is_available(), "mps", torch.backends.mps.is_available())
"""


def test_runs_a_pytorch_training_script_with_its_arguments(tmp_path):
    script = write(tmp_path, TRAINING_SCRIPT)
    rc, out, err = graphjit_run(script, "--epochs", "3", "x")
    assert rc == 0, err
    assert "args ['--epochs', '3', 'x']" in out
    assert "torch is graphjit: True" in out
    first, last = map(float, re.search(r"loss (\S+) -> (\S+)", out).groups())
    assert last < first
    assert "compiled 6.0" in out
    assert re.search(r"cuda (True|False) mps False", out)  # True on the CUDA simulator


def test_graphjit_command_has_run(tmp_path):
    exe = shutil.which("graphjit", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the graphjit console script is not installed next to this Python")
    script = write(tmp_path, "import torch\nprint(torch.ones(2).sum().item())\n")
    rc, out, err = graphjit_run(script, command=(exe,))
    assert rc == 0, err
    assert out.strip() == "2.0"


def test_missing_name_names_it_and_the_script_line(tmp_path):
    script = write(tmp_path, """
        import torch
        import torch.nn as nn

        layer = nn.Linear(2, 2)
        other = nn.FancyNewLayer(3)
        """)
    rc, out, err = graphjit_run(script)
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("graphjit.run.MissingTorchName: graphjit has no "
                           "torch.nn.FancyNewLayer yet"), err
    assert f"{script}, line 5: other = nn.FancyNewLayer(3)" in last
    # the traceback ends at the script's line, not inside the alias machinery
    assert f'File "{script}", line 5' in err
    assert "run.py" not in err


def test_missing_name_in_from_import(tmp_path):
    script = write(tmp_path, """
        import torch
        from torch.nn import Linear, FancyNewLayer
        """)
    rc, out, err = graphjit_run(script)
    assert rc == 1
    assert ("graphjit has no torch.nn.FancyNewLayer yet (at "
            f"{script}, line 2: from torch.nn import Linear, FancyNewLayer)") in err


def test_missing_module(tmp_path):
    script = write(tmp_path, "import torch\nimport torch.fancy_new_module\n")
    rc, out, err = graphjit_run(script)
    assert rc == 1
    assert "graphjit has no module torch.fancy_new_module yet" in err
    assert f"{script}, line 2" in err


def test_exit_status_and_errors_of_the_script(tmp_path):
    rc, _, _ = graphjit_run(write(tmp_path, "import sys\nsys.exit(3)\n"))
    assert rc == 3
    rc, _, err = graphjit_run(write(tmp_path, "import torch\nraise ValueError('boom')\n"))
    assert rc == 1 and "ValueError: boom" in err and "line 2" in err
    rc, _, err = graphjit_run(str(tmp_path / "nope.py"))
    assert rc == 2 and "no such script" in err


def test_aliases_in_process():
    with torch_aliases() as alias:
        import torch
        import torch.nn.functional as F
        from torch.optim.lr_scheduler import StepLR
        from torch.utils.data import DataLoader

        assert torch is alias
        assert F.relu is graphjit.nn.functional.relu
        assert StepLR is graphjit.optim.lr_scheduler.StepLR
        assert DataLoader is graphjit.utils.data.DataLoader
        assert torch.float32 is graphjit.float32
        # a missing name is an AttributeError, so hasattr/getattr-with-default work
        assert not hasattr(torch.nn, "FancyNewLayer")
        assert getattr(torch, "fancy_new_function", 7) == 7
        with pytest.raises(AttributeError, match="graphjit has no torch.fancy_new_function yet"):
            torch.fancy_new_function
        with pytest.raises(MissingTorchName):
            torch.nn.functional.fancy_new_function
        with pytest.raises(MissingTorchModule):
            import torch.fancy_new_module  # noqa: F401
        # writes stay on the alias (scripts set flags)
        torch.backends.cudnn.benchmark = True
        assert torch.backends.cudnn.benchmark is True
    assert "torch" not in sys.modules


def test_torch_compile_takes_torchs_options():
    with torch_aliases() as torch:
        def f(x):
            return x * 2
        assert torch.compile(f, disable=True) is f
        compiled = torch.compile(f, mode="max-autotune", fullgraph=True, dynamic=False)
        assert isinstance(compiled, graphjit.jit.CompiledFunction)
        decorate = torch.compile(mode="reduce-overhead")
        assert isinstance(decorate(f), graphjit.jit.CompiledFunction)


def test_run_script_restores_argv_and_path(tmp_path):
    argv, path = list(sys.argv), list(sys.path)
    assert run_script(write(tmp_path, "import torch\n"), ["a"]) == 0
    assert sys.argv == argv and sys.path == path and "torch" not in sys.modules


def test_readme_carries_the_coverage_figure():
    """docs/coverage/coverage.py computes the share of the names in
    docs/coverage/pytorch_api_used.txt that graphjit has; the README states it. When this
    fails after adding names to graphjit, put the sentence this prints into the README."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "graphjit_api_coverage", os.path.join(ROOT, "docs", "coverage", "coverage.py"))
    cov = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cov)
    have, total, _, _ = cov.report()
    sentence = cov.figure_sentence(have, total)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = " ".join(f.read().split())
    assert sentence in readme, f"README.md should say: {sentence}"
