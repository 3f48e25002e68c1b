"""ResNet-style fine-tuning, in the shape of PyTorch's "Transfer Learning for Computer
Vision" tutorial (ConvNet as fixed feature extractor): a small ResNet (BasicBlock with
BatchNorm and a downsampling shortcut, max pool, AdaptiveAvgPool2d) whose "pretrained"
weights come from NumPy; every parameter frozen with ``requires_grad = False``; the head
replaced with ``model.fc = nn.Linear(num_ftrs, 2)``; SGD over ``model.fc.parameters()``
with StepLR; the tutorial's train_model loop (phases, ``torch.set_grad_enabled``,
``torch.max``, ``torch.sum(preds == labels.data)``, ``copy.deepcopy(model.state_dict())``
and ``load_state_dict`` of the best weights). BatchNorm running statistics still update in
train mode, as in the tutorial, so the checksum covers buffers too.
"""
import copy

from .common import Double, init_from_numpy, result, rng_for

EPOCHS = 2


def run(torch, epochs=EPOCHS, compiled=None):
    nn, optim, lr_scheduler = torch.nn, torch.optim, torch.optim.lr_scheduler

    def conv3x3(in_planes, out_planes, stride=1):
        return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1,
                         bias=False)

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = conv3x3(inplanes, planes, stride)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x
            out = self.conv1(x)
            out = self.bn1(out)
            out = self.relu(out)
            out = self.conv2(out)
            out = self.bn2(out)
            if self.downsample is not None:
                identity = self.downsample(x)
            out += identity
            out = self.relu(out)
            return out

    class ResNet(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = nn.Sequential(BasicBlock(4, 4))
            self.layer2 = nn.Sequential(BasicBlock(4, 8, stride=2, downsample=nn.Sequential(
                nn.Conv2d(4, 8, kernel_size=1, stride=2, bias=False), nn.BatchNorm2d(8))))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.maxpool(x)
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.avgpool(x)
            x = torch.flatten(x, 1)
            return self.fc(x)

    with Double(torch):
        rng = rng_for(0, "finetune-data")
        inputs = {p: torch.from_numpy(rng.standard_normal((8, 3, 8, 8))) for p in ("train", "val")}
        labels = {p: torch.from_numpy(rng.integers(0, 2, size=8)) for p in ("train", "val")}
        dataloaders = {p: [(inputs[p][i:i + 4], labels[p][i:i + 4]) for i in (0, 4)]
                       for p in ("train", "val")}
        dataset_sizes = {"train": 8, "val": 8}

        model_conv = ResNet()
        init_from_numpy(torch, model_conv, seed=8)     # the "pretrained" backbone
        for param in model_conv.parameters():
            param.requires_grad = False
        num_ftrs = model_conv.fc.in_features
        model_conv.fc = nn.Linear(num_ftrs, 2)
        init_from_numpy(torch, model_conv.fc, seed=9)
        criterion = nn.CrossEntropyLoss()
        optimizer_conv = optim.SGD(model_conv.fc.parameters(), lr=0.1, momentum=0.9)
        exp_lr_scheduler = lr_scheduler.StepLR(optimizer_conv, step_size=1, gamma=0.1)
        model = torch.compile(model_conv) if compiled == "model" else model_conv

        def train_step(inputs, labels):
            optimizer_conv.zero_grad()
            outputs = model(inputs)
            _, preds = torch.max(outputs, 1)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer_conv.step()
            return loss, preds

        if compiled == "step":
            train_step = torch.compile(train_step)

        losses, epoch_losses, epoch_accs = [], [], []
        best_model_wts = copy.deepcopy(model.state_dict())
        best_acc = 0.0
        for epoch in range(epochs):
            for phase in ["train", "val"]:
                if phase == "train":
                    model.train()
                else:
                    model.eval()
                running_loss = 0.0
                running_corrects = 0
                for inputs_b, labels_b in dataloaders[phase]:
                    if phase == "train":
                        loss, preds = train_step(inputs_b, labels_b)
                        losses.append(loss.item())
                    else:
                        with torch.set_grad_enabled(False):
                            outputs = model(inputs_b)
                            _, preds = torch.max(outputs, 1)
                            loss = criterion(outputs, labels_b)
                    running_loss += loss.item() * inputs_b.size(0)
                    running_corrects += torch.sum(preds == labels_b.data)
                if phase == "train":
                    exp_lr_scheduler.step()
                epoch_loss = running_loss / dataset_sizes[phase]
                epoch_acc = running_corrects.double() / dataset_sizes[phase]
                epoch_losses.append(epoch_loss)
                epoch_accs.append(epoch_acc.item())
                if phase == "val" and epoch_acc > best_acc:
                    best_acc = epoch_acc
                    best_model_wts = copy.deepcopy(model.state_dict())
        last = checksum_of(model_conv)
        model.load_state_dict(best_model_wts)
        return result(losses, {"model": model_conv, "last": last}, epoch_loss=epoch_losses,
                      epoch_acc=epoch_accs, best_acc=float(best_acc))


class checksum_of:
    """A module-like snapshot of a state dict, for result()."""

    def __init__(self, module):
        self.sd = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def state_dict(self):
        return self.sd
