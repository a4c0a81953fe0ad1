"""int8 TFLite export, checked with TensorFlow Lite Micro's own interpreter (tflite-micro, host build)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

import lightning_mcuprune as lm
from lightning_mcuprune.examples import zoo
from lightning_mcuprune.deploy import TFLiteExportError

tflm = pytest.importorskip("tflite_micro") if os.environ.get("CI") != "true" else __import__("tflite_micro")
from lightning_mcuprune.deploy.tflm import check, measure_arena  # noqa: E402


def _within(pred: int, meas: int) -> bool:
    return meas <= pred <= meas + max(0.01 * meas, 64)


@pytest.mark.parametrize("name,shape", [("inception_like", (1, 20, 20)), ("mobilenet_v2_tiny", (1, 16, 16)),
                                        ("resnet8", (3, 16, 16))])
def test_export_tflite_bit_exact_with_tflm_and_arena_predicted(name, shape, tmp_path):
    torch.manual_seed(0)
    kw = {"resnet8": dict(width=0.5)}.get(name, {})
    net = getattr(zoo, name)(**kw).eval()
    calib = torch.randn(64, *shape)
    res = lm.export_tflite(net, calib[:1], calib, tmp_path / "model.tflite")
    data = (tmp_path / "model.tflite").read_bytes()
    assert data == res.data and data[4:8] == b"TFL3"
    r = check(res.qgraph, data, torch.randn(100, *shape))
    assert r.bit_exact, f"{r.mismatched_samples}/100 outputs differ (max {r.max_abs_diff})"
    assert _within(res.host.total, r.measured_arena_bytes), (res.host, r.measured_arena_bytes)
    assert res.cortex_m.total < res.host.total   # 32-bit structs are smaller (estimate)


def test_padding_that_is_not_same_becomes_a_pad_op(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x = torch.randn(32, 1, 16, 16)
    res = lm.export_tflite(net.eval(), x[:1], x)
    assert [op.code for op in res.model.ops] == ["PAD", "CONV_2D", "PADV2", "MAX_POOL_2D", "FULLY_CONNECTED"]
    assert check(res.qgraph, res.data, torch.randn(100, 1, 16, 16), measure=False).bit_exact


def test_c_files_and_op_resolver(tmp_path):
    net = zoo.ds_cnn(width=0.25).eval()
    x = torch.randn(16, 1, 49, 10)
    res = lm.export_tflite(net, x[:1], x, tmp_path / "model.tflite", c_dir=tmp_path)
    h = (tmp_path / "model_data.h").read_text()
    cc = (tmp_path / "model_data.cc").read_text()
    ops = (tmp_path / "model_ops.h").read_text()
    assert f"g_model_data_size = {len(res.data)};" in h
    assert "alignas(16) const unsigned char g_model_data[g_model_data_size]" in cc
    body = cc.split("{", 1)[1].rsplit("}", 1)[0]
    assert bytes(int(v, 16) for v in body.replace(",", " ").split()) == res.data
    codes = res.model.op_codes
    assert f"kTensorArenaSize = {res.host.total};" in ops and f"MicroMutableOpResolver<{len(codes)}>" in ops
    for m in ("AddConv2D", "AddDepthwiseConv2D", "AddMean", "AddFullyConnected"):
        assert f"resolver.{m}()" in ops
    if subprocess.run(["which", "g++"], capture_output=True).returncode == 0:
        subprocess.run(["g++", "-std=c++17", "-c", str(tmp_path / "model_data.cc"), "-o", str(tmp_path / "m.o")],
                       check=True)


def test_unsupported_op_fails_before_any_file(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Hardsigmoid(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.randn(8, 1, 8, 8)
    with pytest.raises(TFLiteExportError, match=r"'0'.*hardsigmoid.*no int8 TFLite builtin.*tflm.*nn.Sigmoid"):
        lm.export_tflite(net, x[:1], x, tmp_path / "m.tflite", c_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_no_calibration_data_says_how(tmp_path):
    with pytest.raises(ValueError, match="calib_data="):
        lm.export_tflite(zoo.reference_cnn(width=0.25), torch.zeros(1, 1, 28, 28), None, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_check_without_tflite_micro_names_the_install_command():
    code = ("import sys; sys.modules['tflite_micro'] = None\n"
            "from lightning_mcuprune.deploy.tflm import measure_arena, TFLMNotInstalled\n"
            "try:\n    measure_arena(b'')\nexcept TFLMNotInstalled as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "lightning-mcuprune[tflm]"' in out


def test_measured_arena_is_the_smallest_that_runs():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 2)).eval()
    x = torch.randn(16, 1, 8, 8)
    res = lm.export_tflite(net, x[:1], x)
    from lightning_mcuprune.deploy.tflm import _fits, _runtime
    a = measure_arena(res.data)
    assert _fits(res.data, a, _runtime()) and not _fits(res.data, a - 1, _runtime())
    assert _within(res.host.total, a)


def _callback_fit(tmp_path, net, shape, budget, seed=0, key="sram"):
    import warnings

    from lit import Classifier, random_loader, trainer

    from lightning_mcuprune.callback import MCUPruneCallback
    torch.manual_seed(seed)
    model = Classifier(net)
    cb = MCUPruneCallback("mps2-an386", {key: budget}, runtime="tflm", verbose=False, calib_samples=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = trainer([cb], max_steps=20, default_root_dir=str(tmp_path))
        t.fit(model, random_loader(shape, n=40, batch=8, seed=seed))
    return cb


@pytest.mark.parametrize("name,factory,shape", [
    ("resnet8", lambda: zoo.resnet8(in_channels=1), (1, 12, 12)),
    ("mobilenet_v2", lambda: zoo.mobilenet_v2_tiny(width=0.5), (1, 12, 12)),
    ("se_resnet", lambda: _se_resnet("conv"), (1, 20, 20))])
def test_callback_tflm_budget_holds_in_tflm_and_export_writes_tflite(name, factory, shape, tmp_path):
    dense = lm.analyze(factory().eval(), torch.zeros(1, *shape), runtime="tflm").peak_sram_bytes
    budget = int(dense * 0.85)
    cb = _callback_fit(tmp_path, factory(), shape, budget)
    out = cb.export_dir
    data = (out / "model.tflite").read_bytes()
    assert (out / "model_data.cc").is_file() and (out / "model_ops.h").is_file()
    import json
    rep = json.loads((out / "report.json").read_text())
    assert rep["runtime"] == "tflm" and rep["tflite"]["calibration_samples"] == 32
    measured = measure_arena(data)
    assert measured <= budget, (measured, budget)
    assert rep["tflite"]["arena_bytes_host_predicted"] >= measured
    assert rep["peak_sram_bytes"] >= measured


def test_analyze_runtime_tflm_predicts_file_and_arena():
    net = zoo.inception_like().eval()
    x = torch.randn(32, 1, 28, 28)
    rep = lm.analyze(net, x[:1], runtime="tflm")
    res = lm.export_tflite(net, x[:1], x)
    from lightning_mcuprune.deploy.export import runtime_flash_bytes
    model_flash = rep.flash_bytes - runtime_flash_bytes(res.model.op_codes)
    assert model_flash == len(res.data)   # the writer's layout, serialised: exact
    m = measure_arena(res.data)
    assert _within(rep.peak_sram_bytes, m)
    fw = lm.analyze(net, x[:1])
    assert fw.runtime == "mcuprune-firmware" and fw.peak_sram_bytes < rep.peak_sram_bytes


def test_cli_export_tflite_and_c_and_benchmark_runtime_tflm(tmp_path):
    from lightning_mcuprune.cli import main
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((32, 1, 49, 10)).astype(np.float32))
    spec = "lightning_mcuprune.examples.zoo:ds_cnn"
    assert main(["export", spec, "--input-shape", "1,49,10", "--format", "tflite", "--out", str(tmp_path / "t"),
                 "--calib-data", str(calib)]) == 0
    assert (tmp_path / "t" / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert main(["export", spec, "--input-shape", "1,49,10", "--format", "c", "--out", str(tmp_path / "c"),
                 "--calib-data", str(calib)]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["model_data.cc", "model_data.h", "model_ops.h"]
    out = tmp_path / "b.json"
    assert main(["benchmark", spec, "--input-shape", "1,49,10", "--runtime", "tflm", "--json", str(out)]) == 0
    import json
    r = json.loads(out.read_text())
    assert r["bit_exact"] and r["samples"] == 100
    assert r["measured_arena_bytes"] <= r["arena_bytes_host_predicted"] <= r["measured_arena_bytes"] * 1.01


def test_cli_export_without_calibration_data_says_how(tmp_path, capsys):
    from lightning_mcuprune.cli import main
    assert main(["export", "lightning_mcuprune.examples.zoo:ds_cnn", "--input-shape", "1,49,10", "--out", str(tmp_path)]) == 2
    assert "--calib-data" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_our_offline_memory_plan_lowers_tflm_arena():
    """Inception-like: TFLM's greedy planner fragments; our plan, embedded as OfflineMemoryAllocation, needs less,
    and TFLM's measured arena is what we predicted in both cases."""
    net = zoo.inception_like().eval()
    x = torch.randn(32, 1, 28, 28)
    plain = lm.export_tflite(net, x[:1], x, offline_plan=False)
    planned = lm.export_tflite(net, x[:1], x)
    assert b"OfflineMemoryAllocation" in planned.data and b"OfflineMemoryAllocation" not in plain.data
    r = check(planned.qgraph, planned.data, torch.randn(20, 1, 28, 28))
    m_plain = measure_arena(plain.data)
    assert r.bit_exact and _within(planned.host.total, r.measured_arena_bytes) and _within(plain.host.total, m_plain)
    assert r.measured_arena_bytes < m_plain


