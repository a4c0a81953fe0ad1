"""Small test networks for the lab benchmark: reduced ResNet-8 / DS-CNN / MobileNetV2, dense or pruned by
MCUPruneCallback (a few steps on tiny random data) at a fraction of the dense peak SRAM."""
import warnings

import torch
from lit import Classifier, random_loader, trainer

from lightning_mcuprune import analyze
from lightning_mcuprune.examples import zoo
from lightning_mcuprune.callback import MCUPruneCallback

NETS = {
    "resnet8": (lambda: zoo.resnet8(in_channels=1, width=0.5), (1, 16, 16)),
    "ds_cnn": (lambda: zoo.ds_cnn(width=0.25), (1, 25, 10)),
    "mobilenet_v2": (lambda: zoo.mobilenet_v2_tiny(width=0.35), (1, 16, 16)),
}


def make_net(name: str, board: str = "mps2-an386", sram_frac: float = 1.0, steps: int = 16, seed: int = 0):
    """(net in eval mode, input shape, calibration batch). sram_frac < 1: pruned by the callback to that
    fraction of the dense peak SRAM."""
    factory, shape = NETS[name]
    torch.manual_seed(seed)
    net = factory()
    loader = random_loader(shape, classes=10, n=48, batch=8, seed=seed)
    if sram_frac < 1.0:
        dense = analyze(factory(), torch.zeros(1, *shape), board=board)
        budget = int(dense.peak_sram_bytes * sram_frac)
        model = Classifier(net)
        cb = MCUPruneCallback(board, {"sram": budget}, verbose=False, export=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer([cb], max_steps=steps).fit(model, loader)
        net = model.net
    else:  # a few steps of training so BN statistics are not trivial
        model = Classifier(net)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer([], max_steps=4).fit(model, loader)
        net = model.net
    net.eval()
    calib = torch.cat([x for x, _ in loader])[:32]
    return net, shape, calib


def tiny():
    """A tiny CNN for the CLI test (input 1x8x8)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 6, 3), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(6 * 2 * 2, 5))
