"""The keyword-spotting data (real espeak-ng) and the examples, end to end on tiny settings (real training)."""
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_mcuprune.data import kws as kws_data
from lightning_mcuprune.data.kws import KWSConfig, KWSDataModule, load_kws

ROOT = Path(__file__).resolve().parents[2]
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK and os.environ.get("CI") != "true",
                                  reason="espeak-ng not installed (apt-get install -y espeak-ng)")
FASHION = Path(os.environ.get("MCUPRUNE_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file() and os.environ.get("CI") != "true",
                                   reason="dataset-fashion-mnist not installed")
TINY = KWSConfig(words=("yes", "no", "stop"), voices=("en-us+m1", "en+f2"), renditions=2, augment=2, seed=3)


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCUPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "kws"


def _no_espeak_path(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


@needs_espeak
def test_kws_generation_shapes_labels_and_cache(cache, tmp_path, monkeypatch):
    d = load_kws(TINY, workers=2)
    n = len(TINY.words) * 2 * TINY.renditions * TINY.augment
    assert d["features"].shape == (n, kws_data.N_FRAMES, kws_data.N_MFCC) == (n, 49, 10)
    assert d["features"].dtype == np.float32 and np.isfinite(d["features"]).all()
    assert list(d["words"]) == list(TINY.words) and list(d["voices"]) == list(TINY.voices)
    # every (word, voice) pair holds renditions x augment clips, in generation order
    per = TINY.renditions * TINY.augment
    for vi in range(2):
        for wi in range(3):
            m = (d["labels"] == wi) & (d["voice"] == vi)
            assert m.sum() == per
    # speech is there: the clips of one word differ from the clips of another more than among themselves
    x = d["features"].reshape(n, -1)
    c = [x[d["labels"] == w].mean(0) for w in range(3)]
    assert min(np.linalg.norm(c[a] - c[b]) for a in range(3) for b in range(a + 1, 3)) > 0.5
    files = list(cache.glob("kws-*.npz"))
    assert len(files) == 1 and files[0] == d["path"]
    assert not list(cache.glob(".*.tmp"))  # written atomically: no temporary left behind

    # the 2nd call reads the cache: it works with no espeak-ng on PATH at all
    _no_espeak_path(tmp_path, monkeypatch)
    again = load_kws(TINY)
    np.testing.assert_array_equal(again["features"], d["features"])
    np.testing.assert_array_equal(again["labels"], d["labels"])
    # ... while a new configuration needs espeak-ng, and says which Debian package to install
    with pytest.raises(FileNotFoundError, match=r"espeak-ng.*apt-get install -y espeak-ng"):
        load_kws(KWSConfig(words=("go", "up"), voices=("en+m2",), renditions=1, augment=1))


def test_kws_missing_espeak_names_the_debian_package(cache, tmp_path, monkeypatch):
    _no_espeak_path(tmp_path, monkeypatch)
    with pytest.raises(FileNotFoundError) as e:
        load_kws(TINY)
    msg = str(e.value)
    assert "espeak-ng" in msg and "Debian package espeak-ng" in msg and "\n" not in msg


@needs_espeak
def test_kws_unknown_voice_is_a_clear_error(cache):
    with pytest.raises(RuntimeError, match="espeak-ng -v zz-nope.*voice"):
        load_kws(KWSConfig(words=("yes", "no"), voices=("zz-nope",), renditions=1, augment=1))


def test_features_and_split_units():
    t = np.arange(16000) / 16000
    x = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 2000 * t)]).astype(np.float32)
    f = kws_data.mfcc(x)
    assert f.shape == (2, 49, 10) and not np.allclose(f[0], f[1])
    fb = kws_data.mel_filterbank()
    assert fb.shape == (40, 321) and (fb.max(1) > 0.5).all()
    for color in ("white", "pink", "brown"):
        n = kws_data.colored_noise(16000, color, np.random.default_rng(0))
        assert abs(np.sqrt(np.mean(n ** 2)) - 1) < 1e-3
    tr, va, te = kws_data.split_by_voice(36, 0.1, 0.2, seed=0)
    assert len(te) == 7 and len(va) == 4 and len(tr) == 25 and not (set(tr) & set(te)) and not (set(va) & set(te))
    assert kws_data.split_by_voice(2, 0.1, 0.2)[1] == []
    with pytest.raises(ValueError, match="voices"):
        kws_data.split_by_voice(1, 0.1, 0.2)


@needs_espeak
def test_kws_datamodule_splits_by_voice(cache):
    dm = KWSDataModule(TINY, batch_size=4)
    dm.setup("fit")
    assert set(dm.split_voices["train"]).isdisjoint(dm.split_voices["test"]) and len(dm.split_voices["test"]) == 1
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape[1:] == (1, 49, 10) and yb.dtype == torch.int64
    assert abs(float(dm.train_set.tensors[0].mean())) < 1e-3  # standardised with the training voices' statistics


@needs_espeak
def test_keyword_spotting_example_end_to_end(cache, tmp_path):
    ex = _example("keyword_spotting")
    budgets = {"sram": "8KiB", "latency_ms": 30}
    r = ex.main(epochs=1, config=TINY, batch_size=4, budgets=budgets, progress=False,
                out=str(tmp_path / "kws"))
    rep = r["report"]
    assert rep.peak_sram_bytes <= 8 * 1024 and rep.latency_ms <= 30
    assert rep.peak_sram_bytes <= r["budgets"]["sram"]
    assert 0.0 <= r["test_acc"] <= 1.0


@needs_fashion
def test_mobilenet_v2_example_end_to_end(tmp_path):
    ex = _example("mobilenet_v2")
    r = ex.main(epochs=1, train_subset=256, batch_size=64, limit_train_batches=4, limit_test_batches=2, progress=False,
                out=str(tmp_path / "mbv2"))
    rep = r["report"]
    assert rep.peak_sram_bytes <= r["budgets"]["sram"] and rep.latency_ms <= r["budgets"]["latency_ms"]
    assert r["budgets"]["sram"] == 24 * 1024
    assert 0.0 <= r["test_acc"] <= 1.0
