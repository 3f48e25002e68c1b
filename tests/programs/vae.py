"""VAE, in the shape of pytorch/examples vae/main.py, shrunk (36 pixels, 16 hidden, 4
latent): encode with relu, reparameterize, decode with sigmoid, the example's
loss_function (binary_cross_entropy with reduction='sum' plus the KL term written with
torch.sum, pow and exp), Adam, a no_grad test pass and a sample from the decoder.

One change from the example: ``torch.randn_like(std)`` would draw different numbers in the
two libraries, so the noise ``eps`` is made by NumPy and passed to forward().
"""
import numpy as np

from .common import Double, init_from_numpy, result, rng_for

STEPS = 6
D, H, Z = 36, 16, 4


def run(torch, steps=STEPS, compiled=None):
    nn, F, optim = torch.nn, torch.nn.functional, torch.optim

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(D, H)
            self.fc21 = nn.Linear(H, Z)
            self.fc22 = nn.Linear(H, Z)
            self.fc3 = nn.Linear(Z, H)
            self.fc4 = nn.Linear(H, D)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar, eps):
            std = torch.exp(0.5 * logvar)
            return mu + eps * std

        def decode(self, z):
            h3 = F.relu(self.fc3(z))
            return torch.sigmoid(self.fc4(h3))

        def forward(self, x, eps):
            mu, logvar = self.encode(x.view(-1, D))
            z = self.reparameterize(mu, logvar, eps)
            return self.decode(z), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        BCE = F.binary_cross_entropy(recon_x, x.view(-1, D), reduction="sum")
        KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return BCE + KLD

    with Double(torch):
        rng = rng_for(0, "vae-data")
        data = torch.from_numpy((rng.uniform(0, 1, size=(24, 1, 6, 6)) > 0.5).astype(np.float64))
        noise = torch.from_numpy(rng.standard_normal((steps + 1, 8, Z)))
        model = VAE()
        init_from_numpy(torch, model, seed=5)
        optimizer = optim.Adam(model.parameters(), lr=1e-2)
        if compiled == "model":
            model = torch.compile(model)

        def train_step(x, eps):
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(x, eps)
            loss = loss_function(recon_batch, x, mu, logvar)
            loss.backward()
            optimizer.step()
            return loss

        if compiled == "step":
            train_step = torch.compile(train_step)

        model.train()
        losses = []
        for step in range(steps):
            x = data[(step % 2) * 8:(step % 2) * 8 + 8]
            losses.append(train_step(x, noise[step]).item() / len(x))

        model.eval()
        with torch.no_grad():
            x = data[16:24]
            recon, mu, logvar = model(x, noise[steps])
            test_loss = loss_function(recon, x, mu, logvar).item() / len(x)
            sample = model.decode(torch.from_numpy(rng_for(1, "vae-z").standard_normal((4, Z))))
            sample_sum = sample.sum().item()
        return result(losses, {"model": model}, test_loss=test_loss, sample_sum=sample_sum)
