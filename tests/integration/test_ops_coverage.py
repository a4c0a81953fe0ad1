"""Issue 12 item 4: what users write in MCU networks (squeeze-excitation with sigmoid or hard-sigmoid, hard-swish,
channel-wise multiply, `s[:, :, None, None]` / unsqueeze / view / flatten / mean, SiLU, LeakyReLU, Tanh, GELU)
goes through every path: analyze, MCUPruneCallback in Trainer.fit, int8 quantisation + host reference, the
firmware on QEMU (bit-exact), and the lab benchmark CLI."""
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hil_fixtures import emulated_board, require_hil_tools
from lit import Classifier, random_loader, trainer
from se_nets import mobilenet_v3_tiny, se_resnet

from lightning_mcuprune import MCUPruneCallback, analyze
from lightning_mcuprune.graph.trace import UnsupportedOpError
from lightning_mcuprune.hil.benchmark import benchmark
from lightning_mcuprune.quantize import UnsupportedOnBoardError, quantize

SHAPE = (1, 16, 16)
SPELLINGS = ["conv", "none_index", "unsqueeze", "view", "reshape", "expand_as"]
GATES = ["sigmoid", "torch.sigmoid", "F.sigmoid", "hardsigmoid", "F.hardsigmoid"]


def _macs_by_hooks(net, x) -> int:
    """MACs of every Conv2d/Linear call, counted from PyTorch's own shapes."""
    total = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total.append(out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        else:
            total.append(out[0].numel() * m.in_features)
    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.eval()(x)
    for h in hs:
        h.remove()
    return sum(total)


def _trained(net, steps=4, seed=0):
    """A few training steps so BN statistics are not trivial; eval mode."""
    torch.manual_seed(seed)
    model = Classifier(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer([], max_steps=steps).fit(model, random_loader(SHAPE, n=32, batch=8, seed=seed))
    return model.net.eval()


def _pruned(factory, frac=0.6, steps=12, seed=0):
    """(callback, pruned net in eval mode, dense report): MCUPruneCallback in a real Trainer.fit at `frac` of the
    dense peak SRAM."""
    torch.manual_seed(seed)
    dense = analyze(factory(), torch.zeros(1, *SHAPE))
    torch.manual_seed(seed)
    model = Classifier(factory())
    cb = MCUPruneCallback("mps2-an386", {"sram": int(dense.peak_sram_bytes * frac)}, verbose=False, export=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer([cb], max_steps=steps).fit(model, random_loader(SHAPE, n=48, batch=8, seed=seed))
    return cb, model.net.eval(), dense


# ---- analyze ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("gate", ["sigmoid", "F.hardsigmoid"])
def test_analyze_se_spellings_give_one_resource_graph(spelling, gate):
    """Every common SE spelling traces; MACs equal PyTorch's, SRAM/flash/latency equal the 1x1-conv spelling's."""
    x = torch.zeros(1, *SHAPE)
    net = se_resnet(spelling=spelling, gate=gate)
    r = analyze(net, x)
    ref = analyze(se_resnet(spelling="conv", gate=gate), x)
    assert r.macs == _macs_by_hooks(net, x) == ref.macs
    assert (r.peak_sram_bytes, r.flash_bytes) == (ref.peak_sram_bytes, ref.flash_bytes)
    # linears run as the firmware's dense kernel, 1x1 convs as its pointwise one: calibrated separately
    assert r.latency_cycles == pytest.approx(ref.latency_cycles, rel=1e-3)
    types = list(r.layers.type)
    assert types.count("mul") == 2 and "activation" not in types      # the gate fuses into fc2
    # groups: the SE's inner channels are their own prunable group; the gated tensor shares the block's group
    g = r.graph
    groups = {op.label: op.out_channels for op in g.ops}
    for blk in ("3", "4"):
        assert groups[f"{blk}.se.fc2"] == groups[f"{blk}.conv2"]
        inner = groups[f"{blk}.se.fc1"][0][0]
        assert g.groups[inner].prunable and inner not in {grp for grp, _ in groups[f"{blk}.conv2"]}


def test_analyze_counts_lookup_tables_in_flash_and_latency():
    """A fused sigmoid/hard-swish adds its 256-byte table to flash and the activation cost to its op's latency."""
    x = torch.zeros(1, 1, 8, 8)
    plain = analyze(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2)), x)
    hs = analyze(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Hardswish(), nn.Flatten(), nn.Linear(144, 2)), x)
    assert hs.flash_bytes - plain.flash_bytes == 256
    act = hs.board.latency_coefficients["activation"]
    extra = act.get("output_elements", 0) * 4 * 36 + act.get("const", 0)
    assert hs.layers.latency_cycles[0] - plain.layers.latency_cycles[0] == pytest.approx(extra)
    assert "activation" in hs.board.estimated_ops      # never passed off as measured


