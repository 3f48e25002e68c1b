"""DCGAN, in the shape of pytorch/examples dcgan/main.py and the DCGAN faces tutorial,
shrunk to 1x8x8 images: a Generator of ConvTranspose2d/BatchNorm2d/ReLU/Tanh and a
Discriminator of Conv2d/LeakyReLU/BatchNorm2d/Sigmoid, ``weights_init`` applied with
``module.apply`` (here drawing from NumPy), BCELoss, two Adam optimizers with
betas=(0.5, 0.999), and the example's step: D on real with ``torch.full`` labels, D on
``fake.detach()`` after ``label.fill_``, then G through D; D(x), D(G(z)) reported with
``.mean().item()``. Noise comes from NumPy.
"""
import numpy as np

from .common import Double, result, rng_for

STEPS = 4
nz, ngf, ndf, nc = 4, 4, 4, 1


def run(torch, steps=STEPS, compiled=None):
    nn, optim = torch.nn, torch.optim
    counter = [0]

    def weights_init(m):
        classname = m.__class__.__name__
        rng = rng_for(10, f"{classname}-{counter[0]}")
        counter[0] += 1
        if classname.find("Conv") != -1:
            m.weight.data.copy_(torch.from_numpy(0.02 * rng.standard_normal(tuple(m.weight.shape))))
        elif classname.find("BatchNorm") != -1:
            m.weight.data.copy_(torch.from_numpy(1.0 + 0.02 * rng.standard_normal(tuple(m.weight.shape))))
            m.bias.data.fill_(0)

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Sequential(
                # input is Z, going into a convolution
                nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                # state size. (ngf*2) x 4 x 4
                nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
                nn.Tanh(),
                # state size. (nc) x 8 x 8
            )

        def forward(self, input):
            return self.main(input)

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Sequential(
                # input is (nc) x 8 x 8
                nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, inplace=True),
                # state size. (ndf) x 4 x 4
                nn.Conv2d(ndf, ndf * 2, 3, 1, 1, bias=False),
                nn.BatchNorm2d(ndf * 2),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
                nn.Sigmoid(),
            )

        def forward(self, input):
            output = self.main(input)
            return output.view(-1, 1).squeeze(1)

    with Double(torch):
        rng = rng_for(0, "dcgan-data")
        real = torch.from_numpy(np.tanh(rng.standard_normal((steps, 4, nc, 8, 8))))
        noises = torch.from_numpy(rng.standard_normal((steps, 4, nz, 1, 1)))
        netG = Generator()
        netG.apply(weights_init)
        netD = Discriminator()
        netD.apply(weights_init)
        criterion = nn.BCELoss()
        real_label = 1
        fake_label = 0
        optimizerD = optim.Adam(netD.parameters(), lr=0.01, betas=(0.5, 0.999))
        optimizerG = optim.Adam(netG.parameters(), lr=0.01, betas=(0.5, 0.999))
        if compiled == "model":
            netG, netD = torch.compile(netG), torch.compile(netD)

        def train_step(real_cpu, noise):
            ############################
            # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
            ###########################
            # train with real
            netD.zero_grad()
            batch_size = real_cpu.size(0)
            label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype)
            output = netD(real_cpu)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean()
            # train with fake
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean()
            errD = errD_real + errD_fake
            optimizerD.step()
            ############################
            # (2) Update G network: maximize log(D(G(z)))
            ###########################
            netG.zero_grad()
            label.fill_(real_label)  # fake labels are real for generator cost
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean()
            optimizerG.step()
            return errD, errG, D_x, D_G_z1, D_G_z2

        if compiled == "step":
            train_step = torch.compile(train_step)

        losses, d_x, d_g_z = [], [], []
        for i in range(steps):
            errD, errG, D_x, D_G_z1, D_G_z2 = train_step(real[i], noises[i])
            losses += [errD.item(), errG.item()]
            d_x.append(D_x.item())
            d_g_z += [D_G_z1.item(), D_G_z2.item()]
        return result(losses, {"netG": netG, "netD": netD}, D_x=d_x, D_G_z=d_g_z)
