"""MCUPruneCallback as a Lightning citizen: checkpoints and resume, load_pruned, ONNX export, DDP, CLI, logging."""
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lit import Classifier, random_loader

from lightning_mcuprune import MCUPruneCallback, load_pruned, zoo
from lightning_mcuprune.boards import load_board

SHAPE = (1, 12, 12)
BUDGET = {"sram": "3KiB"}


def make_model(seed=0):
    torch.manual_seed(seed)
    return Classifier(zoo.reference_cnn(width=0.5))


def run(tmp, cb, model, max_epochs=6, ckpt_path=None, extra=(), logger=False):
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=logger, deterministic=True,
                         callbacks=[cb, ModelCheckpoint(dirpath=tmp, save_last=True), *extra],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=tmp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, random_loader(SHAPE, n=40, batch=8), ckpt_path=ckpt_path)
    return trainer


class _Crash(pl.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_resume_after_interrupt_gives_the_same_network(tmp_path):
    pl.seed_everything(0)
    cb_a = MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False)
    model_a = make_model()
    run(tmp_path / "a", cb_a, model_a)

    step = random.Random(7).randint(6, 24)  # somewhere in the pruning phase (30 steps, 5 per epoch)
    pl.seed_everything(0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "b", MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(),
            extra=[_Crash(step)])
    last = tmp_path / "b" / "last.ckpt"
    assert last.exists()
    pl.seed_everything(0)
    cb_b = MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False)
    model_b = make_model(seed=123)  # a freshly built dense model: the structure comes from the checkpoint
    run(tmp_path / "b", cb_b, model_b, ckpt_path=str(last))
    assert cb_b.architecture_hash() == cb_a.architecture_hash()
    assert [p.shape for p in model_b.parameters()] == [p.shape for p in model_a.parameters()]
    for a, b in zip(cb_a.state.keep, cb_b.state.keep):
        assert torch.equal(a, b)
    assert cb_b.report.peak_sram_bytes <= 3 * 1024
    x = torch.randn(4, *SHAPE)
    torch.testing.assert_close(model_b.eval()(x), model_a.eval()(x), atol=1e-4, rtol=1e-4)


def test_load_pruned_and_onnx_export(tmp_path):
    cb = MCUPruneCallback("mps2-an386", BUDGET, verbose=False)
    model = make_model()
    run(tmp_path, cb, model, max_epochs=4)
    x = torch.randn(5, *SHAPE)
    expect = model.eval()(x).detach()
    fresh = load_pruned(make_model(seed=3), tmp_path / "last.ckpt")
    torch.testing.assert_close(fresh(x), expect, atol=1e-6, rtol=0)
    onnx_path = tmp_path / "mcuprune" / "model.onnx"
    assert onnx_path.exists(), list(tmp_path.rglob("*"))
    sess = ort.InferenceSession(str(onnx_path))
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], expect.numpy(), atol=1e-4)
    rep = json.loads((tmp_path / "mcuprune" / "report.json").read_text())
    assert rep["peak_sram_bytes"] <= 3 * 1024 and rep["latency_is_estimate"] is (load_board("mps2-an386").latency_source == "estimate")
    for png in ("pi.png", "resources.png", "memory_profile.png"):
        assert (tmp_path / "mcuprune" / png).read_bytes()[:4] == b"\x89PNG"
    # the export directory is what `mcuprune benchmark DIR` takes: the pruned network and its input shape
    from lightning_mcuprune.lab import _load_export
    net, shape = _load_export(tmp_path / "mcuprune")
    assert shape == SHAPE
    torch.testing.assert_close(net(x), expect, atol=1e-6, rtol=0)


def test_load_pruned_into_the_bare_network(tmp_path):
    cb = MCUPruneCallback("mps2-an386", BUDGET, module="net", verbose=False, export=False)
    model = make_model()
    run(tmp_path, cb, model, max_epochs=4)
    net = load_pruned(zoo.reference_cnn(width=0.5), tmp_path / "last.ckpt")
    x = torch.randn(3, *SHAPE)
    torch.testing.assert_close(net(x), model.eval().net(x), atol=1e-6, rtol=0)


