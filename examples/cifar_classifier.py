"""PyTorch's CIFAR-10 tutorial classifier, written with graphjit, trained on scikit-learn's digits.

    python examples/cifar_classifier.py [--epochs 4] [--eager] [--limit N]

The network, loss, optimizer and loop are the tutorial's ("Training a Classifier"): two
convolutions with max pooling, three linear layers, cross-entropy, SGD with lr 0.001 and
momentum 0.9, batches of 4 from a DataLoader. CIFAR-10 is not shipped with any package, so
the images are scikit-learn's digits (1797 8x8 grey images, 10 classes), brought to the
network's 3x32x32 input as the tutorial's transforms would bring a smaller image: scaled to
[0, 1], resized 8x8 -> 32x32 with bilinear interpolation (``F.interpolate``), the grey channel
repeated three times, normalised with mean 0.5 and std 0.5 per channel.

The training step runs under ``@graphjit.compile`` (one program: forward, backward and the
SGD update); ``--eager`` runs the same step op by op, for comparison. Needs scikit-learn
(``pip install -e ".[examples]"``); shows a tqdm progress bar when tqdm is installed.
"""
import argparse
import sys
import time

import numpy as np

import graphjit as gj
import graphjit.nn as nn
import graphjit.nn.functional as F
import graphjit.optim as optim
from graphjit.utils.data import DataLoader, TensorDataset

classes = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = gj.flatten(x, 1)  # [N, 16, 5, 5] -> [N, 400]
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def load_digits_as_cifar(limit=None, seed=0):
    """scikit-learn's digits as 3x32x32 images normalised as the tutorial's transform does,
    split 80/20 into train and test (``limit`` keeps only the first ``limit`` training images)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example needs scikit-learn: pip install -e \".[examples]\"")
    digits = load_digits()
    images = gj.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N, 1, 8, 8]
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    images = (images.repeat(1, 3, 1, 1) - 0.5) / 0.5                           # [N, 3, 32, 32]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    split = int(0.8 * len(labels))
    train, test = order[:split], order[split:]
    if limit is not None:
        train = train[:limit]
    x = images.numpy()
    return (TensorDataset(gj.from_numpy(x[train]), gj.from_numpy(labels[train])),
            TensorDataset(gj.from_numpy(x[test]), gj.from_numpy(labels[test])))


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


def evaluate(net, testloader):
    """The tutorial's test loop: (correct, total) predictions over ``testloader``."""
    correct = 0
    total = 0
    # no backward pass follows: record nothing for one
    with gj.no_grad():
        for data in testloader:
            images, labels = data
            outputs = net(images)
            # the predicted class is the one with the largest output
            _, predicted = gj.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return correct, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="the tutorial's batch_size")
    parser.add_argument("--limit", type=int, default=None, help="train on this many images only")
    parser.add_argument("--eager", action="store_true", help="run the training step op by op")
    args = parser.parse_args()

    gj.manual_seed(0)
    trainset, testset = load_digits_as_cifar(args.limit)
    # drop_last: every training batch has the same shape, so the step compiles for one signature
    trainloader = DataLoader(trainset, batch_size=args.batch, shuffle=True, drop_last=True)
    testloader = DataLoader(testset, batch_size=100, shuffle=False)
    print(f"data: scikit-learn digits as 3x32x32: {len(trainset)} train, {len(testset)} test "
          f"images; training step {'eager' if args.eager else 'compiled'}")

    net = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)

    def train_step(inputs, labels):
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        return loss

    if not args.eager:
        train_step = gj.compile(train_step)  # as if decorated with @gj.compile

    start = time.perf_counter()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        running_loss = 0.0
        for inputs, labels in progress(trainloader, f"epoch {epoch + 1}"):
            running_loss += train_step(inputs, labels).item()
        seconds = time.perf_counter() - t0
        correct, total = evaluate(net, testloader)
        compiling = ", compiling included" if epoch == 0 and not args.eager else ""
        print(f"[epoch {epoch + 1}] loss: {running_loss / len(trainloader):.3f}  "
              f"test accuracy: {100 * correct / total:.1f} %  "
              f"({seconds:.1f} s training{compiling})", flush=True)
    print(f"Finished Training ({time.perf_counter() - start:.1f} s)")

    correct, total = evaluate(net, testloader)
    print(f"Accuracy of the network on the {total} test images: {100 * correct // total} %")

    # per class: how many test images of it there are, and how many were predicted right
    correct_pred = {classname: 0 for classname in classes}
    total_pred = {classname: 0 for classname in classes}
    with gj.no_grad():
        for data in testloader:
            images, labels = data
            outputs = net(images)
            _, predictions = gj.max(outputs, 1)
            for label, prediction in zip(labels, predictions):
                if label == prediction:
                    correct_pred[classes[label]] += 1
                total_pred[classes[label]] += 1

    for classname, correct_count in correct_pred.items():
        accuracy = 100 * float(correct_count) / total_pred[classname]
        print(f"Accuracy for class: {classname:5s} is {accuracy:.1f} %")


if __name__ == "__main__":
    main()
