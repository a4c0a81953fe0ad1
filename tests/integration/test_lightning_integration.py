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

from lightning_mcuprune import MCUPruneCallback, load_pruned
from lightning_mcuprune.examples import zoo
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
    from lightning_mcuprune.cli_helpers import load_export
    net, shape = load_export(tmp_path / "mcuprune", unsafe_pickle=True)
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


def test_ddp_two_cpu_processes_agree_and_export(tmp_path):
    """Real DDP (gloo, 2 processes), export on: with and without a logger, checkpointing on and off. Every rank
    reaches every collective (rank 0 used to call trainer.log_dir, a broadcast, alone and die at the end of fit)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), MASTER_PORT=str(29500 + os.getpid() % 1000))
    r = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "ddp_run.py"), str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    for tag in ("logger0_ckpt0", "logger1_ckpt1", "logger0_ckpt1", "logger1_ckpt0"):
        ranks = [json.loads((tmp_path / f"{tag}.rank{i}.json").read_text()) for i in (0, 1)]
        assert ranks[0]["hash"] == ranks[1]["hash"]
        assert ranks[0]["channels"] == ranks[1]["channels"] and ranks[0]["pi"] == ranks[1]["pi"]
        for r_ in ranks:
            assert r_["sram"] <= r_["budget"]
        export = Path(ranks[0]["export_dir"])
        assert export.is_relative_to(tmp_path / tag) and ranks[1]["export_dir"] == str(export)
        assert json.loads((export / "report.json").read_text())["peak_sram_bytes"] <= 3 * 1024
        assert (export / "pruned_state.pt").is_file() and (export / "model.onnx").is_file()
        if tag.endswith("ckpt1"):  # channels leave only when DDP training ends: last.ckpt is written after that
            assert ranks[0]["reload_max_diff"] < 1e-5 and ranks[0]["reload_sram"] == ranks[0]["sram"]


def test_lightning_cli_prunes_from_yaml(tmp_path):
    root = Path(__file__).parents[2]
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


class _StopAt(pl.Callback):
    """Stops the run at optimiser step `step` (like EarlyStopping or max_time would), before prune_end."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_export_error_and_late_hardening_keep_the_pruned_network(tmp_path, monkeypatch):
    """The run stops in the pruning phase (hardening in on_train_end, after the last checkpoint) and the ONNX
    export fails: fit still returns, every other artefact is written, and last.ckpt holds the hardened network."""
    import lightning_mcuprune.export as export

    def broken_onnx(*args, **kwargs):
        raise RuntimeError("simulated ONNX exporter failure")
    monkeypatch.setattr(export, "export_onnx", broken_onnx)
    cb = MCUPruneCallback("mps2-an386", BUDGET, verbose=False)
    model = make_model()
    trainer = pl.Trainer(max_epochs=6, accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path,
                         callbacks=[cb, ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True), _StopAt(8)],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with pytest.warns(UserWarning, match="export of onnx .* failed .*simulated ONNX"):
        trainer.fit(model, random_loader(SHAPE, n=40, batch=8))
    assert trainer.global_step < 18 and cb.phase == "finetune"  # stopped before prune_end (step 18)
    out = tmp_path / "mcuprune"
    assert cb.export_dir == out and set(cb.export_errors) == {"onnx"} and not (out / "model.onnx").exists()
    assert json.loads((out / "report.json").read_text())["peak_sram_bytes"] <= 3 * 1024
    x = torch.randn(4, *SHAPE)
    expect = model.eval()(x).detach()
    for path in (tmp_path / "ck" / "last.ckpt", out / "pruned_state.pt"):
        fresh = load_pruned(make_model(seed=5), path)
        torch.testing.assert_close(fresh(x), expect, atol=1e-6, rtol=0)
        assert [p.shape for p in fresh.parameters()] == [p.shape for p in model.parameters()]
    assert cb.report.peak_sram_bytes <= 3 * 1024


