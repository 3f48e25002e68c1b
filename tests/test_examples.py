"""The examples run and print what they promise."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_autograd_basics_prints_tutorial_gradients():
    text = run_example("autograd_basics.py")
    assert "a.grad = tensor([36., 81.])" in text
    assert "b.grad = tensor([-12.,  -8.])" in text
    assert "frozen layer grad: None" in text
    assert "d/dx x^3 at 2 = 12 (expected 12), d2/dx2 = 12 (expected 12)" in text


def test_linear_regression_matches_numpy():
    text = run_example("linear_regression.py")
    diff = float(re.search(r"max \|difference\| numpy vs graphjit: (\S+)", text).group(1))
    assert diff < 1e-12
    w = re.search(r"graphjit : w = \[([^\]]+)\]", text).group(1).split()
    assert [round(float(v), 1) for v in w] == [2.0, -3.4, 1.5]


def test_train_mlp_learns_and_reports_step_times():
    text = run_example("train_mlp.py", "--epochs", "3")
    losses = [float(v) for v in re.findall(r"epoch \d+: loss (\S+)", text)]
    accuracy = [float(v) for v in re.findall(r"test accuracy (\S+)", text)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert accuracy[-1] > 0.85  # digits reach ~0.96 in 3 epochs, generated blobs 1.0
    times = re.search(r"compiled (\d+) us, eager (\d+) us", text)
    assert times and int(times.group(1)) > 0 and int(times.group(2)) > 0


def test_optimizer_comparison_trains_all_seven(tmp_path):
    text = run_example("optimizer_comparison.py", "--epochs", "2", "--plot",
                       str(tmp_path / "curves.png"))
    table = text.split("final loss")[1]
    names = ["SGD", "SGD+momentum", "Nesterov", "Adagrad", "RMSprop", "Adadelta", "Adam"]
    for name in names:
        assert re.search(rf"^{re.escape(name)}\s+epoch 2: loss", text, re.M), name
        assert re.search(rf"^{re.escape(name)}\s+\d+\.\d+\s+\d\.\d+$", table, re.M), name
    losses = [float(v) for v in re.findall(r"^\S+\s+(\d+\.\d+)\s+\d\.\d+$", table, re.M)]
    assert losses == sorted(losses) and losses[0] < 0.5  # ranked; the best one learned
