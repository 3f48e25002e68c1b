"""Fine-tuning: train a small ResNet on one task, save it, reload it, freeze it, train a new head.

    python examples/finetune.py [--epochs 4] [--finetune-epochs 6] [--blocks 3] [--limit N]
                                [--checkpoint PATH]

The pattern of PyTorch's transfer-learning tutorial ("ConvNet as fixed feature extractor"),
on scikit-learn's digits (8x8 grey images) so that it runs in seconds:

1. a small ResNet (a stem, then three BasicBlocks of 3x3 Conv2d + BatchNorm2d + ReLU with skip
   connections, the last two downsampling with a 1x1 projection, adaptive average pooling and
   a Linear head; ``--blocks 1`` keeps one block, for a quick run) is trained on task A,
   telling the digits 0-4 apart;
2. its ``state_dict()`` (parameters and batch-norm buffers) is saved with ``graphjit.save``
   and loaded with ``graphjit.load`` into a fresh model, which must classify task A as well as
   the original did;
3. the reloaded model's backbone is frozen (``requires_grad_(False)``), its head replaced by a
   new ``nn.Linear``, and only the head is trained, on task B: the digits 5-9.

Each training step is compiled with ``@graphjit.compile``; evaluation runs in ``model.eval()``
mode (batch norm uses its running statistics). The frozen backbone gets no gradient work in
the compiled fine-tuning step: the dump report says so, ``inputs with no gradient work:``
lists each frozen parameter as ``frozen (requires_grad=False)``:

    graphjit dump examples/finetune.py --report --format text --out /tmp/finetune-dump

Needs scikit-learn (``pip install -e ".[examples]"``); shows tqdm progress bars when tqdm is
installed.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
import graphjit.optim as optim
from graphjit.utils.data import DataLoader, TensorDataset


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with batch norm, plus the input (through a
    1x1 convolution where the shape changes)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return F.relu(out)


class ResNet(nn.Module):
    """8x8 grey images -> stem: 16 channels 8x8 -> ``layers``: BasicBlocks to 16 channels 8x8,
    32 channels 4x4, 64 channels 2x2 -> average pooled -> ``fc``. ``blocks`` < 3 keeps the
    first one or two blocks only (a smaller program to compile)."""

    def __init__(self, num_classes, blocks=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths = [16, 16, 32, 64][:blocks + 1]
        self.layers = nn.Sequential(*[BasicBlock(a, b, stride=1 if a == b else 2)
                                      for a, b in zip(widths, widths[1:])])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = gj.flatten(self.avgpool(x), 1)
        return self.fc(x)


def load_task(digits, first, limit=None, seed=0):
    """The images of digits ``first`` .. ``first + 4`` as [N, 1, 8, 8] in [0, 1], labels 0-4,
    split 80/20 into train and test datasets (``limit``: keep that many training images)."""
    keep = (digits.target >= first) & (digits.target < first + 5)
    images = digits.images[keep].astype(np.float32)[:, None] / 16.0
    labels = digits.target[keep].astype(np.int64) - first
    order = np.random.default_rng(seed).permutation(len(labels))
    split = int(0.8 * len(labels))
    train, test = order[:split], order[split:]
    if limit is not None:
        train, test = train[:limit], test[:limit]
    return (TensorDataset(gj.from_numpy(images[train]), gj.from_numpy(labels[train])),
            TensorDataset(gj.from_numpy(images[test]), gj.from_numpy(labels[test])))


def progress(iterable, desc):
    """A tqdm progress bar when tqdm is installed, else a plain one that prints as it goes."""
    try:
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, leave=False, file=sys.stderr)
    except ImportError:
        return _plain_progress(iterable, desc)


def _plain_progress(iterable, desc):
    total = len(iterable)
    t0 = time.perf_counter()
    for i, item in enumerate(iterable):
        yield item
        if (i + 1) % max(1, total // 10) == 0 or i + 1 == total:
            print(f"\r{desc}: {i + 1}/{total} batches, {time.perf_counter() - t0:.1f} s",
                  end="" if i + 1 < total else "\n", file=sys.stderr, flush=True)


def accuracy(model, loader):
    """Test accuracy in eval mode: batch norm normalises with its running statistics."""
    model.eval()
    correct = total = 0
    with gj.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += len(labels)
    model.train()
    return correct / total


def fit(name, step, model, trainloader, testloader, epochs):
    """Run ``step`` over ``trainloader`` for ``epochs`` epochs, printing loss and accuracy."""
    for epoch in range(epochs):
        t0 = time.perf_counter()
        losses = [step(x, y).item() for x, y in progress(trainloader, f"{name} epoch {epoch + 1}")]
        print(f"{name} epoch {epoch + 1}: loss {np.mean(losses):.4f}  "
              f"test accuracy {accuracy(model, testloader):.3f}  "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs on task A (digits 0-4)")
    parser.add_argument("--finetune-epochs", type=int, default=6,
                        help="epochs of the new head on task B (digits 5-9)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None,
                        help="train (and test) on this many images per task only")
    parser.add_argument("--blocks", type=int, default=3, choices=(1, 2, 3),
                        help="BasicBlocks after the stem (fewer: less to compile)")
    parser.add_argument("--checkpoint", default=None,
                        help="where to save task A's model (default: a temporary file)")
    args = parser.parse_args()
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example needs scikit-learn: pip install -e \".[examples]\"")
    digits = load_digits()
    gj.manual_seed(0)

    # ---- 1. task A: digits 0-4, the whole network trained ------------------------------------
    train_a, test_a = load_task(digits, 0, args.limit)
    train_b, test_b = load_task(digits, 5, args.limit)
    print(f"task A (digits 0-4): {len(train_a)} train, {len(test_a)} test images; "
          f"task B (digits 5-9): {len(train_b)} train, {len(test_b)} test images")
    # drop_last: every training batch has the same shape, so each step compiles once
    loader_a = DataLoader(train_a, batch_size=args.batch, shuffle=True, drop_last=True)
    loader_b = DataLoader(train_b, batch_size=args.batch, shuffle=True, drop_last=True)
    test_loader_a = DataLoader(test_a, batch_size=256)
    test_loader_b = DataLoader(test_b, batch_size=256)

    model = ResNet(num_classes=5, blocks=args.blocks)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    @gj.compile
    def pretrain_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    fit("task A", pretrain_step, model, loader_a, test_loader_a, args.epochs)
    accuracy_a = accuracy(model, test_loader_a)

    # ---- 2. save, and load into a fresh model -------------------------------------------------
    scratch = tempfile.TemporaryDirectory()  # removed at exit
    checkpoint = args.checkpoint or os.path.join(scratch.name, "resnet_task_a.gj")
    gj.save(model.state_dict(), checkpoint)
    net = ResNet(num_classes=5, blocks=args.blocks)
    net.load_state_dict(gj.load(checkpoint))
    saved, loaded = model.state_dict(), net.state_dict()
    same = sum(gj.equal(saved[k], loaded[k]) for k in saved)
    print(f"saved {checkpoint} ({os.path.getsize(checkpoint):,} bytes): {len(saved)} tensors, "
          f"{same} identical after loading; reloaded task A test accuracy "
          f"{accuracy(net, test_loader_a):.3f} (before saving {accuracy_a:.3f})")

    # ---- 3. task B: digits 5-9, backbone frozen, a new head trained ----------------------------
    net.requires_grad_(False)
    net.fc = nn.Linear(net.fc.in_features, 5)  # a new head requires grad, as a new module does
    backbone = [p for name, p in net.named_parameters() if not name.startswith("fc.")]
    print(f"fine-tuning: {len(backbone)} backbone parameters frozen "
          f"({sum(p.numel() for p in backbone):,} values), the head's "
          f"{sum(p.numel() for p in net.fc.parameters()):,} trained; "
          f"task B test accuracy before: {accuracy(net, test_loader_b):.3f}")
    head_opt = optim.SGD(net.fc.parameters(), lr=0.05, momentum=0.9)

    @gj.compile
    def finetune_step(x, y):
        head_opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        head_opt.step()
        return loss

    fit("task B", finetune_step, net, loader_b, test_loader_b, args.finetune_epochs)
    with_grad = [p for p in backbone if p.grad is not None]
    print(f"backbone parameters with a .grad after fine-tuning: {len(with_grad)} of "
          f"{len(backbone)}")


if __name__ == "__main__":
    main()
