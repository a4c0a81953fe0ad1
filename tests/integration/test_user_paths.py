"""What a user touches first: every documented option of analyze, the callback and `mcuprune analyze`
through its public entry point, and the errors a new user meets (issues 12 and 13)."""
import json
import os
import sys
import textwrap
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
from lit import Classifier, random_loader, trainer

from lightning_mcuprune import analyze, load_board, parse_size
from lightning_mcuprune.examples import zoo
from lightning_mcuprune.callback import MCUPruneCallback
from lightning_mcuprune.cli import main
from lightning_mcuprune.graph import GraphError, UnsupportedOpError, trace_graph
from lightning_mcuprune.io import write_json_atomic, write_text_atomic

REPO = Path(__file__).resolve().parents[2]
SHAPE = (1, 12, 12)


def _fit(net, budgets, steps=12, cb_kw=None, **trainer_kw):
    cb = MCUPruneCallback("mps2-an386", budgets, verbose=False, **({"export": False} | (cb_kw or {})))
    model = net if isinstance(net, pl.LightningModule) else Classifier(net)
    t = trainer([cb], max_steps=steps, **trainer_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.fit(model, random_loader(SHAPE, n=32, batch=8))
    return model, cb, t


# ---- issue 12 item 1: order="optimal" and every documented option ------------------------------
def test_analyze_order_optimal_never_worse_than_traced():
    for factory, shape in ((zoo.inception_like, zoo.INPUT_SHAPES["inception_like"]), (zoo.resnet8, (3, 32, 32))):
        x = torch.zeros(1, *shape)
        traced, optimal = analyze(factory(), x), analyze(factory(), x, order="optimal")
        assert optimal.peak_sram_bytes <= traced.peak_sram_bytes
        assert sorted(optimal.order) == list(range(len(optimal.layers)))


def test_cli_analyze_order_optimal(tmp_path, capsys):
    js = tmp_path / "r.json"
    assert main(["analyze", "lightning_mcuprune.examples.zoo:inception_like", "--order", "optimal", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    traced = analyze(zoo.inception_like(), torch.zeros(1, *zoo.INPUT_SHAPES["inception_like"]))
    assert 0 < rep["peak_sram_bytes"] <= traced.peak_sram_bytes


def test_callback_order_optimal_in_fit():
    model, cb, _ = _fit(zoo.resnet8(in_channels=1), {"sram": 4000}, cb_kw={"order": "optimal"})
    assert cb.phase == "finetune" and cb.report.peak_sram_bytes <= 4000
    after = analyze(model.net, torch.zeros(1, *SHAPE), order="optimal")
    assert after.peak_sram_bytes <= 4000


# the README's Options list, each through a real Trainer.fit
OPTIONS = {
    "module": {"module": "net", "exclude": ["0.0"]},
    "exclude": {"exclude": ["net.0.0"]},
    "min_channels+multiple": {"min_channels": 2, "multiple": 4},
    "warmup+prune_end as epochs": {"warmup": 0, "prune_end": 1},
    "warmup+prune_end as fractions": {"warmup": 0.0, "prune_end": 1.0},
    "update_every": {"update_every": 3},
    "removals": {"removals": 0},
    "pi_lr+importance_decay": {"pi_lr": 0.2, "importance_decay": 0.5},
    "order": {"order": "optimal"},
    "pi_norm+compute_step+soft_floor": {"pi_norm": "group", "compute_step": "cost", "soft_floor": False},
    "reinit": {"reinit": True},
    "reset_optimizer": {"reset_optimizer": False},  # True is the default
    "temperature": {"temperature": 0.5},
    "calib_samples": {"calib_samples": 0},
}
# runtime="tflm" runs through Trainer.fit in tests/deploy/test_tflite.py (its arena holds the budget in TFLite Micro)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_documented_callback_option_runs_in_fit(name):
    model, cb, _ = _fit(zoo.reference_cnn(width=0.5), {"sram": "5KiB"}, cb_kw=OPTIONS[name], max_epochs=3)
    assert cb.report.peak_sram_bytes <= 5 * 1024
    if "exclude" in OPTIONS[name]:
        assert model.net[0][0].out_channels == 16
    if "multiple" in OPTIONS[name]:
        assert all(m.out_channels % 4 == 0 for m in model.net.modules() if isinstance(m, nn.Conv2d))


def test_callback_export_option_writes_under_default_root_dir(tmp_path):
    _, cb, _ = _fit(zoo.reference_cnn(width=0.5), {"sram": "5KiB"}, cb_kw={"export": True},
                    default_root_dir=str(tmp_path))
    assert cb.export_dir is not None and (cb.export_dir / "report.json").is_file()
    assert tmp_path in cb.export_dir.parents


def test_cli_analyze_every_option(tmp_path, capsys):
    board = tmp_path / "myboard.json"
    board.write_text(json.dumps(load_board("nucleo-f446re").to_dict()))
    png, js = tmp_path / "m.png", tmp_path / "r.json"
    for args in (["--board", str(board)], ["--board", "NUCLEO-F446RE"], ["--order", "traced"], ["--runtime", "tflm"],
                 ["--input-shape", "1,20,20", "--plot", str(png), "--json", str(js)]):
        assert main(["analyze", "lightning_mcuprune.examples.zoo:reference_cnn", *args]) == 0, args
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads(js.read_text())["layers"][0]["output_shape"] == [32, 20, 20]
    assert "nucleo-f446re" in capsys.readouterr().out


# ---- issue 12 item 3: training-only branches refused before the first step ---------------------
class _TrainOnlyBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        if self.training:
            y = y + self.b(x)
        return y


class _NetWithTrainOnlyBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = _TrainOnlyBranch()
        self.fc = nn.Linear(8 * 12 * 12, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.block(x)).flatten(1))


def test_training_only_branch_is_refused_before_the_first_step():
    cb = MCUPruneCallback("mps2-an386", {"sram": 1000}, verbose=False, export=False)
    t = trainer([cb], max_steps=20)
    with pytest.raises(GraphError) as e:
        t.fit(Classifier(_NetWithTrainOnlyBranch()), random_loader(SHAPE, n=32, batch=8))
    msg = str(e.value)
    assert "training" in msg and "net.block.b" in msg and "self.training" in msg
    assert t.global_step == 0


def test_dropout_under_training_flag_is_not_a_structure_change():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8 * 12 * 12, 10)

        def forward(self, x):
            x = torch.relu(self.c(x)).flatten(1)
            if self.training:
                x = nn.functional.dropout(x, 0.2)
            return self.fc(x)
    _, cb, _ = _fit(Net(), {"sram": 600})
    assert cb.phase == "finetune"


# ---- issue 12 item 7 / issue 13 item 10: the real batch-1 error, shapes on meta tensors --------
def test_wrong_channel_count_reports_the_real_error():
    with pytest.raises(GraphError) as e:
        analyze(zoo.reference_cnn(), torch.zeros(1, 3, 28, 28))
    msg = str(e.value)
    assert "expected input[1, 3, 28, 28] to have 1 channels" in msg and "Conv2d at '0.0'" in msg
    assert "batch" not in msg.replace("batch first", "") and "ShapeProp" not in msg


def test_cli_wrong_input_shape_is_one_clean_line(capsys):
    assert main(["analyze", "lightning_mcuprune.examples.zoo:reference_cnn", "--input-shape", "3,28,28"]) == 2
    err = capsys.readouterr().err
    assert "to have 1 channels" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_another_models_weights_report_the_real_error():
    net = zoo.reference_cnn()
    net[0][0].weight.data = torch.zeros(32, 3, 3, 3)  # weights of a 3-channel model in a 1-channel one
    with pytest.raises(GraphError, match="expected input.*to have 3 channels") as e:
        analyze(net, torch.zeros(1, 1, 28, 28))
    assert "weights belong to this architecture" in str(e.value)


def test_shapes_are_propagated_without_float_forwards():
    model = zoo.reference_cnn()
    devices = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            m.register_forward_hook(lambda mod, inp, out: devices.append(out.device.type))
    params = list(model.parameters()) + list(model.buffers())
    trace_graph(model, torch.zeros(1, 1, 28, 28))
    assert devices and set(devices) == {"meta"}
    after = list(model.parameters()) + list(model.buffers())  # the user's own tensors (optimisers hold them) are back
    assert len(after) == len(params) and all(a is b for a, b in zip(after, params))
    assert all(p.device.type == "cpu" for p in after)


def test_batch_dependence_is_still_refused():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 2)

        def forward(self, x):
            return self.fc(self.c(x).reshape(1, -1))
    with pytest.raises(GraphError, match="batch 2"):
        analyze(Net(), torch.zeros(1, 1, 8, 8))


