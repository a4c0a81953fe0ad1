"""Keyword spotting data, generated offline with Debian's `espeak-ng` (no download), and a LightningDataModule.

Each clip: one word spoken by one espeak-ng voice (language + voice variant, e.g. "en-us+m3") at a random
speed and pitch, resampled to 16 kHz mono, placed in a 1 s window with a random time shift and mixed with
synthetic background noise (white, pink or brown) at a random SNR. Features: MFCC, 49 frames x 10
coefficients (40 ms Hann window, 20 ms hop, 40 mel bands 20-4000 Hz, log, DCT-II), the input
`zoo.ds_cnn` was made for. The data set is generated once and cached as an .npz under
`$MCUPRUNE_CACHE_DIR` (default ~/.cache/lightning-mcuprune)/kws/, keyed by every generation parameter
and written atomically. Train/val/test are split **by voice**: the test set speaks with unseen voices.

    cfg = KWSConfig()                       # 10 words, 36 voices
    data = load_kws(cfg)                    # dict: features [N, 49, 10] float32, labels [N], voice [N], ...
    dm = KWSDataModule(cfg, batch_size=64)  # tensors [B, 1, 49, 10], standardised with training statistics
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

SAMPLE_RATE = 16000          # Hz
CLIP_SAMPLES = SAMPLE_RATE   # 1 s
WINDOW = 640                 # samples (40 ms)
HOP = 320                    # samples (20 ms)
N_MELS = 40
N_MFCC = 10
N_FRAMES = 1 + (CLIP_SAMPLES - WINDOW) // HOP  # 49
FEATURE_VERSION = 1          # bump when the generation or feature code changes: new cache key
DEB_PACKAGE = "espeak-ng"

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2")


def voice_pool() -> list[str]:
    """Every "language+variant" voice name, interleaved so that the first k voices span languages and variants."""
    pairs = [(lang, var) for var, lang in itertools.product(VARIANTS, LANGUAGES)]
    rng = np.random.default_rng(1234)
    return [f"{lang}+{var}" for lang, var in (pairs[i] for i in rng.permutation(len(pairs)))]


@dataclass(frozen=True)
class KWSConfig:
    """What to generate. Every field is part of the cache key.

    words: the keywords (one class each). voices: espeak-ng voices ("en-us+m3"), or an int n for the
    first n of `voice_pool()`. renditions: clips synthesised per (word, voice), each at a random speed
    (words/min, uniform in `speed`) and pitch (0-99, uniform in `pitch`). augment: noisy, shifted copies
    made of each rendition. snr_db: range of the speech-to-noise ratio (dB). shift_ms: largest time
    shift of the word from the clip centre (ms). seed: all randomness.
    """

    words: tuple[str, ...] = WORDS
    voices: tuple[str, ...] | int = 36
    renditions: int = 3
    augment: int = 3
    speed: tuple[int, int] = (120, 220)
    pitch: tuple[int, int] = (20, 80)
    snr_db: tuple[float, float] = (5.0, 30.0)
    shift_ms: float = 150.0
    seed: int = 0

    def voice_list(self) -> list[str]:
        if isinstance(self.voices, int):
            pool = voice_pool()
            if not 1 <= self.voices <= len(pool):
                raise ValueError(f"voices={self.voices}: choose 1..{len(pool)} or give voice names")
            return pool[:self.voices]
        return list(self.voices)

    def key(self) -> str:
        d = asdict(self)
        d["voices"] = self.voice_list()
        d["feature_version"] = FEATURE_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """$MCUPRUNE_CACHE_DIR/kws, default ~/.cache/lightning-mcuprune/kws."""
    root = os.environ.get("MCUPRUNE_CACHE_DIR") or Path.home() / ".cache" / "lightning-mcuprune"
    return Path(root) / "kws"


# ---- synthesis --------------------------------------------------------------------------------------
def espeak_path() -> str:
    """Path of the espeak-ng binary; a clear error naming the Debian package if it is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError(f"espeak-ng not found on PATH: the keyword-spotting data set is synthesised offline with it; "
                                f"install the Debian package {DEB_PACKAGE} (`apt-get install -y {DEB_PACKAGE}`)")
    return exe


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """int16 mono RIFF/WAVE bytes (espeak-ng --stdout writes a placeholder data size) -> float32 [-1, 1], rate."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write WAVE data")
    rate = int.from_bytes(data[24:28], "little")
    channels, bits = int.from_bytes(data[22:24], "little"), int.from_bytes(data[34:36], "little")
    if channels != 1 or bits != 16:
        raise ValueError(f"espeak-ng wrote {channels} channels of {bits} bits; expected mono 16-bit")
    i = data.find(b"data", 12)
    pcm = data[i + 8:]
    pcm = pcm[:len(pcm) // 2 * 2]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate


def synthesize(word: str, voice: str, speed: int = 160, pitch: int = 50, exe: str | None = None) -> np.ndarray:
    """One spoken word: float32 waveform at 16 kHz (espeak-ng at `speed` words/min, `pitch` 0-99)."""
    from scipy.signal import resample_poly
    exe = exe or espeak_path()
    p = subprocess.run([exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", word],
                       capture_output=True, timeout=60)
    err = p.stderr.decode(errors="replace").strip()
    if p.returncode != 0 or err or len(p.stdout) <= 44:
        raise RuntimeError(f"espeak-ng -v {voice} failed for {word!r}: {err or f'exit code {p.returncode}, no audio'}")
    x, rate = _parse_wav(p.stdout)
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return x


def trim(x: np.ndarray, threshold: float = 0.02, frame: int = 160) -> np.ndarray:
    """Drop leading/trailing silence (10 ms frames whose peak is below `threshold` of the clip's peak)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        return x
    n = len(x) // frame
    loud = np.flatnonzero(np.abs(x[:n * frame]).reshape(n, frame).max(1) >= threshold * peak)
    return x[loud[0] * frame:(loud[-1] + 1) * frame] if loud.size else x


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of length n: "white" (flat), "pink" (1/f power) or "brown" (1/f^2 power)."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[color]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    y = np.fft.irfft(spec / f ** (alpha / 2), n)
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def place(word: np.ndarray, rng: np.random.Generator, shift_ms: float) -> np.ndarray:
    """The word centred in a 1 s clip, shifted by up to +-shift_ms (kept inside the clip; cut if > 1 s)."""
    word = word[:CLIP_SAMPLES]
    slack = CLIP_SAMPLES - len(word)
    shift = int(rng.uniform(-shift_ms, shift_ms) * SAMPLE_RATE / 1000)
    start = int(np.clip(slack // 2 + shift, 0, slack))
    out = np.zeros(CLIP_SAMPLES, np.float32)
    out[start:start + len(word)] = word
    return out


def mix(clip: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """clip + noise scaled to `snr_db` (speech RMS over its active part), peak-normalised to 0.9."""
    active = clip[np.abs(clip) > 1e-4]
    rms = float(np.sqrt(np.mean(active ** 2))) if active.size else 1e-3
    y = clip + noise * rms / 10 ** (snr_db / 20)
    return (y * 0.9 / (np.abs(y).max() + 1e-9)).astype(np.float32)


# ---- features ---------------------------------------------------------------------------------------
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = WINDOW, rate: int = SAMPLE_RATE, fmin: float = 20.0,
                   fmax: float = 4000.0) -> np.ndarray:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] (unit peak)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))).astype(np.float32)


