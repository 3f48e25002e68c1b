"""MNIST-style CNN, in the shape of pytorch/examples mnist/main.py, shrunk: 1x8x8 synthetic
"digits" (a class-dependent stroke pattern plus noise, made by NumPy), two Conv2d layers,
max_pool2d, flatten, two Linear layers, log_softmax + nll_loss, Adadelta with StepLR, a
DataLoader, and the example's test() (summed test loss, argmax(keepdim) / eq / view_as
accuracy) after every epoch.

The example has nn.Dropout(0.25) and nn.Dropout(0.5); here ``dropout=True`` puts in
nn.Dropout(p=0.0), which must change nothing, so both runs compare with one recording.
"""
import numpy as np

from .common import Double, init_from_numpy, result, rng_for

EPOCHS = 2


def make_data(n, seed):
    rng = rng_for(seed, "mnist-data")
    patterns = rng_for(0, "mnist-patterns").uniform(0, 1, size=(4, 8, 8)) > 0.6
    y = np.arange(n) % 4
    x = patterns[y].astype(np.float64) + 0.3 * rng.standard_normal((n, 8, 8))
    x = (x - 0.1307) / 0.3081                      # the example's Normalize((0.1307,), (0.3081,))
    return x[:, None], y.astype(np.int64)


def run(torch, epochs=EPOCHS, compiled=None, dropout=False):
    nn, F, optim = torch.nn, torch.nn.functional, torch.optim
    StepLR = torch.optim.lr_scheduler.StepLR
    TensorDataset, DataLoader = torch.utils.data.TensorDataset, torch.utils.data.DataLoader

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, 1)
            self.conv2 = nn.Conv2d(4, 8, 3, 1)
            self.dropout1 = nn.Dropout(0.0) if dropout else nn.Identity()
            self.dropout2 = nn.Dropout(0.0) if dropout else nn.Identity()
            self.fc1 = nn.Linear(32, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            x = self.conv1(x)
            x = F.relu(x)
            x = self.conv2(x)
            x = F.relu(x)
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = self.fc1(x)
            x = F.relu(x)
            x = self.dropout2(x)
            x = self.fc2(x)
            output = F.log_softmax(x, dim=1)
            return output

    with Double(torch):
        train_loader = DataLoader(TensorDataset(*map(torch.from_numpy, make_data(16, 1))),
                                  batch_size=8)
        test_loader = DataLoader(TensorDataset(*map(torch.from_numpy, make_data(8, 2))),
                                 batch_size=4)
        model = Net()
        init_from_numpy(torch, model, seed=3)
        optimizer = optim.Adadelta(model.parameters(), lr=1.0)
        scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
        if compiled == "model":
            model = torch.compile(model)

        def train_step(data, target):
            optimizer.zero_grad()
            output = model(data)
            loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()
            return loss

        if compiled == "step":
            train_step = torch.compile(train_step)

        losses, test_losses, corrects = [], [], []

        def train(epoch):
            model.train()
            for batch_idx, (data, target) in enumerate(train_loader):
                loss = train_step(data, target)
                losses.append(loss.item())

        def test():
            model.eval()
            test_loss = 0
            correct = 0
            with torch.no_grad():
                for data, target in test_loader:
                    output = model(data)
                    test_loss += F.nll_loss(output, target, reduction="sum").item()
                    pred = output.argmax(dim=1, keepdim=True)
                    correct += pred.eq(target.view_as(pred)).sum().item()
            test_losses.append(test_loss / len(test_loader.dataset))
            corrects.append(correct)

        for epoch in range(1, epochs + 1):
            train(epoch)
            test()
            scheduler.step()
        return result(losses, {"model": model}, test_loss=test_losses, correct=corrects)
