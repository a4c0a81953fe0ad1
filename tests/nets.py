"""Networks for the tests: the zoo's module-style nets and functional-call variants of each."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from lightning_mcuprune.examples import zoo


class FunctionalCNN(nn.Module):
    """Plain CNN written with F.relu, F.max_pool2d, torch.flatten and .view."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(16 * 7 * 7, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.avg_pool2d(torch.relu(self.b2(self.c2(x))), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x)).view(x.size(0), -1)
        return self.fc2(F.dropout(x, 0.1, self.training))


class FunctionalVGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1),
                                    nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1)])
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        for i, c in enumerate(self.convs):
            x = F.relu(c(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        return self.fc(x.view(x.size(0), -1))


class FunctionalResBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.sc = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (self.sc(x) if self.sc is not None else x))


class FunctionalResNet8(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(FunctionalResBlock(16, 16, 1), FunctionalResBlock(16, 32, 2), FunctionalResBlock(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class FunctionalMBBlock(nn.Module):
    def __init__(self, c, expand=4):
        super().__init__()
        h = c * expand
        self.pw, self.dw, self.pwl = nn.Conv2d(c, h, 1), nn.Conv2d(h, h, 3, padding=1, groups=h), nn.Conv2d(h, c, 1)

    def forward(self, x):
        return torch.add(x, self.pwl(F.relu6(self.dw(F.relu6(self.pw(x))))))


class FunctionalMobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, 2, 1)
        self.b1, self.b2 = FunctionalMBBlock(8), FunctionalMBBlock(8)
        self.head = nn.Conv2d(8, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.b2(self.b1(F.hardswish(self.stem(x))))
        x = F.adaptive_avg_pool2d(F.relu(self.head(x)), 1)
        return self.fc(torch.flatten(x, 1))


class FunctionalDSCNN(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Conv2d(1, c, (10, 4), (2, 2), (5, 1))
        self.dws = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1, groups=c) for _ in range(2)])
        self.pws = nn.ModuleList([nn.Conv2d(c, c, 1) for _ in range(2)])
        self.fc = nn.Linear(c, 12)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for dw, pw in zip(self.dws, self.pws):
            x = F.relu(pw(F.relu(dw(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class FunctionalInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 4, 1)
        self.b1, self.b2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 6, 3, padding=1)
        self.c = nn.Conv2d(8, 2, 1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b2(F.relu(self.b1(x)))), F.relu(self.c(F.max_pool2d(x, 3, 1, 1)))], dim=1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class FunctionalSE(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(c, 4), nn.Linear(4, c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        x = x * s.view(s.size(0), -1, 1, 1)
        return self.fc(x.mean((2, 3)))


class GroupedConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.g = nn.Conv2d(8, 16, 3, padding=1, groups=4)
        self.c1d = nn.Conv1d(16, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.g(F.relu(self.c1(x))))
        x = x.flatten(2)                      # [N, 16, H*W] for a Conv1d
        x = F.relu(self.c1d(x))
        return self.fc(x.mean(2))


# name -> (factory, input shape without batch)
NETS = {
    "plain_cnn": (zoo.reference_cnn, (1, 28, 28)),
    "vgg": (zoo.vgg_style, (1, 28, 28)),
    "resnet8": (zoo.resnet8, (3, 32, 32)),
    "mobilenet_v2_tiny": (zoo.mobilenet_v2_tiny, (1, 28, 28)),
    "ds_cnn": (zoo.ds_cnn, (1, 49, 10)),
    "inception": (zoo.inception_like, (1, 28, 28)),
    "se": (zoo.se_cnn, (1, 28, 28)),
    "f_cnn": (FunctionalCNN, (1, 28, 28)),
    "f_vgg": (FunctionalVGG, (1, 28, 28)),
    "f_resnet8": (FunctionalResNet8, (3, 32, 32)),
    "f_mobilenet": (FunctionalMobileNet, (1, 28, 28)),
    "f_ds_cnn": (FunctionalDSCNN, (1, 49, 10)),
    "f_inception": (FunctionalInception, (1, 28, 28)),
    "f_se": (FunctionalSE, (1, 28, 28)),
    "grouped": (GroupedConvNet, (1, 12, 12)),
}


def hook_count(model: nn.Module, x: torch.Tensor) -> int:
    """Independent MAC count with forward hooks: conv = out elements * Cin/groups * kernel; linear = in * out."""
    macs = [0]

    def conv_hook(m, inp, out):
        k = 1
        for d in m.kernel_size:
            k *= d
        macs[0] += out[0].numel() * (m.in_channels // m.groups) * k

    def lin_hook(m, inp, out):
        macs[0] += out[0].numel() * m.in_features

    hs = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hs.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hs.append(m.register_forward_hook(lin_hook))
    model.eval()
    with torch.no_grad():
        model(x[:1])
    for h in hs:
        h.remove()
    return macs[0]
