"""The README's main job, at a tiny size: `mcuprune demo` trains, prunes to its budgets and writes its artefacts."""
import json

from lightning_mcuprune.cli import main


def test_demo_meets_its_budgets_and_writes_artefacts(tmp_path, capsys):
    rc = main(["demo", "--epochs", "1", "--train-subset", "768", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "test accuracy of the pruned network" in out and "mps2-an386" in out
    export = next(tmp_path.rglob("mcuprune"))
    rep = json.loads((export / "report.json").read_text())
    assert rep["peak_sram_bytes"] <= 16 * 1024 and rep["flash_bytes"] <= 128 * 1024 and rep["latency_ms"] <= 1500
    for name in ("model.onnx", "pi.png", "resources.png", "memory_profile.png"):
        assert (export / name).stat().st_size > 0