def test_load_pruned_bad_checkpoints(tmp_path):
    run(tmp_path / "plain", pl.Callback(), make_model(), max_epochs=1)
    with pytest.raises(ValueError, match="no pruning state"):
        load_pruned(make_model(), tmp_path / "plain" / "last.ckpt")
    run(tmp_path / "pruned", MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(), max_epochs=4)
    with pytest.raises(ValueError, match="another architecture"):
        load_pruned(Classifier(zoo.reference_cnn(width=0.75)), tmp_path / "pruned" / "last.ckpt")
    with pytest.raises(FileNotFoundError):
        load_pruned(make_model(), tmp_path / "nope.ckpt")


def test_resume_into_another_architecture_is_refused(tmp_path):
    run(tmp_path, MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(), max_epochs=4)
    with pytest.raises(ValueError, match="another architecture"):
        run(tmp_path / "x", MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False),
            Classifier(zoo.reference_cnn(width=0.75)), max_epochs=5, ckpt_path=str(tmp_path / "last.ckpt"))


class _Flaky(nn.Module):
    """Skips its second conv on every other call: a structure that changes between forward calls."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        x = torch.relu(self.c1(x))
        if self.calls % 3 == 0:
            x = torch.relu(self.c2(x))
        return self.fc(x.mean((2, 3)))


def test_structure_changing_between_forwards_is_an_error(tmp_path):
    cb = MCUPruneCallback("mps2-an386", {"sram": "1KiB"}, verbose=False, export=False, module="net")
    with pytest.raises(RuntimeError, match="structure changed between forward calls"):
        run(tmp_path, cb, Classifier(_Flaky()), max_epochs=2)


def test_logging_and_progress_bar_text(tmp_path):
    cb = MCUPruneCallback("mps2-an386", {"sram": "3KiB", "latency_ms": 400}, verbose=False, export=False)
    run(tmp_path, cb, make_model(), max_epochs=4, logger=CSVLogger(tmp_path, name="logs"))
    metrics = next((tmp_path / "logs").rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    assert "mcuprune/sram_bytes" in metrics and "mcuprune/latency_ms" in metrics
    assert any(m.startswith("mcuprune/pi/") for m in metrics)
    import re
    assert re.fullmatch(r"(sram \d+\.\d/3\.0 KiB|latency \d+\.\d/400\.0 ms)", cb.binding_text())


def test_ddp_two_cpu_processes_agree(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent), MASTER_PORT=str(29500 + os.getpid() % 1000))
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "ddp_run.py"), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads(Path(f"{out}.rank{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["hash"] == ranks[1]["hash"]
    assert ranks[0]["channels"] == ranks[1]["channels"] and ranks[0]["pi"] == ranks[1]["pi"]
    for r_ in ranks:
        assert r_["sram"] <= r_["budget"]


def test_lightning_cli_prunes_from_yaml(tmp_path):
    root = Path(__file__).parent.parent
    cmd = [sys.executable, str(root / "examples" / "mcuprune_cli.py"), "fit", "--config", str(root / "examples" / "fashion_mnist.yaml"),
           "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
           "--data.train_subset", "512", "--data.val_size", "256", "--data.batch_size", "64",
           "--trainer.default_root_dir", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(root)))
    assert r.returncode == 0, r.stderr[-3000:]
    out = next(tmp_path.rglob("mcuprune"))
    rep = json.loads((out / "report.json").read_text())
    assert rep["peak_sram_bytes"] <= 16 * 1024 and rep["latency_ms"] <= 1500
    assert (out / "model.onnx").exists()


class _Swish(nn.Module):
    def forward(self, x):
        return nn.functional.hardswish(x)


class _WithCustomLeaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.act, self.fc = nn.Conv2d(1, 8, 3, padding=1), _Swish(), nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.act(torch.relu(self.c1(x))).mean((2, 3)))


def test_parameter_free_custom_modules_are_fine(tmp_path):
    cb = MCUPruneCallback("mps2-an386", {"sram": "600"}, verbose=False, export=False, module="net")
    run(tmp_path, cb, Classifier(_WithCustomLeaf()), max_epochs=2)
    assert cb.report.peak_sram_bytes <= 600 and cb.state.current[0] < 8
