import json
import subprocess
import sys

import torch
from nets import NETS

from lightning_mcuprune import analyze
from lightning_mcuprune.cli import main


def test_analyze_report_fields_and_dataframe():
    factory, shape = NETS["resnet8"]
    rep = analyze(factory(), torch.randn(1, *shape), board="nucleo-f767zi")
    assert rep.macs > 0 and rep.params > 0 and rep.flash_bytes > rep.board.runtime_flash_bytes
    assert list(rep.layers.columns[:4]) == ["name", "node", "type", "target"]
    assert rep.layers["macs"].sum() == rep.macs
    assert rep.layers["working_set_bytes"].max() == rep.peak_sram_bytes
    assert rep.bottleneck in set(rep.layers["name"])
    assert abs(rep.layers["latency_ms"].sum() - rep.latency_ms) < 1e-9
    assert rep.latency_source == "estimate"
    d = rep.to_dict()
    assert json.loads(json.dumps(d))["peak_sram_bytes"] == rep.peak_sram_bytes


def test_cli_analyze_writes_plot_and_json(tmp_path, capsys):
    png, js = tmp_path / "mem.png", tmp_path / "r.json"
    rc = main(["analyze", "lightning_mcuprune.examples.zoo:ds_cnn", "--board", "nucleo-f446re", "--plot", str(png), "--json", str(js)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "peak" in out and "nucleo-f446re" in out and "estimate" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(js.read_text())["macs"] == 2656768
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_errors_are_one_line(capsys):
    assert main(["analyze", "no_such_module:net", "--input-shape", "1,28,28"]) == 2
    assert "cannot import module" in capsys.readouterr().err
    assert main(["analyze", "lightning_mcuprune.examples.zoo:ds_cnn", "--input-shape", "1,x"]) == 2
    assert "bad --input-shape" in capsys.readouterr().err
    assert main(["analyze", "lightning_mcuprune.examples.zoo:ds_cnn", "--board", "pico"]) == 2
    assert "unknown board 'pico'" in capsys.readouterr().err


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "lightning_mcuprune.cli", "analyze", "lightning_mcuprune.examples.zoo:se_cnn"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "bottleneck" in out.stdout
