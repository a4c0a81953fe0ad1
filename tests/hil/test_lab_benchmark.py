"""Lab benchmark on the emulated boards: bit-exact board outputs, arena high-water = predicted peak, the
report (table, JSON, PNG), and the bad-input errors (too big, unsupported op, board lost mid-run)."""
import json

import pytest
import torch
import torch.nn as nn
from hil_fixtures import emulated_board, require_hil_tools
from lab_nets import make_net

from lightning_mcuprune.examples import zoo
from lightning_mcuprune.hil.deploy import DeployError
from lightning_mcuprune.hil.benchmark import BoardLostError, benchmark
from lightning_mcuprune.quantize import UnsupportedOnBoardError


@pytest.fixture(scope="module")
def an386():
    yield from emulated_board("mps2-an386")


@pytest.fixture(scope="module")
def an500():
    yield from emulated_board("mps2-an500")


def _check(res, layers=None):
    s = res.summary
    assert res.complete and s["bit_exact"] is True
    assert s["layers_bit_exact"] == s["layers"]
    assert s["arena_high_water"] == s["predicted_peak_sram"]
    assert s["layers_measured"] == s["layers"] and s["measured_cycles"] > 0
    assert 0 < s["stack_used"] <= s["stack_bytes"]
    assert s["image_bytes"] == s["firmware_bytes"] + s["weights_bytes"]
    assert s["top1_agreement"] >= 0.9


CASES = [("resnet8", 1.0), ("resnet8", 0.5), ("ds_cnn", 1.0), ("ds_cnn", 0.5), ("mobilenet_v2", 1.0),
         ("mobilenet_v2", 0.5)]


@pytest.mark.parametrize("name,frac", CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_bit_exact_and_arena_peak_on_an386(an386, name, frac):
    net, shape, calib = make_net(name, "mps2-an386", frac, steps=10)
    res = benchmark(net, calib[:1], calib, link=an386, board_samples=2)
    _check(res)
    assert res.summary["board_bit_exact_samples"] == 2


def test_an500_report_table_json_png(an500, tmp_path):
    net, shape, calib = make_net("ds_cnn", "mps2-an500", 1.0)
    res = benchmark(net, calib[:1], calib, link=an500, json_path=tmp_path / "r.json", plot_path=tmp_path / "r.png")
    _check(res)
    assert res.summary["board"] == "mps2-an500" and res.summary["profile"] == "mps2-an500"
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["complete"] and len(d["layers"]) == res.summary["layers"] and d["summary"]["bit_exact"]
    assert (tmp_path / "r.png").stat().st_size > 1000
    from rich.console import Console
    c = Console(record=True, width=150)
    res.print(c)
    text = c.export_text()
    assert "arena high-water" in text and "bit-exact" in text and "within ±10%" in text


class _NoSend:
    """A board that must not be sent anything (only its HELLO info is read)."""

    def __init__(self, arena, weights):
        self.info = {"board": "mps2-an386", "arena_bytes": arena, "weights_bytes": weights}

    def __getattr__(self, name):
        raise AssertionError(f"board.{name} called: something was sent")


def test_too_big_for_arena_or_weights_store_before_anything_is_sent():
    net, shape, calib = make_net("ds_cnn", "mps2-an386", 1.0)
    with pytest.raises(DeployError, match=r"arena of 2080 B but mps2-an386 has 1000 B \(1080 B too many\).*nothing was sent"):
        benchmark(net, calib[:1], calib, link=_NoSend(1000, 1 << 20))
    with pytest.raises(DeployError, match=r"weights store of mps2-an386 has 100 B \(\d+ B too many\)"):
        benchmark(net, calib[:1], calib, link=_NoSend(1 << 20, 100))
    big = zoo.reference_cnn(width=4.0).eval()      # 28*28*(128+256) B of activations > 240 KiB
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(DeployError, match=r"but mps2-an386 has 245760 B \(\d+ B too many\)"):
        benchmark(big, x[:1], x, emulate="mps2-an386")   # raised before QEMU is started


def test_op_the_firmware_lacks(an386):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2), nn.Softmax(1)).eval()
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(UnsupportedOnBoardError, match="softmax, which is not elementwise"):
        benchmark(net, x[:1], x, link=an386)


def test_board_lost_mid_run_keeps_partial_results(tmp_path):
    require_hil_tools()
    from lightning_mcuprune.hil.emulated import EmulatedBoard
    net, shape, calib = make_net("ds_cnn", "mps2-an386", 1.0)
    emu = EmulatedBoard("mps2-an386")
    board = emu.__enter__()
    try:
        calls = {"n": 0}
        configure = board.configure

        def dying(spec):
            calls["n"] += 1
            if calls["n"] == 4:
                emu.proc.kill()
                emu.proc.wait()
                board.retries, board.timeout = 0, 0.5   # fail fast once QEMU is gone
            return configure(spec)
        board.configure = dying
        with pytest.raises(BoardLostError, match=r"board lost after 3 of 11 layers") as ei:
            benchmark(net, calib[:1], calib, link=board, json_path=tmp_path / "partial.json")
        res = ei.value.result
        assert not res.complete
        assert res.layers.measured_cycles.notna().sum() == 3 and res.layers.bit_exact[:3].all()
        d = json.loads((tmp_path / "partial.json").read_text())
        assert d["complete"] is False and sum(r["measured_cycles"] is not None for r in d["layers"]) == 3
    finally:
        emu.close()


