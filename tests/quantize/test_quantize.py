"""int8 quantisation from the ResourceGraph, the host executor, the arena plan (no board needed)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lightning_mcuprune import ResourceModel
from lightning_mcuprune.examples import zoo
from lightning_mcuprune.hil.deploy import DeployError, build_deployment, plan_arena
from lightning_mcuprune.quantize import UnsupportedOnBoardError, quantize

NETS = {
    "resnet8": (lambda: zoo.resnet8(in_channels=1, width=0.5), (1, 16, 16)),
    "ds_cnn": (lambda: zoo.ds_cnn(width=0.25), (1, 25, 10)),
    "mobilenet_v2": (lambda: zoo.mobilenet_v2_tiny(width=0.35), (1, 16, 16)),
    "reference_cnn": (lambda: zoo.reference_cnn(width=0.25), (1, 28, 28)),
}


def _randomize_bn(net):
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


@pytest.mark.parametrize("name", list(NETS))
def test_int8_tracks_float_and_executor_matches_layer_reference(name):
    factory, shape = NETS[name]
    net = _randomize_bn(factory())
    x = torch.randn(48, *shape)
    q = quantize(net, x[:1], x)
    assert [op.name for op in q.ops] == [op.name for op in q.graph.ops]     # the resource model's ops and order
    with torch.no_grad():
        f = net(x).numpy()
    y = q.predict(x)
    assert (y.argmax(1) == f.argmax(1)).mean() >= 0.9
    assert np.abs(y - f).max() <= 0.05 * np.abs(f).max() + 0.01
    # the batched executor equals the single-sample LayerSpec reference (the firmware's contract), op by op
    bufs = q.run(q.quantize_input(x[:2]), keep=True)
    for op in q.ops:
        args = [bufs[b][1] for b in op.inputs]
        want = op.spec.reference(args[0], args[1] if len(args) > 1 else None)
        assert np.array_equal(bufs[op.output][1].reshape(want.shape), want), op.name


def test_dense_after_flatten_of_chw_is_permuted_to_hwc():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 5, 7)).eval()
    x = torch.randn(64, 1, 6, 5)
    q = quantize(net, x[:1], x)
    with torch.no_grad():
        f = net(x).numpy()
    y = q.predict(x)
    assert np.abs(y - f).max() <= 0.03 * np.abs(f).max() + 0.01
    assert (y.argmax(1) == f.argmax(1)).mean() >= 0.95


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(torch.cat([self.a(x), self.b(x)], 1), 1).flatten(1))


@pytest.mark.parametrize("net,match", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2), nn.Softmax(1)), "softmax"),
    (_Cat(), "concat"),
])
def test_op_the_firmware_lacks_is_named(net, match):
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(UnsupportedOnBoardError, match=match):
        quantize(net.eval(), x[:1], x)


@pytest.mark.parametrize("name", list(NETS))
def test_arena_plan_reaches_the_predicted_peak_without_overlaps(name):
    factory, shape = NETS[name]
    net = factory().eval()
    x = torch.randn(8, *shape)
    q = quantize(net, x[:1], x)
    plan = plan_arena(q)
    rm = ResourceModel(q.graph, "mps2-an386")
    assert plan.arena_bytes == plan.peak_bytes == int(rm.peak_sram_bytes(q.graph.dense_counts))
    L = rm.liveness(rm.order).numpy()
    for i in range(len(q.ops)):
        live = [b for j, b in enumerate(rm.buffer_names) if L[i, j]]
        spans = sorted((plan.offsets[b], plan.offsets[b] + plan.sizes[b]) for b in live)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (i, spans)


def test_too_big_for_the_board_says_by_how_much():
    net = zoo.reference_cnn(width=1.0).eval()
    x = torch.randn(2, 1, 28, 28)
    dep = build_deployment(quantize(net, x[:1], x))
    need = dep.arena_bytes
    with pytest.raises(DeployError, match=rf"arena of {need} B but mps2-an386 has 10000 B \({need - 10000} B too many\)"):
        dep.check_fits(10000, 1 << 20, "mps2-an386")
    with pytest.raises(DeployError, match=r"weights store of b has 1000 B \(\d+ B too many\)"):
        dep.check_fits(1 << 30, 1000, "b")


def test_bias_clipped_only_where_the_int32_accumulator_could_overflow():
    """int32 biases keep TFLite's converter range (+-(2^31-1)) less what the channel's products can add: the
    accumulator of the clipped channel can reach 2^31-1 exactly and never more (the firmware accepts the layer);
    an ordinary bias is not clipped at all (it used to be clipped at +-2^30 whatever the weights)."""
    from lightning_mcuprune.quantize.layer import INT32_MAX
    from hil_fixtures import big_bias_conv

    from lightning_mcuprune.quantize.ptq import bias_limit
    net = big_bias_conv()
    x = torch.randn(64, 1, 6, 6)
    qg = quantize(net, x[:1], x)
    op = qg.ops[0]
    qi = qg.qparams[op.inputs[0]]
    exact = np.round(net[0].bias.detach().double().numpy() / (qi.scale * op.weight_scales.astype(np.float64)))
    w = op.weights.reshape(2, -1)
    limit = bias_limit(w, qi.zero_point)
    assert exact[1] > INT32_MAX > limit[1] > 2 ** 30 and op.spec.bias[1] == limit[1]
    assert op.spec.bias[0] == exact[0]
    assert op.spec.accumulator_bound() == INT32_MAX
    op.spec.check_accumulator()   # the firmware takes it