_FB = None


def mfcc(waves: np.ndarray | torch.Tensor) -> np.ndarray:
    """MFCC of 1 s 16 kHz clips [N, 16000] -> [N, 49, 10] float32 (frames x coefficients): torch.stft
    (40 ms Hann window, 20 ms hop, no padding), power spectrum, 40 mel bands, log(1e-6 + .), DCT-II (ortho)."""
    global _FB
    from scipy.fft import dct
    if _FB is None:
        _FB = torch.from_numpy(mel_filterbank())
    x = torch.as_tensor(np.asarray(waves, np.float32))
    if x.ndim != 2 or x.shape[1] != CLIP_SAMPLES:
        raise ValueError(f"mfcc expects [N, {CLIP_SAMPLES}] clips, got {tuple(x.shape)}")
    spec = torch.stft(x, n_fft=WINDOW, hop_length=HOP, win_length=WINDOW, window=torch.hann_window(WINDOW),
                      center=False, return_complex=True).abs() ** 2          # [N, 321, 49]
    logmel = torch.log(torch.einsum("mf,nft->ntm", _FB, spec) + 1e-6)     # [N, 49, 40]
    return dct(logmel.numpy(), type=2, axis=-1, norm="ortho")[..., :N_MFCC].astype(np.float32)


# ---- the data set ------------------------------------------------------------------------------------
def generate(cfg: KWSConfig, workers: int = 4, progress: "bool | None" = None) -> dict:
    """Synthesise and featurise the whole data set (calls espeak-ng len(words) x voices x renditions times)."""
    exe = espeak_path()
    voices, words = cfg.voice_list(), list(cfg.words)
    if len(set(words)) != len(words) or not words:
        raise ValueError(f"words must be distinct and non-empty: {words}")
    rng = np.random.default_rng(cfg.seed)
    jobs = [(wi, vi, int(rng.integers(cfg.speed[0], cfg.speed[1] + 1)), int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1)))
            for vi in range(len(voices)) for wi in range(len(words)) for _ in range(cfg.renditions)]
    with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        audio = list(pool.map(lambda j: trim(synthesize(words[j[0]], voices[j[1]], j[2], j[3], exe)), jobs))
    clips, labels, voice_idx = [], [], []
    colors = ("white", "pink", "brown")
    for (wi, vi, _, _), a in zip(jobs, audio):
        for _ in range(cfg.augment):
            clip = place(a, rng, cfg.shift_ms)
            noise = colored_noise(CLIP_SAMPLES, colors[int(rng.integers(3))], rng)
            clips.append(mix(clip, noise, float(rng.uniform(*cfg.snr_db))))
            labels.append(wi)
            voice_idx.append(vi)
    feats = np.concatenate([mfcc(np.stack(clips[i:i + 512])) for i in range(0, len(clips), 512)])
    return {"features": feats, "labels": np.asarray(labels, np.int64), "voice": np.asarray(voice_idx, np.int64),
            "words": np.asarray(words), "voices": np.asarray(voices), "key": np.asarray(cfg.key())}


