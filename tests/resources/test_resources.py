import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from nets import NETS

from lightning_mcuprune.boards import LATENCY_FEATURES, load_board
from lightning_mcuprune.graph import trace_graph
from lightning_mcuprune.resources import ResourceModel, optimal_order, peak_of_order
from lightning_mcuprune.resources.order import all_topological_orders


class Seq(nn.Module):
    """conv(1->6) relu, maxpool 2, conv(6->8), GAP, linear(8->10) on a 1x8x8 input."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1), nn.Linear(8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.c2(x)), 1), 1))


class Res(nn.Module):
    """A residual block 4->8 channels on 4x8x8 with a 1x1 shortcut conv."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.sc = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(4, 8, 1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.sc(x))


def model_of(net, shape, board="mps2-an386"):
    return ResourceModel(trace_graph(net.eval(), torch.randn(1, *shape)), board)


def test_peak_sram_sequential_by_hand():
    rm = model_of(Seq(), (1, 8, 8))
    ws = rm.working_set(rm.dense_counts).tolist()
    # bytes (int8): input 1*8*8=64; c1 out 6*8*8=384; pool out 6*4*4=96; c2 out 8*4*4=128; gap 8; fc 10
    assert ws == [64 + 384, 384 + 96, 96 + 128, 128 + 8, 8 + 10]
    assert rm.peak_sram_bytes(rm.dense_counts).item() == 480
    assert rm.graph.ops[rm.evaluate(rm.dense_counts).bottleneck].type == "max_pool"


def test_peak_sram_residual_by_hand():
    rm = model_of(Res(), (4, 8, 8))
    names = [op.module or op.type for op in rm.graph.ops]
    assert names == ["conv1", "conv2", "sc", "add"]
    ws = rm.working_set(rm.dense_counts).tolist()
    x, a, b, s, out = 4 * 64, 8 * 64, 8 * 64, 8 * 64, 8 * 64
    assert ws == [x + a,            # conv1: x stays live for the shortcut
                  x + a + b,        # conv2
                  x + b + s,        # shortcut conv reads x (its last use)
                  b + s + out]      # add (+ fused relu); out is the network output
    assert rm.peak_sram_bytes(rm.dense_counts).item() == 1536
    # at half the block's channels (the united group of conv2/sc/add) the peak falls accordingly
    n = rm.dense_counts.clone()
    g = rm.graph.ops[3].out_channels[0][0]
    n[g] = 4
    half = 4 * 64
    assert rm.working_set(n).tolist() == [x + a, x + a + half, x + 2 * half, 3 * half]
    assert rm.peak_sram_bytes(n).item() == x + a + half   # the bottleneck moved to conv2


@pytest.mark.parametrize("name", list(NETS))
def test_resources_are_exact_integers_at_integer_counts(name):
    factory, shape = NETS[name]
    rm = model_of(factory(), shape)
    n = torch.floor(rm.dense_counts * 0.6).clamp(min=1)
    r = rm.evaluate(n)
    for v in (r.macs, r.params, r.flash_bytes, r.peak_sram_bytes):
        assert v.item() == round(v.item())


@pytest.mark.parametrize("name", list(NETS))
def test_gradcheck_every_resource(name):
    factory, shape = NETS[name]
    rm = model_of(factory(), shape)
    torch.manual_seed(1)
    n = (rm.dense_counts * (0.3 + 0.7 * torch.rand(len(rm.dense_counts), dtype=torch.float64))).requires_grad_()
    for key in ("macs", "params", "flash", "latency_ms", "sram"):
        assert torch.autograd.gradcheck(lambda v: rm.resource(key, v), (n,), eps=1e-6, atol=1e-5), key
    assert torch.autograd.gradcheck(lambda v: rm.smooth_peak_sram_bytes(v, 64.0), (n,), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("name", list(NETS))
def test_peak_gradient_lives_exactly_on_the_bottleneck_working_set(name):
    factory, shape = NETS[name]
    rm = model_of(factory(), shape)
    n = rm.dense_counts.clone().requires_grad_()
    r = rm.evaluate(n)
    r.peak_sram_bytes.backward()
    # with ties (e.g. the DS-CNN's equal-width blocks) the subgradient is split among all ops at the peak
    at_peak = (r.working_set == r.peak_sram_bytes).nonzero().flatten().tolist()
    assert r.bottleneck in at_peak
    L = rm.liveness(rm.order)
    live = {j for i in at_peak for j in L[i].nonzero().flatten().tolist()}
    groups = {g for j in live for g, _ in rm.graph.buffers[rm.buffer_names[j]].channels}
    assert set((n.grad != 0).nonzero().flatten().tolist()) == groups


def _branchy(branches=(1, 2, 3)):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.br = nn.ModuleList()
            for i, depth in enumerate(branches):
                chans = [8] + [4 * (i + 1) + 2 * j for j in range(depth)]
                self.br.append(nn.Sequential(*[nn.Conv2d(a, b, 1) for a, b in zip(chans, chans[1:])]))
            self.fc = nn.Linear(sum(4 * (i + 1) + 2 * (d - 1) for i, d in enumerate(branches)), 3)

        def forward(self, x):
            x = F.relu(self.stem(x))
            y = torch.cat([b(x) for b in self.br], 1)
            return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))
    return Branchy()