def test_cli_benchmark_writes_json_and_png(tmp_path):
    require_hil_tools()
    from lightning_mcuprune.cli import main
    rc = main(["benchmark", "lab_nets:tiny", "--input-shape", "1,8,8", "--emulate", "mps2-an386",
               "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert rc == 0
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["summary"]["bit_exact"] is True and d["summary"]["arena_high_water"] == d["summary"]["predicted_peak_sram"]
    assert (tmp_path / "b.png").is_file()
    assert main(["benchmark", "no_colon_here", "--emulate", "mps2-an386"]) != 0


def test_cli_benchmark_takes_the_callbacks_export(tmp_path, capsys):
    """MODEL = the directory MCUPruneCallback.export wrote: pruned by the callback, run on the board."""
    require_hil_tools()
    import warnings

    from lit import Classifier, random_loader, trainer

    import lab_nets
    from lightning_mcuprune import MCUPruneCallback, analyze
    from lightning_mcuprune.cli import main
    net = lab_nets.tiny()
    dense = analyze(net, torch.zeros(1, 1, 8, 8), board="mps2-an386")
    cb = MCUPruneCallback("mps2-an386", {"sram": int(dense.peak_sram_bytes * 0.5)}, verbose=False, export=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer([cb], max_steps=12).fit(Classifier(net), random_loader((1, 8, 8), classes=5, n=32, batch=8))
    cb.export(tmp_path / "export")
    rc = main(["benchmark", str(tmp_path / "export"), "--unsafe-pickle", "--emulate", "mps2-an386",
               "--json", str(tmp_path / "b.json")])
    assert rc == 0
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["summary"]["bit_exact"] is True
    assert d["summary"]["arena_high_water"] == d["summary"]["predicted_peak_sram"] <= cb.budgets["sram"]

    # an export directory from elsewhere: its model.pt would run code when unpickled (here: create a file), so
    # without --unsafe-pickle it is never read; --network applies pruned_state.pt weights-only (issue 12)
    import shutil

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp_path / "pickle_ran"), "w"))
    theirs = tmp_path / "theirs"
    shutil.copytree(tmp_path / "export", theirs)
    torch.save(Planted(), theirs / "model.pt")
    rc = main(["benchmark", str(theirs), "--emulate", "mps2-an386"])
    err = " ".join(capsys.readouterr().out.split())
    assert rc == 2 and "--network PKG.MODULE:CALLABLE" in err and "--unsafe-pickle" in err, err
    rc = main(["benchmark", str(theirs), "--network", "lab_nets:tiny", "--emulate", "mps2-an386",
               "--json", str(tmp_path / "w.json")])
    assert rc == 0 and not (tmp_path / "pickle_ran").exists()
    w = json.loads((tmp_path / "w.json").read_text())
    assert w["summary"]["bit_exact"] is True and w["summary"]["predicted_peak_sram"] == d["summary"]["predicted_peak_sram"]
    assert [r["predicted_cycles"] for r in w["layers"]] == [r["predicted_cycles"] for r in d["layers"]]
    assert not (tmp_path / "pickle_ran").exists()
    main(["benchmark", str(theirs), "--unsafe-pickle", "--emulate", "mps2-an386"])   # the opt-in really unpickles
    assert (tmp_path / "pickle_ran").exists()


def test_cli_benchmark_table_is_not_cut_when_piped(tmp_path):
    """`mcuprune benchmark ... | less`: rich would cut the tables to 80 columns (issue 12, item 9)."""
    require_hil_tools()
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-m", "lightning_mcuprune.cli", "benchmark", "lab_nets:tiny", "--input-shape",
                        "1,8,8", "--emulate", "mps2-an386"], cwd=root / "tests", env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout and max(len(line) for line in r.stdout.splitlines()) > 80, r.stdout


def _child_pid(parent: int, comm: str):
    """The pid of `parent`'s child process named `comm`, or None (from /proc)."""
    import os
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if name == comm and int(rest[1]) == parent:
                return int(d)
    return None


def _written_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


def test_cli_benchmark_exits_1_when_the_board_is_lost_mid_measurement():
    """`mcuprune benchmark` run for real (a subprocess, nothing replaced): once it has written the first 2 KB of the
    weights upload to the emulated board, the board (QEMU) is killed. The measurement ran and could not finish:
    exit code CHECK_FAILED_EXIT_CODE (1), not the user-error code 2, with how far it got. (The TFLM not-bit-exact
    case of exit 1 has no real trigger from the command line: `--runtime tflm` writes the .tflite and checks that
    same file against the same quantised graph in one call; it takes no .tflite to alter.)"""
    require_hil_tools()
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from lightning_mcuprune.errors import CHECK_FAILED_EXIT_CODE
    from lightning_mcuprune.hil.emulated import build_firmware
    build_firmware("mps2-an386")   # make runs here, not inside the run below
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, "-m", "lightning_mcuprune.cli", "benchmark",
                          "lightning_mcuprune.examples.zoo:ds_cnn", "--input-shape", "1,49,10", "--emulate", "mps2-an386",
                          "--board-samples", "64"], cwd=root / "tests", env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        qemu = None
        while qemu is None and p.poll() is None and time.monotonic() < deadline:
            qemu = _child_pid(p.pid, "qemu-system-arm")
            time.sleep(0.01)
        assert qemu is not None, p.communicate(timeout=60)
        base = _written_bytes(p.pid)   # the HELLO frame and nothing else goes out before the upload (no warnings)
        while _written_bytes(p.pid) - base < 2048 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert p.poll() is None, p.communicate(timeout=60)
        os.kill(qemu, signal.SIGKILL)   # the board is gone mid-measurement
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    text = " ".join(out.split())
    assert p.returncode == CHECK_FAILED_EXIT_CODE, (p.returncode, out[-2000:], err[-2000:])
    assert "board lost after" in text and "Traceback" not in err, (out[-2000:], err[-2000:])
