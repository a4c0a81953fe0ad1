"""Networks with the ops users write in MCU networks: squeeze-excitation (SE) in the common spellings,
hard-swish, hard-sigmoid, and the elementwise activations that run as 256-entry int8 lookup tables."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SE(nn.Module):
    """Squeeze-excitation: global mean, two 1x1 convs (or linears), a gate, a channel-wise multiply.

    `spelling` picks how the gate is broadcast back onto [N, C, H, W] (what user code does):
    "conv" (mean keepdim + 1x1 convs), "none_index" (s[:, :, None, None]), "unsqueeze", "view" (view(b, c, 1, 1)),
    "reshape" (reshape(-1, c, 1, 1)), "expand_as" (view(b, c, 1, 1).expand_as(x)). `gate`: "sigmoid" (nn.Sigmoid), "torch.sigmoid", "F.sigmoid",
    "hardsigmoid" (nn.Hardsigmoid), "F.hardsigmoid".
    """

    def __init__(self, c: int, r: int = 4, spelling: str = "conv", gate: str = "sigmoid"):
        super().__init__()
        mid = max(2, c // r)
        self.spelling, self.gate_kind = spelling, gate
        if spelling == "conv":
            self.fc1, self.fc2 = nn.Conv2d(c, mid, 1), nn.Conv2d(mid, c, 1)
        else:
            self.fc1, self.fc2 = nn.Linear(c, mid), nn.Linear(mid, c)
        self.act = nn.ReLU()
        self.gate = {"sigmoid": nn.Sigmoid(), "hardsigmoid": nn.Hardsigmoid()}.get(gate)

    def _gate(self, s):
        if self.gate is not None:
            return self.gate(s)
        return {"torch.sigmoid": torch.sigmoid, "F.sigmoid": F.sigmoid, "F.hardsigmoid": F.hardsigmoid}[self.gate_kind](s)

    def forward(self, x):
        b, c, _, _ = x.size()
        if self.spelling == "conv":
            s = self._gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
            return x * s
        s = F.adaptive_avg_pool2d(x, 1).flatten(1) if self.spelling == "reshape" else x.mean(dim=(2, 3))
        s = self._gate(self.fc2(self.act(self.fc1(s))))
        if self.spelling == "none_index":
            s = s[:, :, None, None]
        elif self.spelling == "unsqueeze":
            s = s.unsqueeze(-1).unsqueeze(-1)
        elif self.spelling == "view":
            s = s.view(b, c, 1, 1)
        elif self.spelling == "expand_as":
            s = s.view(b, c, 1, 1).expand_as(x)
        else:
            s = s.reshape(-1, c, 1, 1)
        return x * s


class SEBasicBlock(nn.Module):
    """SE-ResNet basic block: conv-bn-relu, conv-bn, SE, residual add, relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1, spelling: str = "conv", gate: str = "sigmoid"):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.se = SE(cout, spelling=spelling, gate=gate)
        self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return F.relu(y + self.short(x))


def se_resnet(num_classes: int = 10, in_channels: int = 1, spelling: str = "conv", gate: str = "sigmoid") -> nn.Module:
    """A small SE-ResNet: stem, two SE basic blocks (one strided), global pool, linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        SEBasicBlock(8, 8, 1, spelling, gate), SEBasicBlock(8, 16, 2, spelling, gate),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))


class MBV3Block(nn.Module):
    """MobileNetV3 bneck: 1x1 expand (hard-swish), depthwise (hard-swish), SE with hard-sigmoid, 1x1 project,
    residual when shapes allow."""

    def __init__(self, cin: int, exp: int, cout: int, stride: int = 1, k: int = 3):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp),
                                nn.Hardswish())
        self.se = SE(exp, spelling="none_index", gate="hardsigmoid")
        self.project = nn.Sequential(nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


def mobilenet_v3_tiny(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A small MobileNetV3-style net: hard-swish stem, two bnecks with SE (hard-sigmoid), pool, linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(),
        MBV3Block(8, 16, 8, 1), MBV3Block(8, 24, 12, 2),
        nn.Conv2d(12, 32, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