# ---- squeeze-excitation and MobileNetV3 ops: MUL, LOGISTIC, HARD_SWISH, TANH (issue 14) ------------------
def _mbv3_sigmoid_gate():
    """MobileNetV3-style net (hard-swish everywhere, SE blocks) with a sigmoid gate: TFLite has no int8
    hard-sigmoid builtin, so a TFLM deployment uses nn.Sigmoid (what the export's error message says)."""
    import se_nets

    class Block(se_nets.MBV3Block):
        def __init__(self, *a):
            super().__init__(*a)
            self.se = se_nets.SE(self.se.fc1.in_features, spelling="none_index", gate="sigmoid")
    return nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(),
                         Block(8, 16, 8, 1), Block(8, 24, 12, 2), nn.Conv2d(12, 32, 1, bias=False), nn.BatchNorm2d(32),
                         nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def _se_resnet(spelling):
    from se_nets import se_resnet
    return se_resnet(spelling=spelling)


@pytest.mark.parametrize("name,factory,codes", [
    ("se_resnet_conv", lambda: _se_resnet("conv"), {"MUL": 2, "LOGISTIC": 2}),
    ("se_resnet_view", lambda: _se_resnet("view"), {"MUL": 2, "LOGISTIC": 2}),
    ("mobilenet_v3_style", _mbv3_sigmoid_gate, {"MUL": 2, "LOGISTIC": 2, "HARD_SWISH": 6}),
    ("sigmoid_tanh_after_pool_and_standalone", lambda: nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Sigmoid(), nn.Conv2d(16, 64, 3), nn.MaxPool2d(2), nn.Tanh(),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 10), nn.ReLU(), nn.Sigmoid()), {"LOGISTIC": 2, "TANH": 1}),
])
def test_se_and_lut_ops_export_bit_exact_with_tflm_arena_and_flash_predicted(name, factory, codes, tmp_path):
    torch.manual_seed(0)
    net = factory().eval()
    calib = torch.randn(64, 1, 16, 16)
    res = lm.export_tflite(net, calib[:1], calib, tmp_path / "model.tflite")
    got = [op.code for op in res.model.ops]
    assert {c: got.count(c) for c in codes} == codes, got
    fused = [op for op in res.qgraph.ops if op.post is not None]
    for op in fused:   # a fused table: the op writes "<op>_pre" (pre_qparams), then the builtin reads it
        pre = next(t for t in res.model.tensors if t.name == f"{op.name}_pre")
        assert (pre.scale[0], pre.zero_point[0]) == (op.pre_qparams.scale, op.pre_qparams.zero_point)
    r = check(res.qgraph, res.data, torch.randn(100, 1, 16, 16))
    assert r.bit_exact, f"{r.mismatched_samples}/100 outputs differ (max {r.max_abs_diff})"
    assert _within(res.host.total, r.measured_arena_bytes), (res.host, r.measured_arena_bytes)
    rep = lm.analyze(net, calib[:1], runtime="tflm")   # the resource model's figures, before any export
    from lightning_mcuprune.deploy.export import runtime_flash_bytes
    assert rep.flash_bytes - runtime_flash_bytes(res.model.op_codes) == len(res.data)
    assert _within(rep.peak_sram_bytes, r.measured_arena_bytes), (rep.peak_sram_bytes, r.measured_arena_bytes)
    if "HARD_SWISH" in codes:
        assert "resolver.AddHardSwish()" in __import__("lightning_mcuprune.deploy.export", fromlist=["x"]).ops_header(
            res.model, res.host, res.cortex_m)