@pytest.mark.parametrize("index,what", [("s[:, :2]", r"indexing .*\[:, :2\].*in module 'se' \(Bad\).*use a conv with fewer"),
                                        ("s[:, :, 0]", r"indexing .*in module 'se' \(Bad\).*adds dims")])
def test_analyze_refuses_other_indexing_with_module_path_and_alternative(index, what):
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            s = self.conv(x)
            return eval(index, {"s": s})

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    net.add_module("se", Bad())
    with pytest.raises(UnsupportedOpError, match=what):
        analyze(net, torch.zeros(1, 1, 8, 8))


# ---- prune (MCUPruneCallback in Trainer.fit) ------------------------------------------------------------
@pytest.mark.parametrize("name", ["se_resnet", "se_resnet-unsqueeze", "se_resnet-expand_as", "mobilenet_v3"])
def test_callback_prunes_se_networks_to_budget(name):
    factory = {"se_resnet": lambda: se_resnet(spelling="none_index"), "mobilenet_v3": mobilenet_v3_tiny,
               "se_resnet-unsqueeze": lambda: se_resnet(spelling="unsqueeze", gate="F.hardsigmoid"),
               "se_resnet-expand_as": lambda: se_resnet(spelling="expand_as", gate="torch.sigmoid")}[name]
    cb, net, dense = _pruned(factory)
    after = analyze(net, torch.zeros(1, *SHAPE))
    assert after.peak_sram_bytes <= cb.budgets["sram"] < dense.peak_sram_bytes
    # the SE's inner channels and the gated channels are pruned as two groups; the network still runs
    labels = {op.label: op for op in after.graph.ops}
    blk = "4" if name == "mobilenet_v3" else "3"
    fc1, fc2 = labels[f"{blk}.se.fc1"], labels[f"{blk}.se.fc2"]
    gated = net.get_submodule(f"{blk}.se.fc2").out_features if hasattr(net.get_submodule(f"{blk}.se.fc2"), "out_features") \
        else net.get_submodule(f"{blk}.se.fc2").out_channels
    assert after.graph.buffers[fc2.output].shape[1] == gated
    assert fc1.out_channels[0][0] != fc2.out_channels[0][0]
    assert net(torch.zeros(2, *SHAPE)).shape == (2, 10)


# ---- quantise + host int8 reference -------------------------------------------------------------------
@pytest.mark.parametrize("gate", GATES)
def test_quantize_se_gates_track_float(gate):
    net = _trained(se_resnet(spelling="unsqueeze", gate=gate))
    x = torch.randn(64, *SHAPE)
    q = quantize(net, x[:1], x)
    kinds = [(op.spec.op, op.post.op if op.post else None, op.activation) for op in q.ops]
    want_gate = "hardsigmoid" if "hard" in gate else "sigmoid"
    assert kinds.count(("dense", "lut", want_gate)) == 2 and [k[0] for k in kinds].count("mul") == 2
    gate_op = next(op for op in q.ops if op.activation == want_gate)
    assert (q.qparams[gate_op.output].scale, q.qparams[gate_op.output].zero_point) == (1 / 256, -128)
    assert gate_op.pre_qparams is not None and gate_op.post.function == want_gate
    with torch.no_grad():
        f = net(x).numpy()
    y = q.predict(x)
    assert np.abs(y - f).max() <= 0.05 * np.abs(f).max() + 0.01
    _executor_matches_layer_reference(q, x)


def _executor_matches_layer_reference(q, x):
    """The batched executor equals the single-sample LayerSpec reference (the firmware's contract), op by op."""
    bufs = q.run(q.quantize_input(x[:2]), keep=True)
    for op in q.ops:
        args = [bufs[b][1] for b in op.inputs]
        want = op.spec.reference(args[0], args[1] if len(args) > 1 else None)
        if op.post is not None:
            want = op.post.reference(want)
        assert np.array_equal(bufs[op.output][1].reshape(want.shape), want), op.name


def test_quantize_mobilenet_v3_block_tracks_float():
    net = _trained(mobilenet_v3_tiny())
    x = torch.randn(64, *SHAPE)
    q = quantize(net, x[:1], x)
    assert sum(op.activation == "hardswish" for op in q.ops) == 6
    assert sum(op.spec.op == "mul" and op.spec.broadcast for op in q.ops) == 2
    with torch.no_grad():
        f = net(x).numpy()
    y = q.predict(x)
    assert np.abs(y - f).max() <= 0.05 * np.abs(f).max() + 0.01
    _executor_matches_layer_reference(q, x)