def load_kws(cfg: KWSConfig | None = None, cache: str | os.PathLike | None = None, workers: int = 4) -> dict:
    """The data set of `cfg`: from the cache if it is there (no espeak-ng call), else generated and cached.

    Returns features [N, 49, 10] float32 (MFCC), labels [N] int64 (index into words), voice [N] int64
    (index into voices), words, voices, key, and `path` of the cache file."""
    from lightning_mcuprune.io import atomic_path
    cfg = cfg or KWSConfig()
    path = Path(cache) if cache else cache_dir() / f"kws-{cfg.key()}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        if str(data.get("key")) == cfg.key():
            data["path"] = path
            return data
    data = generate(cfg, workers=workers)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **data)
    data["path"] = path
    return data


def split_by_voice(n_voices: int, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
                   ) -> "tuple[list[int], list[int], list[int]]":
    """Disjoint voice indices (train, val, test); test and val get at least one voice each when there are
    enough voices (>= 3 for both, 2 for test only); fewer voices than that is an error."""
    perm = [int(i) for i in np.random.default_rng(seed).permutation(n_voices)]
    n_test = max(1, round(test_fraction * n_voices)) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * n_voices)) if n_voices >= 3 and val_fraction > 0 else 0
    if n_test + n_val >= n_voices:
        raise ValueError(f"{n_voices} voices cannot hold test ({n_test}) + val ({n_val}) + train voices")
    return perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test]


class KWSDataModule(pl.LightningDataModule):
    """Keyword spotting from espeak-ng: tensors [B, 1, 49, 10] (MFCC standardised per coefficient with the
    training voices' mean/std) and word labels; train/val/test split by voice (unseen voices in test).

    Args:
        config: what to generate (KWSConfig). batch_size: every loader's.
        val_fraction, test_fraction: share of voices held out. seed: the voice split and shuffling.
        cache: .npz path (default: keyed by the config under cache_dir()). workers: parallel espeak-ng calls.
    """

    def __init__(self, config: KWSConfig | None = None, batch_size: int = 64, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0, cache: str | os.PathLike | None = None, workers: int = 4):
        super().__init__()
        self.config = config or KWSConfig()
        self.batch_size, self.val_fraction, self.test_fraction = int(batch_size), val_fraction, test_fraction
        self.seed, self.cache, self.workers = int(seed), cache, int(workers)
        self.train_set = self.val_set = self.test_set = None
        self.words = list(self.config.words)

    @property
    def num_classes(self) -> int:
        return len(self.words)

    def prepare_data(self) -> None:
        load_kws(self.config, self.cache, self.workers)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        d = load_kws(self.config, self.cache, self.workers)
        self.voices = [str(v) for v in d["voices"]]
        tr, va, te = split_by_voice(len(self.voices), self.val_fraction, self.test_fraction, self.seed)
        self.split_voices = {"train": [self.voices[i] for i in tr], "val": [self.voices[i] for i in va],
                             "test": [self.voices[i] for i in te]}
        x, y, v = d["features"], d["labels"], d["voice"]
        train = np.isin(v, tr)
        self.mean = x[train].mean(axis=(0, 1), keepdims=True)
        self.std = x[train].std(axis=(0, 1), keepdims=True) + 1e-6

        def ds(idx):
            if not idx:
                return None
            m = np.isin(v, idx)
            return TensorDataset(torch.from_numpy((x[m] - self.mean) / self.std).unsqueeze(1).float(), torch.from_numpy(y[m]))
        self.train_set, self.val_set, self.test_set = ds(tr), ds(va), ds(te)

    def _loader(self, ds, shuffle: bool):
        if ds is None:
            return []
        g = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=g)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)
