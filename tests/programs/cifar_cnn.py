"""CIFAR-style CNN: the network of PyTorch's "Training a Classifier" tutorial (blitz
cifar10_tutorial) at its real size (3x32x32 input, conv 6 and 16 channels of 5x5, pool,
fc 400-120-84-10), trained as the tutorial does (CrossEntropyLoss, SGD lr=0.001
momentum=0.9, running loss, torch.max over the outputs for accuracy) on a few random
images made by NumPy.
"""
import numpy as np

from .common import Double, init_from_numpy, result, rng_for

STEPS = 4


def run(torch, steps=STEPS, compiled=None):
    nn, F, optim = torch.nn, torch.nn.functional, torch.optim

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
            x = torch.flatten(x, 1)  # flatten all dimensions except batch
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            x = self.fc3(x)
            return x

    with Double(torch):
        rng = rng_for(0, "cifar-data")
        images = torch.from_numpy(rng.uniform(-1, 1, size=(steps * 4 + 4, 3, 32, 32)))
        labels = torch.from_numpy(rng.integers(0, 10, size=steps * 4 + 4))
        net = Net()
        init_from_numpy(torch, net, seed=4)
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
        if compiled == "model":
            net = torch.compile(net)

        def train_step(inputs, labels):
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            return loss

        if compiled == "step":
            train_step = torch.compile(train_step)

        losses = []
        running_loss = 0.0
        for i in range(steps):
            inputs, labels_i = images[4 * i:4 * i + 4], labels[4 * i:4 * i + 4]
            loss = train_step(inputs, labels_i)
            losses.append(loss.item())
            running_loss += loss.item()

        correct = 0
        total = 0
        with torch.no_grad():
            test_images, test_labels = images[-4:], labels[-4:]
            outputs = net(test_images)
            _, predicted = torch.max(outputs.data, 1)
            total += test_labels.size(0)
            correct += (predicted == test_labels).sum().item()
            test_logits = outputs.sum().item()
        return result(losses, {"net": net}, running_loss=running_loss, correct=correct,
                      total=total, test_logits=test_logits)