def test_export_never_overwrites_an_earlier_run(tmp_path):
    """logger=False: the export goes to the trainer's default_root_dir; a second run gets its own folder."""
    for expected in ("mcuprune", "mcuprune_1"):
        cb = MCUPruneCallback("mps2-an386", BUDGET, verbose=False)
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             default_root_dir=tmp_path / "root", callbacks=[cb], enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            trainer.fit(make_model(), random_loader(SHAPE, n=40, batch=8))
        assert cb.export_dir == tmp_path / "root" / expected
        assert (cb.export_dir / "report.json").is_file()
        said = [str(m.message) for m in w if "holds an earlier export" in str(m.message)]
        assert bool(said) is (expected != "mcuprune"), said


class _Evil:
    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (Path.write_text, (Path(self.flag), "pwned"))


def test_load_pruned_runs_no_code_from_the_file(tmp_path):
    """A real checkpoint of the callback loads weights-only; a crafted one cannot run code (it could before)."""
    run(tmp_path, MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(), max_epochs=4)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)  # the callback's state is plain data
    flag = tmp_path / "flag"
    ckpt["callbacks"]["evil"] = _Evil(str(flag))
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="weights-only.*unsafe_pickle=True"):
        load_pruned(make_model(), tmp_path / "evil.ckpt")
    assert not flag.exists()
    load_pruned(make_model(), tmp_path / "evil.ckpt", unsafe_pickle=True)  # the explicit, named opt-in
    assert flag.read_text() == "pwned"
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        load_pruned(make_model(), tmp_path / "junk.ckpt")


def test_load_pruned_accepts_the_bare_network_of_a_whole_module_run(tmp_path):
    """The callback pruned the whole LightningModule (weights `net.*`); the bare network loads as well."""
    cb = MCUPruneCallback("mps2-an386", BUDGET, verbose=False)
    model = make_model()
    run(tmp_path, cb, model, max_epochs=4)
    x = torch.randn(3, *SHAPE)
    for path in (tmp_path / "last.ckpt", tmp_path / "mcuprune" / "pruned_state.pt"):
        net = load_pruned(zoo.reference_cnn(width=0.5), path)
        torch.testing.assert_close(net(x), model.eval().net(x), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="another architecture"):
        load_pruned(zoo.reference_cnn(width=0.75), tmp_path / "last.ckpt")


def test_resume_with_other_budgets_applies_them_or_refuses(tmp_path):
    run(tmp_path / "a", MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(), max_epochs=4)
    last = str(tmp_path / "a" / "last.ckpt")
    # finished run, tighter budget: refused, naming both budgets and the way to prune further
    with pytest.raises(ValueError, match=r"(?s)exceeds the new budgets.*load_pruned"):
        run(tmp_path / "b", MCUPruneCallback("mps2-an386", {"sram": "2KiB"}, verbose=False, export=False),
            make_model(), max_epochs=5, ckpt_path=last)
    # finished run, looser budget the network meets: accepted, and the report meets it
    cb = MCUPruneCallback("mps2-an386", {"sram": "4KiB"}, verbose=False, export=False)
    run(tmp_path / "c", cb, make_model(), max_epochs=5, ckpt_path=last)
    assert cb.report.peak_sram_bytes <= cb.budgets["sram"] == 4096
    # interrupted during pruning, resumed with a tighter budget: pruning continues toward it
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "d", MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(),
            max_epochs=6, extra=[_Crash(12)])
    # that checkpoint is from the pruning phase: load_pruned says its network does not meet the budgets yet
    with pytest.raises(ValueError, match="pruning phase, before hardening"):
        load_pruned(make_model(), tmp_path / "d" / "last.ckpt")
    load_pruned(make_model(), tmp_path / "d" / "last.ckpt", allow_unfinished=True)
    cb = MCUPruneCallback("mps2-an386", {"sram": "2KiB"}, verbose=False, export=False)
    run(tmp_path / "d", cb, make_model(), max_epochs=6, ckpt_path=str(tmp_path / "d" / "last.ckpt"))
    assert cb.report.peak_sram_bytes <= 2048 and cb.history["sram_budget"].iloc[-1] == 2048