class _Acts(nn.Module):
    """SiLU, LeakyReLU, Tanh, GELU fused after convs, a standalone SiLU written by hand (x * sigmoid(x)),
    an elementwise (same-shape) multiply and scalar arithmetic (hard-sigmoid spelt relu6(x + 3) / 6)."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3, self.c4 = (nn.Conv2d(1 if i == 0 else 4, 4, 3, padding=1) for i in range(4))
        self.acts = nn.ModuleList([nn.SiLU(), nn.LeakyReLU(0.1), nn.Tanh(), nn.GELU()])
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        for conv, act in zip((self.c1, self.c2, self.c3, self.c4), self.acts):
            x = act(conv(x))
        x = x * torch.sigmoid(x)
        x = x * (F.relu6(x + 3) / 6)
        return self.fc(F.hardswish(x.mean((2, 3))))      # a table fused after global average pooling


def test_quantize_lut_activations_track_float():
    net = _Acts().eval()
    x = torch.randn(64, *SHAPE)
    q = quantize(net, x[:1], x)
    assert {op.activation for op in q.ops} >= {"silu", "leaky_relu", "tanh", "gelu", "sigmoid", "hardswish"}
    assert [op.spec.op for op in q.ops].count("lut") >= 3      # the unfused sigmoid, + 3, relu6, / 6
    with torch.no_grad():
        f = net(x).numpy()
    y = q.predict(x)
    assert np.abs(y - f).max() <= 0.05 * np.abs(f).max() + 0.01
    _executor_matches_layer_reference(q, x)


@pytest.mark.parametrize("net,match", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 2), nn.Softmax(1)), r"softmax, which is not elementwise.*Drop it"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 2)), r"BatchNorm '2' follows no conv"),
])
def test_quantize_refuses_what_no_int8_kernel_runs(net, match):
    x = torch.randn(8, 1, 8, 8)
    with pytest.raises(UnsupportedOnBoardError, match=match):
        quantize(net.eval(), x[:1], x)


# ---- firmware on QEMU and the lab benchmark ------------------------------------------------------------
@pytest.fixture(scope="module")
def an386():
    yield from emulated_board("mps2-an386")


def _check_on_board(res):
    s = res.summary
    assert res.complete and s["bit_exact"] is True and s["layers_bit_exact"] == s["layers"]
    assert s["arena_high_water"] == s["predicted_peak_sram"]
    assert s["board_bit_exact_samples"] == s["board_samples"] == 2


@pytest.mark.parametrize("name", ["se_resnet", "mobilenet_v3"])
def test_pruned_se_networks_bit_exact_on_qemu(an386, name):
    factory = {"se_resnet": lambda: se_resnet(spelling="view", gate="hardsigmoid"), "mobilenet_v3": mobilenet_v3_tiny}[name]
    cb, net, _ = _pruned(factory)
    calib = torch.randn(32, *SHAPE)
    res = benchmark(net, calib[:1], calib, link=an386, board_samples=2)
    _check_on_board(res)
    assert {"mul"} <= set(res.layers.type) and res.summary["arena_high_water"] <= cb.budgets["sram"]


def test_lut_activations_bit_exact_on_qemu(an386):
    net = _Acts().eval()
    calib = torch.randn(32, *SHAPE)
    res = benchmark(net, calib[:1], calib, link=an386, board_samples=2)
    _check_on_board(res)
    assert "activation" in set(res.layers.type)


def test_cli_benchmark_se_network_end_to_end(tmp_path):
    """`mcuprune benchmark PKG.MODULE:CALLABLE --emulate`: an SE-ResNet from the user's own module, on QEMU."""
    require_hil_tools()
    from lightning_mcuprune.cli import main
    rc = main(["benchmark", "se_nets:se_resnet", "--input-shape", "1,16,16", "--emulate", "mps2-an386",
               "--board-samples", "1", "--json", str(tmp_path / "b.json")])
    assert rc == 0
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["summary"]["bit_exact"] is True and d["summary"]["board_bit_exact_samples"] == 1
    assert d["summary"]["arena_high_water"] == d["summary"]["predicted_peak_sram"]
    assert {"mul", "global_avg_pool"} <= {r["type"] for r in d["layers"]}


