"""Built-in example networks (plain PyTorch), used by the demo, the tests and the benchmarks.

Each callable returns an nn.Module; `INPUT_SHAPES` gives the input shape (C, H, W) each was made for.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: "type[nn.Module]" = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class ReferenceCNN(nn.Sequential):
    """The Fashion-MNIST reference CNN: four 3x3 convs 32-64-128-128 with BN, two max-pools, GAP, linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0):
        w = [max(1, round(c * width)) for c in (32, 64, 128, 128)]
        super().__init__(
            conv_bn_relu(in_channels, w[0]), conv_bn_relu(w[0], w[1]), nn.MaxPool2d(2),
            conv_bn_relu(w[1], w[2]), nn.MaxPool2d(2), conv_bn_relu(w[2], w[3]),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[3], num_classes))


def reference_cnn(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    """The Fashion-MNIST reference CNN (see ReferenceCNN); `width` scales every layer uniformly."""
    return ReferenceCNN(num_classes, in_channels, width)


def vgg_style(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    """An oversized VGG-style net for 28x28 input: 3 stages of two 3x3 convs (64-128-256), flatten, FC head."""
    layers, c = [], in_channels
    for v in (64, 64, "M", 128, 128, "M", 256, 256, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            v = max(1, round(v * width))
            layers.append(conv_bn_relu(c, v))
            c = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * 3 * 3, 256), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(256, num_classes))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(self.conv1(x))) + self.shortcut(x))


def resnet8(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """ResNet-8 (MLPerf Tiny style): stem, three residual stages 16-32-64 with 1x1 shortcut convs, GAP, linear."""
    w = [max(1, round(c * width)) for c in (16, 32, 64)]
    return nn.Sequential(conv_bn_relu(in_channels, w[0]), BasicBlock(w[0], w[0], 1), BasicBlock(w[0], w[1], 2),
                         BasicBlock(w[1], w[2], 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[2], num_classes))


def ds_cnn(num_classes: int = 12, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    """DS-CNN for keyword spotting (Zhang et al.; MLPerf Tiny), made for 49x10 MFCC input."""
    c = max(1, round(64 * width))
    layers = [nn.Conv2d(in_channels, c, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(c), nn.ReLU()]
    for _ in range(4):
        layers += [conv_bn_relu(c, c, 3, groups=c), conv_bn_relu(c, c, 1)]
    return nn.Sequential(*layers, nn.Dropout(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [conv_bn_relu(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


def _make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _inverted_residual_stages(c: int, cfg: list, width: float) -> tuple[list, int]:
    """The InvertedResidual blocks of MobileNetV2 stages (expansion t, channels, repeats n, first stride s) from
    `c` input channels; returns (blocks, output channels)."""
    blocks = []
    for t, ch, n, s in cfg:
        out = _make_divisible(ch * width)
        for i in range(n):
            blocks.append(InvertedResidual(c, out, s if i == 0 else 1, t))
            c = out
    return blocks, c


def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """MobileNetV2 (Sandler et al.), torchvision's layout; width 1.0 at 224x224 has 300.8M MACs."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    c = _make_divisible(32 * width)
    last = _make_divisible(1280 * max(1.0, width))
    layers = [conv_bn_relu(in_channels, c, 3, 2, act=nn.ReLU6)]
    blocks, c = _inverted_residual_stages(c, cfg, width)
    layers += blocks
    layers += [conv_bn_relu(c, last, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(last, num_classes)]
    return nn.Sequential(*layers)


def mobilenet_v2_tiny(num_classes: int = 10, in_channels: int = 1, width: float = 0.35) -> nn.Module:
    """MobileNetV2 blocks sized for 28x28..32x32 inputs (stride-1 stem), width 0.35 by default."""
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2)]
    c = _make_divisible(32 * width)
    layers = [conv_bn_relu(in_channels, c, 3, 1, act=nn.ReLU6)]
    blocks, c = _inverted_residual_stages(c, cfg, width)
    layers += blocks
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


class InceptionBlock(nn.Module):
    def __init__(self, cin, c1, c3, c5, cp):
        super().__init__()
        self.b1 = conv_bn_relu(cin, c1, 1)
        self.b3 = nn.Sequential(conv_bn_relu(cin, c3 // 2, 1), conv_bn_relu(c3 // 2, c3, 3))
        self.b5 = nn.Sequential(conv_bn_relu(cin, c5 // 2, 1), conv_bn_relu(c5 // 2, c5, 3), conv_bn_relu(c5, c5, 3))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_relu(cin, cp, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


def inception_like(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A small Inception-style net: two blocks of four branches joined by cat."""
    return nn.Sequential(conv_bn_relu(in_channels, 16), nn.MaxPool2d(2), InceptionBlock(16, 8, 16, 8, 8),
                         nn.MaxPool2d(2), InceptionBlock(40, 16, 16, 8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(48, num_classes))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, max(1, c // r), 1)
        self.fc2 = nn.Conv2d(max(1, c // r), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))
        return x * s


def se_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A CNN with squeeze-and-excite blocks (channel-wise mul)."""
    return nn.Sequential(conv_bn_relu(in_channels, 16), SqueezeExcite(16), nn.MaxPool2d(2), conv_bn_relu(16, 32),
                         SqueezeExcite(32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


INPUT_SHAPES = {
    "reference_cnn": (1, 28, 28), "vgg_style": (1, 28, 28), "resnet8": (3, 32, 32), "ds_cnn": (1, 49, 10),
    "mobilenet_v2": (3, 224, 224), "mobilenet_v2_tiny": (1, 28, 28), "inception_like": (1, 28, 28),
    "se_cnn": (1, 28, 28),
}
for _name, _shape in INPUT_SHAPES.items():   # `mcuprune analyze` reads a factory's own input_shape
    globals()[_name].input_shape = _shape
