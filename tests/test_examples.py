"""The examples run and print what they promise."""
import os
import re
import subprocess
import sys

import pytest

import graphjit as gj

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


CIFAR_EPOCH = re.compile(r"^\[epoch (\d+)\] loss: (\S+)  test accuracy: (\S+) %", re.M)
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_cifar_classifier_learns_digits_with_the_tutorial_network():
    # Cold, this is mostly compiling the step (two programs, ~27 s of CPU time on 2 cores);
    # each epoch then takes ~1.5 s.
    text = run_example("cifar_classifier.py", "--epochs", "2")
    assert "1437 train, 360 test images; training step compiled" in text
    epochs = [(float(loss), float(acc)) for _, loss, acc in CIFAR_EPOCH.findall(text)]
    assert len(epochs) == 2 and epochs[1][0] < epochs[0][0]
    # The tutorial's lr 0.001 starts slowly: ~15 % after one epoch, ~82 % after two (chance 10 %).
    assert epochs[-1][1] > 50
    overall = re.search(r"^Accuracy of the network on the 360 test images: (\d+) %$", text, re.M)
    assert overall and int(overall.group(1)) == int(epochs[-1][1])
    per_class = re.findall(r"^Accuracy for class: (\w+)\s+is (\d+\.\d) %$", text, re.M)
    assert [name for name, _ in per_class] == DIGIT_NAMES
    assert sum(float(acc) > 50 for _, acc in per_class) >= 6


# The tutorial network's compiled step against eager and PyTorch's own numbers:
# tests/programs (cifar_cnn, eager and compiled).


TASK_ACCURACY = {task: re.compile(rf"^task {task} epoch \d+: .* test accuracy (\S+)", re.M)
                 for task in "AB"}


def no_gradient_section(report):
    """The lines of a dump report's ``inputs with no gradient work:`` section."""
    section = report.split("inputs with no gradient work:\n")[1].split("\n\n")[0]
    return [line.strip() for line in section.splitlines()]


def test_finetune_freezes_the_backbone_and_learns_the_new_task(tmp_path):
    # One BasicBlock (--blocks 1): the three-block default takes minutes to compile cold.
    # Cold, ~40 s of CPU time, nearly all of it compiling the two steps' four programs.
    checkpoint, out = tmp_path / "task_a.gj", tmp_path / "dump"
    run = subprocess.run(
        [sys.executable, "-m", "graphjit", "dump", os.path.join(ROOT, "examples", "finetune.py"),
         "--report", "--format", "text", "--out", str(out), "--",
         "--blocks", "1", "--epochs", "3", "--finetune-epochs", "3",
         "--checkpoint", str(checkpoint)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    text = run.stdout

    # Task A (digits 0-4, chance 20 %) is learned by the whole network.
    task_a = [float(v) for v in TASK_ACCURACY["A"].findall(text)]
    assert len(task_a) == 3 and task_a[-1] > 0.5

    # The checkpoint holds every parameter and batch-norm buffer and loads into a fresh model
    # that classifies as the original did.
    saved = re.search(r"(\d+) tensors, (\d+) identical after loading; reloaded task A test "
                      r"accuracy (\S+) \(before saving (\S+)\)", text)
    assert saved and saved.group(1) == saved.group(2) == "20"
    assert saved.group(3) == saved.group(4) == f"{task_a[-1]:.3f}"
    state = gj.load(str(checkpoint))
    assert {"conv1.weight", "bn1.running_mean", "layers.0.bn2.running_var",
            "layers.0.bn2.num_batches_tracked", "fc.bias"} <= set(state)
    assert state["layers.0.bn2.num_batches_tracked"].item() == 3 * (720 // 32)  # steps trained
    assert not gj.equal(state["bn1.running_var"], gj.ones(16))  # running statistics were kept

    # Task B (digits 5-9) is learned by the new head alone, on frozen features.
    before = float(re.search(r"task B test accuracy before: (\S+)", text).group(1))
    task_b = [float(v) for v in TASK_ACCURACY["B"].findall(text)]
    assert len(task_b) == 3 and task_b[-1] > max(0.4, before + 0.15)
    assert "backbone parameters with a .grad after fine-tuning: 0 of 9" in text

    # The dump report: the fine-tuning step did no gradient work for any frozen parameter,
    # and the pre-training step did it for all of them.
    backbone = ["conv1.weight", "bn1.weight", "bn1.bias"] + [
        f"layers.0.{m}.{p}" for m, p in [("conv1", "weight"), ("bn1", "weight"), ("bn1", "bias"),
                                         ("conv2", "weight"), ("bn2", "weight"), ("bn2", "bias")]]
    assert sorted(os.listdir(out)) == ["finetune_step_1", "finetune_step_2", "pretrain_step_1",
                                       "pretrain_step_2"]
    for trace in (1, 2):
        report = (out / f"finetune_step_{trace}" / "report.txt").read_text()
        assert no_gradient_section(report) == [f"net.{name}: frozen (requires_grad=False)"
                                               for name in backbone]
        report = (out / f"pretrain_step_{trace}" / "report.txt").read_text()
        assert no_gradient_section(report) == ["none"]
    assert "net.layers.0.conv1.weight: frozen (requires_grad=False)" in text  # --report printed