@pytest.mark.parametrize("net,shape", [(_branchy(), (1, 6, 6)), (_branchy((2, 2, 2)), (1, 5, 5)),
                                       (NETS["f_inception"][0](), (1, 10, 10)), (Res(), (4, 6, 6))])
def test_optimal_order_equals_brute_force(net, shape):
    rm = model_of(net, shape)
    torch.manual_seed(2)
    for trial in range(3):
        n = rm.dense_counts if trial == 0 else torch.ceil(rm.dense_counts * torch.rand(len(rm.dense_counts), dtype=torch.float64))
        best = min(peak_of_order(rm, n, o) for o in all_topological_orders(rm))
        order = optimal_order(rm, n)
        assert peak_of_order(rm, n, order) == best
        assert best <= peak_of_order(rm, n, list(range(len(rm.graph.ops))))


@pytest.mark.parametrize("name", ["inception", "resnet8", "mobilenet_v2_tiny", "f_inception", "se"])
def test_optimal_order_never_worse_than_traced(name):
    factory, shape = NETS[name]
    rm = model_of(factory(), shape)
    traced = rm.peak_sram_bytes(rm.dense_counts).item()
    rm.set_order("optimal")
    assert rm.peak_sram_bytes(rm.dense_counts).item() <= traced
    assert rm.peak_sram_bytes(rm.dense_counts).item() == peak_of_order(rm, rm.dense_counts, rm.order)


def test_bad_order_and_counts():
    rm = model_of(Res(), (4, 8, 8))
    with pytest.raises(ValueError, match="before the op that produces"):
        rm.set_order([3, 0, 1, 2])
    with pytest.raises(ValueError, match="every op exactly once"):
        rm.set_order([0, 1])
    with pytest.raises(ValueError, match="one per group"):
        rm.macs(torch.ones(99))
    with pytest.raises(ValueError, match="unknown resource"):
        rm.resource("energy", rm.dense_counts)


def test_latency_uses_board_coefficients_and_clock():
    net = Seq()
    a, b = model_of(net, (1, 8, 8), "nucleo-f767zi"), model_of(net, (1, 8, 8), "nucleo-f446re")
    n = a.dense_counts
    assert a.latency_ms(n).item() == pytest.approx(a.latency_cycles(n).item() / 216e3)
    assert b.latency_ms(n).item() == pytest.approx(b.latency_cycles(n).item() / 180e3)
    # cycles are the per-op linear model: check the first conv by hand, with a coefficient on every feature
    prof = load_board("nucleo-f767zi").to_dict()
    prof["latency"]["ops"]["conv2d"] = {f: float(i + 1) for i, f in enumerate(LATENCY_FEATURES)}
    c = model_of(net, (1, 8, 8), prof)
    coef = c.board.latency_coefficients["conv2d"]
    op_cycles = c.op_cycles(n)[0].item()
    # conv 1->6, 3x3, padding 1 on 8x8: per axis 8*3 - 2 = 22 kernel taps inside the input over the 8 outputs
    feats = dict(macs=6 * 64 * 9, input_elements=64, output_elements=6 * 64, weight_elements=54, output_channels=6,
                 valid_macs=22 * 22 * 1 * 6, valid_taps=22 * 22 * 6, kernel_positions=9 * 64 * 6, kernel_rows=3 * 64 * 6,
                 row_taps=22 * 8 * 3 * 6, valid_rows=22 * 8 * 6, output_pixels=64, output_rows=8, const=1)
    assert set(feats) == set(LATENCY_FEATURES)
    assert op_cycles == pytest.approx(sum(coef[f] * v for f, v in feats.items()))
    assert c.evaluate(n).op_cycles[0].item() == pytest.approx(op_cycles)
    assert c.latency_features(n)[0].tolist() == [float(feats[f]) for f in LATENCY_FEATURES]


def test_flash_by_hand():
    rm = model_of(Seq(), (1, 8, 8))
    b = rm.board
    weights = 6 * 9 + 8 * 6 * 9 + 10 * 8
    per_channel = 12 * (6 + 8 + 10)
    assert rm.flash_bytes(rm.dense_counts).item() == weights + per_channel + 5 * b.per_op_flash_bytes + b.runtime_flash_bytes