def test_hard_sigmoid_gate_is_refused_for_tflm_naming_module_and_alternative(tmp_path):
    from se_nets import mobilenet_v3_tiny
    x = torch.randn(16, 1, 16, 16)
    with pytest.raises(TFLiteExportError, match=r"'3\.se\.fc2'.*hardsigmoid.*no int8 TFLite builtin.*nn\.Sigmoid"):
        lm.export_tflite(mobilenet_v3_tiny().eval(), x[:1], x, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_cli_export_of_the_callbacks_export_directory(tmp_path, capsys):
    """`mcuprune export EXPORT_DIR --network CALLABLE` as the README shows it: the directory's pruned_state.pt on the
    dense network, weights-only; without --network (or --unsafe-pickle) one clear error."""
    from lit import fit_pruned

    from lightning_mcuprune.cli import main
    _, cb = fit_pruned(lambda: zoo.ds_cnn(), (1, 49, 10), {"sram": 0.7 * 16000}, "mps2-an386", steps=6)
    cb.export(tmp_path / "export")
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((16, 1, 49, 10)).astype(np.float32))
    assert main(["export", str(tmp_path / "export"), "--format", "c", "--out", str(tmp_path / "c"),
                 "--calib-data", str(calib)]) == 2
    assert "--network" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "export"), "--network", "lightning_mcuprune.examples.zoo:ds_cnn", "--format", "c",
                 "--out", str(tmp_path / "c"), "--calib-data", str(calib)]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["model_data.cc", "model_data.h", "model_ops.h"]