def test_deep_chain_traces():
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()]
    for _ in range(299):
        layers += [nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    rep = analyze(nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 8 * 8, 10)), torch.zeros(1, 1, 8, 8))
    assert len(rep.layers) == 301 and rep.peak_sram_bytes == 2 * 4 * 64


# ---- issue 12 item 8: LightningModule without forward; LSTM named ------------------------------
class _NoForward(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = zoo.reference_cnn(width=0.25)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


def test_lightning_module_without_forward_is_told_module_net():
    cb = MCUPruneCallback("mps2-an386", {"sram": 1000}, verbose=False, export=False)
    with pytest.raises(GraphError) as e:
        trainer([cb], max_steps=4).fit(_NoForward(), random_loader(SHAPE, n=16, batch=8))
    assert "module='net'" in str(e.value) and "Proxy" not in str(e.value)
    _, cb, _ = _fit(_NoForward(), {"sram": 1000}, cb_kw={"module": "net"})
    assert cb.phase == "finetune"


def test_forward_that_unpacks_a_batch_is_told_module_net():
    class Unpacks(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Conv2d(1, 2, 3)

        def forward(self, batch):
            x, _ = batch
            return self.net(x)
    with pytest.raises(GraphError, match="module='net'"):
        trace_graph(Unpacks(), torch.zeros(1, 1, 8, 8))


def test_lstm_is_named_not_the_transpose_before_it():
    class AudioLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.rnn, self.fc = nn.Conv1d(10, 16, 3), nn.LSTM(16, 16, batch_first=True), nn.Linear(16, 4)

        def forward(self, x):
            out, _ = self.rnn(self.conv(x).transpose(1, 2))
            return self.fc(out[:, -1])
    with pytest.raises(UnsupportedOpError) as e:
        analyze(AudioLSTM(), torch.zeros(1, 10, 20))
    assert "LSTM at 'rnn'" in str(e.value) and "transpose" not in str(e.value)


# ---- issue 12 item 9: the CLI ------------------------------------------------------------------
@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A folder with the user's own mymodels.py as the working directory, not on sys.path (as for the
    `mcuprune` console script, whose sys.path[0] is its bin folder); stdout captured, so not a terminal."""
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        def make():
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 16, 1),
                                 nn.Flatten(), nn.Linear(16 * 26 * 26, 10))
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    yield tmp_path
    sys.modules.pop("mymodels", None)


def test_cli_imports_from_the_working_directory(user_folder, capsys):
    assert main(["analyze", "mymodels:make", "--input-shape", "1,28,28"]) == 0
    assert "bottleneck" in capsys.readouterr().out
    assert main(["analyze", "mymodel:make", "--input-shape", "1,28,28"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "working directory" in err and "PYTHONPATH" in err


def test_cli_tables_are_not_cut_when_piped(user_folder, capsys):
    assert main(["analyze", "mymodels:make", "--input-shape", "1,28,28"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "pointwise_conv2d" in out and "latency ms" in out
    assert max(len(line) for line in out.splitlines()) > 80


def test_report_repr_is_short():
    rep = analyze(zoo.mobilenet_v2_tiny(), torch.zeros(1, 1, 28, 28))
    text = repr(rep)
    assert len(text) < 300 and "\n" not in text
    assert f"peak_sram_bytes={rep.peak_sram_bytes:,}" in text and "mps2-an386" in text


# ---- issue 12 item 12: documented units and board names ----------------------------------------
def test_kb_is_1000_bytes_and_board_names_are_case_insensitive():
    assert parse_size("16 kb") == 16_000 and parse_size("16KiB") == 16_384
    assert load_board("NUCLEO-F446RE").name == "nucleo-f446re"
    readme = (REPO / "README.md").read_text()
    assert "16,000 B" in readme and "case-insensitive" in readme


# ---- issue 13 item 12: atomic writes keep the umask's mode and fsync before the rename --------
def test_atomic_write_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_json_atomic(tmp_path / "r.json", {"a": 1})
        assert p.stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        assert (write_text_atomic(tmp_path / "s.txt", "x")).stat().st_mode & 0o777 == 0o640
        os.chmod(p, 0o600)  # an existing file keeps its own mode
        assert write_json_atomic(p, {"a": 2}).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_atomic_write_fsyncs_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    write_text_atomic(tmp_path / "f.txt", "data")
    assert calls[:2] == ["fsync", "replace"]
    assert (tmp_path / "f.txt").read_text() == "data"


# ---- issue 13 item 13: a folder named like a board does not shadow the built-in profile --------
def test_folder_named_like_a_board_does_not_shadow_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "mps2-an386").mkdir()
    (tmp_path / "mine").write_text(json.dumps(load_board("mps2-an500").to_dict()))
    monkeypatch.chdir(tmp_path)
    assert load_board("mps2-an386").name == "mps2-an386"
    assert load_board("MPS2-AN386").name == "mps2-an386"
    assert load_board("mine").name == "mps2-an500"  # an existing file that is no built-in name is a path
    with pytest.raises(ValueError, match="is a folder"):
        load_board("./mps2-an386")
    assert main(["analyze", "lightning_mcuprune.examples.zoo:ds_cnn", "--board", "mps2-an386"]) == 0
