"""benchmarks/lab_benchmark.py caches its trained networks per user, weights-only: a file planted in the
cache cannot run code (it used to read pickles at fixed /tmp paths any local user could write)."""
import stat
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import lab_benchmark  # noqa: E402

from lightning_mcuprune.examples import zoo  # noqa: E402


class _Evil:
    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (Path.write_text, (Path(self.flag), "pwned"))


def test_cache_is_per_user_and_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = lab_benchmark.cache_dir()
    assert d.is_relative_to(tmp_path / "xdg") and stat.S_IMODE(d.stat().st_mode) == 0o700
    net = zoo.reference_cnn(width=0.5).eval()
    path = d / "net.pt"
    lab_benchmark.save_net(net, lambda: zoo.reference_cnn(width=0.5), (1, 12, 12), path, calib=torch.ones(2))
    back, extra = lab_benchmark.load_net(lambda: zoo.reference_cnn(width=0.5), path)
    x = torch.randn(2, 1, 12, 12)
    torch.testing.assert_close(back(x), net(x), atol=0, rtol=0)
    assert torch.equal(extra["calib"], torch.ones(2))
    flag = tmp_path / "flag"
    torch.save({"calib": _Evil(str(flag))}, path.with_suffix(".extra.pt"))  # a planted pickle
    with pytest.raises(Exception, match="(?i)weights only|unsupported global"):
        lab_benchmark.load_net(lambda: zoo.reference_cnn(width=0.5), path)
    assert not flag.exists()