# ---- the .tflite size the resource model predicts: the writer's own bytes (issue 14) -------------------
def _flash_nets():
    import nets
    import se_nets
    return [("f_se", nets.FunctionalSE, (1, 28, 28)),                                 # SE: MEAN, FC, LOGISTIC, MUL
            ("se_resnet_view", lambda: se_nets.se_resnet(spelling="view"), (1, 16, 16)),
            ("ds_cnn", lambda: zoo.ds_cnn(width=0.25), (1, 49, 10)),                    # depthwise
            ("pad_ops", lambda: nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Flatten(),
                                              nn.Linear(4 * 4 * 4, 3)), (1, 16, 16))]     # PAD, PADV2


@pytest.mark.parametrize("name", ["f_se", "se_resnet_view", "ds_cnn", "pad_ops"])
def test_predicted_tflite_flash_is_the_file_size(name):
    """analyze(runtime="tflm")'s model flash is len(model.tflite) to the byte: the resource model serialises the
    layout the writer fills in (weights and biases as zeros, the arena plan as zeros)."""
    from lightning_mcuprune.deploy.export import runtime_flash_bytes
    from lightning_mcuprune.resources.tflite_layout import layout
    _, factory, shape = next(n for n in _flash_nets() if n[0] == name)
    torch.manual_seed(0)
    net = factory().eval()
    x = torch.randn(8, *shape)
    res = lm.export_tflite(net, x[:1], x)
    assert len(layout(res.qgraph.graph, res.order).to_bytes()) == len(res.data)
    rep = lm.analyze(net, x[:1], runtime="tflm")
    assert rep.flash_bytes - runtime_flash_bytes(res.model.op_codes) == len(res.data)
    per_op = rep.layers["flash_bytes"]   # each op's own bytes of the file; the rest is the file's fixed part
    assert (per_op > 0).all() and len(res.data) - 1000 < per_op.sum() < len(res.data)


