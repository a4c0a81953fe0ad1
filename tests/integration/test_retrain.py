"""reinitialized(): the same architecture with fresh weights, the original untouched."""
import torch

from lightning_mcuprune import analyze, reinitialized
from lightning_mcuprune.examples import zoo


def test_same_architecture_fresh_weights_original_untouched():
    torch.manual_seed(0)
    net = zoo.reference_cnn(width=0.25)
    with torch.no_grad():  # make the original distinguishable from any fresh draw, with non-trivial BN statistics
        for p in net.parameters():
            p.fill_(0.5)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
                m.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fresh = reinitialized(net, seed=1)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # original untouched
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in before.items()}
    convs = [m for m in fresh.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(not torch.all(c.weight == 0.5) for c in convs)  # re-drawn
    bns = [m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(b.running_mean == 0) and int(b.num_batches_tracked) == 0 for b in bns)
    x = torch.zeros(1, 1, 28, 28)
    a, b = analyze(net, x), analyze(fresh, x)
    assert (a.macs, a.params, a.peak_sram_bytes) == (b.macs, b.params, b.peak_sram_bytes)
    # repeatable with a seed, different without the same seed
    again = reinitialized(net, seed=1)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in fresh.state_dict().items())
    other = reinitialized(net, seed=2)
    assert not torch.equal(other.state_dict()["0.0.weight"], fresh.state_dict()["0.0.weight"])