def test_cli_benchmark_checkpoint_of_a_whole_module_run(tmp_path):
    """`mcuprune benchmark PKG.MODULE:CALLABLE --checkpoint FILE`: the callable returns the bare network while
    the callback pruned the whole LightningModule (`net.` prefix); FILE is last.ckpt or the weights-only
    pruned_state.pt of the export. Both load without unpickling code and run on the emulated board."""
    from hil_fixtures import require_hil_tools
    require_hil_tools()
    import lab_nets

    from lightning_mcuprune import analyze
    from lightning_mcuprune.cli import main
    dense = analyze(lab_nets.tiny(), torch.zeros(1, 1, 8, 8), board="mps2-an386")
    cb = MCUPruneCallback("mps2-an386", {"sram": int(dense.peak_sram_bytes * 0.5)}, verbose=False)
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path,
                         callbacks=[cb, ModelCheckpoint(dirpath=tmp_path, save_last=True)], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Classifier(lab_nets.tiny()), random_loader((1, 8, 8), classes=5, n=32, batch=8))
    for i, ckpt in enumerate((tmp_path / "last.ckpt", cb.export_dir / "pruned_state.pt")):
        rc = main(["benchmark", "lab_nets:tiny", "--checkpoint", str(ckpt), "--input-shape", "1,8,8",
                   "--emulate", "mps2-an386", "--json", str(tmp_path / f"b{i}.json")])
        assert rc == 0
        d = json.loads((tmp_path / f"b{i}.json").read_text())
        assert d["summary"]["bit_exact"] is True
        assert d["summary"]["arena_high_water"] == d["summary"]["predicted_peak_sram"] <= cb.budgets["sram"]


def test_resume_from_an_epoch_end_is_exact_with_shuffled_data(tmp_path):
    """A run interrupted after epoch 0 and resumed from last.ckpt ends with the same widths, masks and weights as
    the uninterrupted run, with a shuffling DataLoader (the checkpoint carries the random states, which
    Lightning does not save: without them the resumed run drew another data order and pruned differently)."""
    from torch.utils.data import DataLoader

    def shuffled():
        return DataLoader(random_loader(SHAPE, n=40, batch=8).dataset, batch_size=8, shuffle=True)

    def fit(root, cb, model, extra=(), ckpt_path=None):
        trainer = pl.Trainer(max_epochs=6, accelerator="cpu", devices=1, logger=False, deterministic=True,
                             callbacks=[cb, ModelCheckpoint(dirpath=root, save_last=True), *extra],
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, shuffled(), ckpt_path=ckpt_path)

    pl.seed_everything(0)
    cb_a, model_a = MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model()
    fit(tmp_path / "a", cb_a, model_a)
    pl.seed_everything(0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path / "b", MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(),
            extra=[_Crash(5)])  # 5 steps per epoch: last.ckpt is the end of epoch 0
    pl.seed_everything(1)  # whatever the process did since: the checkpoint's random state wins
    cb_b, model_b = MCUPruneCallback("mps2-an386", BUDGET, verbose=False, export=False), make_model(seed=123)
    fit(tmp_path / "b", cb_b, model_b, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    assert cb_b.state.current == cb_a.state.current and cb_b.architecture_hash() == cb_a.architecture_hash()
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


class _WithLossWeights(Classifier):
    """A LightningModule with a parameter outside the pruned network."""

    def __init__(self, net):
        super().__init__(net)
        self.temperature = nn.Parameter(torch.ones(1))


def test_pruned_state_of_a_submodule_run_loads_into_the_lightning_module(tmp_path):
    cb = MCUPruneCallback("mps2-an386", BUDGET, module="net", verbose=False)
    model = _WithLossWeights(zoo.reference_cnn(width=0.5))
    run(tmp_path, cb, model, max_epochs=4)
    x = torch.randn(3, *SHAPE)
    fresh = load_pruned(_WithLossWeights(zoo.reference_cnn(width=0.5)), cb.export_dir / "pruned_state.pt")
    torch.testing.assert_close(fresh.net(x), model.eval().net(x), atol=1e-6, rtol=0)
    net = load_pruned(zoo.reference_cnn(width=0.5), cb.export_dir / "pruned_state.pt")
    torch.testing.assert_close(net(x), model.net(x), atol=1e-6, rtol=0)
