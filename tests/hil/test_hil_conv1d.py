"""Conv1d latency (issue 12, item 5): a 1-d network (the keyword-spotting / audio users' case) run on the
emulated board through the lab benchmark: every layer's measured cycles within ±10% of the built-in profile's
prediction (it was -11% to -28% per conv layer: the resource model took the 1-d length for rows, while the
firmware runs (C, L) as one row of L), and the int8 output bit-exact."""
import torch
import torch.nn as nn

from hil_fixtures import require_hil_tools
from lightning_mcuprune.hil.benchmark import benchmark


def audio_net() -> nn.Module:
    """MFCC frames (40 coefficients x 49 frames) -> 10 words: the shape of a small 1-d KWS network."""
    return nn.Sequential(
        nn.Conv1d(40, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Conv1d(32, 32, 3, stride=2, padding=1, groups=32), nn.ReLU(),   # depthwise
        nn.Conv1d(32, 48, 1), nn.ReLU(),                                    # pointwise
        nn.MaxPool1d(2),
        nn.Conv1d(48, 48, 9, padding=4), nn.ReLU(),
        nn.AvgPool1d(3, stride=1, padding=1),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(48, 10),
    )


def test_conv1d_latency_within_10pct_on_the_emulated_board():
    require_hil_tools()
    torch.manual_seed(0)
    net = audio_net().eval()
    calib = torch.randn(16, 40, 49)
    res = benchmark(net, calib[:1], calib, emulate="mps2-an386")
    s = res.summary
    assert res.complete and s["bit_exact"] is True
    layers = res.layers
    one_d = layers[layers.type.isin(["conv2d", "depthwise_conv2d", "pointwise_conv2d", "max_pool", "avg_pool"])]
    assert len(one_d) == 6
    worst = one_d.error_pct.abs().max()
    assert worst <= 10.0, one_d[["label", "type", "predicted_cycles", "measured_cycles", "error_pct"]].to_string()
    assert abs(s["latency_error_pct"]) <= 5.0