@pytest.mark.parametrize("name", ["f_se", "pad_ops"])
def test_to_model_is_the_layout_with_its_numbers_filled_in(name):
    """One emitter: to_model keeps the layout's structure (tensors, ops, options, order) and fills in every number
    from the quantised graph: no placeholder byte count is left, each constant has the layout's byte count, each
    quantisation vector its length, and the numbers are the quantised graph's."""
    from lightning_mcuprune.deploy.writer import to_model
    from lightning_mcuprune.resources.tflite_layout import layout
    _, factory, shape = next(n for n in _flash_nets() if n[0] == name)
    torch.manual_seed(0)
    x = torch.randn(8, *shape)
    qg = lm.export_tflite(factory().eval(), x[:1], x).qgraph
    lay, model = layout(qg.graph, offline_plan=False), to_model(qg)
    assert [(o.code, o.inputs, o.outputs, o.options) for o in model.ops] == \
        [(o.code, o.inputs, o.outputs, o.options) for o in lay.ops]
    assert (model.inputs, model.outputs) == (lay.inputs, lay.outputs)
    for t, lt in zip(model.tensors, lay.tensors, strict=True):
        assert (t.name, t.shape, t.dtype, t.qdim, t.role, len(t.scale), len(t.zero_point)) == \
            (lt.name, lt.shape, lt.dtype, lt.qdim, lt.role, len(lt.scale), len(lt.zero_point))
        assert t.data is None or isinstance(t.data, bytes), t.name
        if lt.data is not None:
            assert len(t.data) == (lt.data if isinstance(lt.data, int) else len(lt.data)), t.name
        kind, key = t.role or (None, None)
        if kind == "activation":
            assert (t.scale, t.zero_point) == ([qg.qparams[key].scale], [qg.qparams[key].zero_point])
        elif kind == "weights":
            assert t.data == np.asarray(qg.ops[key].weights, np.int8).tobytes()
            assert t.scale == np.asarray(qg.ops[key].weight_scales, np.float32).tolist()
        elif kind == "bias":
            assert t.data == np.asarray(qg.ops[key].spec.bias, np.int32).tobytes()
    codes = [o.code for o in model.ops]
    assert ("PADV2" in codes) == (name == "pad_ops") and ("LOGISTIC" in codes) == (name == "f_se")


@pytest.mark.parametrize("factory,wide,narrow,shape", [
    (lambda c: __import__("nets").FunctionalSE(c=c), 8, 5, (1, 12, 12)),
    (lambda w: zoo.ds_cnn(width=w), 0.25, 0.19, (1, 49, 10))])
def test_predicted_tflite_flash_at_pruned_counts_is_the_narrow_files_size(factory, wide, narrow, shape):
    """At channel counts below the dense ones (what pruning evaluates), the prediction is the file of the network
    with those counts, exactly; the differentiable model beside it is within 1 %."""
    from lightning_mcuprune.resources import ResourceModel
    from lightning_mcuprune.resources.tflm import model_flash_bytes
    x = torch.randn(8, *shape)
    big, small = factory(wide).eval(), factory(narrow).eval()
    rm = ResourceModel(lm.trace_graph(big, x[:1]), runtime="tflm")
    n = lm.trace_graph(small, x[:1]).dense_counts
    assert not torch.equal(n, rm.dense_counts)
    data = lm.export_tflite(small, x[:1], x).data
    assert model_flash_bytes(rm, n, rm.order) == len(data)
    assert rm.evaluate(n).flash_bytes.item() - rm._tflm["runtime_flash"] == len(data)
    assert abs(rm.flash_bytes(n).item() - rm._tflm["runtime_flash"] - len(data)) <= 0.01 * len(data)


@pytest.mark.parametrize("fraction", [0.5, 0.75])
def test_callback_tflm_flash_budget_holds_for_the_written_file(fraction, tmp_path):
    """MCUPruneCallback(runtime="tflm", budgets={"flash": B}): the .tflite it writes plus TFLM's code (the estimate
    analyze() adds) is within B, checked on the file itself (hardening checks integer counts by the exact layout)."""
    from lightning_mcuprune.resources.tflm_sizes import runtime_flash_bytes  # noqa: F401 (the runtime term's home)
    shape = (1, 12, 12)
    rep = lm.analyze(zoo.resnet8(in_channels=1).eval(), torch.zeros(1, *shape), runtime="tflm")
    runtime_code = rep.flash_bytes - len(lm.export_tflite(zoo.resnet8(in_channels=1).eval(), torch.zeros(1, *shape),
                                                         torch.randn(8, *shape), tmp_path / "dense.tflite").data)
    budget = int(runtime_code + fraction * (rep.flash_bytes - runtime_code))
    cb = _callback_fit(tmp_path, zoo.resnet8(in_channels=1), shape, budget, key="flash")
    size = len((cb.export_dir / "model.tflite").read_bytes())
    assert cb.report.flash_bytes <= budget and size + runtime_code <= budget, (size, runtime_code, budget)
