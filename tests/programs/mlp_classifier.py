"""MLP classifier, in the shape of the PyTorch "Quickstart" tutorial: a NeuralNetwork module
with nn.Flatten and a Linear/ReLU stack, DataLoader over a TensorDataset, train() and test()
loops with model.train()/model.eval(), accuracy with argmax, several epochs, an LR scheduler.

Data: three Gaussian blobs in 4x4 "images", made by NumPy. No shuffle (the two libraries'
shuffles draw different numbers). The tutorial counts correct predictions with
``.type(torch.float)``, which graphjit lacks; this program writes ``.float()``, and
test_programs.test_tutorial_idiom keeps the tutorial's spelling.
"""
import numpy as np

from .common import Double, init_from_numpy, result, rng_for

EPOCHS = 2


def make_data(n):
    rng = rng_for(0, f"mlp-data-{n}")
    centres = rng_for(0, "mlp-centres").standard_normal((3, 16))
    y = np.arange(n) % 3
    x = centres[y] + 0.8 * rng.standard_normal((n, 16))
    return x.reshape(n, 4, 4), y.astype(np.int64)


def run(torch, epochs=EPOCHS, compiled=None):
    nn, optim = torch.nn, torch.optim
    from_numpy = torch.from_numpy
    TensorDataset, DataLoader = torch.utils.data.TensorDataset, torch.utils.data.DataLoader

    class NeuralNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.flatten = nn.Flatten()
            self.linear_relu_stack = nn.Sequential(
                nn.Linear(4 * 4, 32), nn.ReLU(),
                nn.Linear(32, 32), nn.ReLU(),
                nn.Linear(32, 3),
            )

        def forward(self, x):
            x = self.flatten(x)
            logits = self.linear_relu_stack(x)
            return logits

    with Double(torch):
        train_data = TensorDataset(*map(from_numpy, make_data(24)))
        test_data = TensorDataset(*map(from_numpy, make_data(12)))
        train_dataloader = DataLoader(train_data, batch_size=8)
        test_dataloader = DataLoader(test_data, batch_size=6)

        model = NeuralNetwork()
        init_from_numpy(torch, model, seed=2)
        loss_fn = nn.CrossEntropyLoss()
        optimizer = optim.SGD(model.parameters(), lr=0.2)
        scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        if compiled == "model":
            model = torch.compile(model)

        def train_batch(X, y):
            pred = model(X)
            loss = loss_fn(pred, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return loss

        if compiled == "step":
            train_batch = torch.compile(train_batch)

        losses, test_losses, accuracies = [], [], []

        def train(dataloader):
            model.train()
            for batch, (X, y) in enumerate(dataloader):
                losses.append(train_batch(X, y).item())

        def test(dataloader):
            num_batches = len(dataloader)
            size = len(dataloader.dataset)
            model.eval()
            test_loss, correct = 0, 0
            with torch.no_grad():
                for X, y in dataloader:
                    pred = model(X)
                    test_loss += loss_fn(pred, y).item()
                    correct += (pred.argmax(1) == y).float().sum().item()
            test_losses.append(test_loss / num_batches)
            accuracies.append(correct / size)

        for t in range(epochs):
            train(train_dataloader)
            test(test_dataloader)
            scheduler.step()
        return result(losses, {"model": model}, test_loss=test_losses, accuracy=accuracies,
                      lr=scheduler.get_last_lr())