# ---- TFLite Micro's own int8 arithmetic ---------------------------------------------------------------
def test_sigmoid_and_hardswish_tables_equal_tflite_micro():
    """The lookup tables quantize() builds for LOGISTIC- and HARD_SWISH-able activations equal what TFLite Micro's
    interpreter computes for every int8 input at the same scales and zero points (so a .tflite export of these
    ops runs bit-exact with our firmware)."""
    import tflite
    from tflm_ops import tflm_table
    codes = {"sigmoid": tflite.BuiltinOperator.LOGISTIC, "hardswish": tflite.BuiltinOperator.HARD_SWISH}
    checked = 0
    for net in (_trained(mobilenet_v3_tiny()), _trained(se_resnet(spelling="view", gate="F.sigmoid"))):
        x = torch.randn(32, *SHAPE)
        q = quantize(net, x[:1], x)
        for op in q.ops:
            if op.activation in codes:
                qi, qo = op.pre_qparams, q.qparams[op.output]
                want = tflm_table(codes[op.activation], qi.scale, qi.zero_point, qo.scale, qo.zero_point)
                assert np.array_equal(op.post.weights, want), (op.name, op.activation)
                checked += 1
    assert checked == 8   # 6 hard-swish, 2 sigmoid
    # and over random quantisations, both directions of the range
    from lightning_mcuprune.quantize.reference import hardswish_table_tflite, lut_table
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, z = float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-128, 128))
        so, zo = float(np.float32(s * 10 ** rng.uniform(-1, 0.5))), int(rng.integers(-128, 128))
        assert np.array_equal(hardswish_table_tflite(s, z, so, zo), tflm_table(codes["hardswish"], s, z, so, zo))
        assert np.array_equal(lut_table(lambda v: 1 / (1 + np.exp(-v)), s, z, 1 / 256, -128),
                              tflm_table(codes["sigmoid"], s, z, 1 / 256, -128))
        assert np.array_equal(lut_table(np.tanh, s, z, 1 / 128, 0), tflm_table(tflite.BuiltinOperator.TANH, s, z, 1 / 128, 0))


@pytest.mark.parametrize("broadcast", [True, False], ids=["channel-wise", "elementwise"])
def test_mul_equals_tflite_micro(broadcast):
    """Our int8 MUL (host reference = firmware) equals TFLite Micro's MUL, channel-wise [1,1,1,C] broadcast
    (squeeze-excitation) and same-shape, over random quantisations and inputs with extremes."""
    import tflite
    from tflm_ops import op_model, run_tflm

    from lightning_mcuprune.quantize.reference import mul, quantize_multiplier
    rng = np.random.default_rng(1 + broadcast)
    for _ in range(25):
        h, w, c = (int(v) for v in rng.integers(1, 7, 3))
        s1, s2 = (float(np.float32(10 ** rng.uniform(-3, 0))) for _ in range(2))
        so = float(np.float32(s1 * s2 * 127 * 10 ** rng.uniform(-0.5, 1.5)))
        z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
        shape2 = (1, 1, 1, c) if broadcast else (1, h, w, c)
        x1 = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
        x2 = rng.integers(-128, 128, shape2).astype(np.int8)
        x1.flat[:2], x2.flat[:1] = (-128, 127), -128
        model = op_model(tflite.BuiltinOperator.MUL, [((1, h, w, c), s1, z1), (shape2, s2, z2)], ((1, h, w, c), so, zo))
        want = run_tflm(model, x1, x2).reshape(h, w, c)
        m, sh = quantize_multiplier(s1 * s2 / so)   # as quantize() and TFLM: in double, of float32 scales
        got = mul(x1[0], x2[0], z1, z2, zo, m, sh)
        assert np.array_equal(got.reshape(h, w, c), want), (s1, s2, so, z1, z2, zo)


# ---- what no int8 kernel runs: said before training ------------------------------------------------------
def test_callback_says_before_training_what_the_firmware_cannot_run():
    """A network ending in Softmax trains and prunes, but the callback warns at the first batch, before any step,
    naming the module and the alternative (quantize/benchmark would refuse it after training)."""
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 12 * 12, 10), nn.Softmax(1))
    dense = analyze(net, torch.zeros(1, *SHAPE))
    cb = MCUPruneCallback("mps2-an386", {"sram": int(dense.peak_sram_bytes * 0.7)}, verbose=False, export=False)
    model = Classifier(net)
    seen = {}
    original = cb._warn_deployment_gaps

    def spy():
        seen["step"] = model.trainer.global_step
        original()
    cb._warn_deployment_gaps = spy
    with pytest.warns(UserWarning, match=r"firmware cannot run 1 op\(s\).*op 'net.5' \(Linear\) ends in a softmax.*Drop it"):
        trainer([cb], max_steps=4).fit(model, random_loader(SHAPE, n=32, batch=8))
    assert seen["step"] == 0
    with pytest.raises(UnsupportedOnBoardError, match="softmax"):
        quantize(model.net.eval(), torch.zeros(1, *SHAPE), torch.randn(8, *SHAPE))


def test_callback_does_not_warn_for_se_networks():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _pruned(mobilenet_v3_tiny, steps=4)
    assert not [x for x in w if "firmware cannot run" in str(x.message)]
