"""`calibrate`: measure sample layers on a board, fit its latency model, write its profile with an accuracy report.

    calibrate --emulate mps2-an386 [--out mps2-an386.json]      # QEMU
    calibrate --port /dev/ttyACM0 [--out profile.json]           # a connected board (or none: the only one)

1. Design: per measured op type, `fit` sample layers and, drawn separately (another seed), `held_out` ones,
   spread over channels 1..256, spatial sizes 1..96, strides 1 and 2, kernel sizes, and constrained to the
   board's arena and weights store (bytes, from HELLO) and to a work cap (cycles) so a run stays short.
2. Measure: each layer is run on the board (weights and inputs filled on the board from a seed derived from
   the configuration) and appended to a CSV as it arrives (flushed and fsynced); a run that is interrupted
   resumes from the CSV and measures nothing twice. A CSV from another board or firmware is refused.
3. Fit (`latency_fit`): per op type NNLS over the resource model's latency features, k-fold CV, held-out errors.
4. Write the profile (JSON, atomically), a PNG of predicted against measured cycles, and print a table.

Features of a layer are computed here exactly as `resources.ResourceModel` computes them for the same op
in a traced network (tests/hil/test_calibrate.py checks this on one-layer torch networks).
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from lightning_mcuprune._compat import renamed_keyword
from lightning_mcuprune.boards import builtin_boards, load_board
from lightning_mcuprune.graph.geometry import axis_taps
from lightning_mcuprune.graph.ops import LATENCY_FEATURES, OP_TYPES
from lightning_mcuprune.hil.latency_fit import OP_FEATURES, errors, fit_op
from lightning_mcuprune.quantize.layer import LayerSpec
from lightning_mcuprune.io import save_figure, write_json_atomic
from lightning_mcuprune.errors import MCUPruneError

if TYPE_CHECKING:
    import argparse

    import rich.console
    import rich.table

    from lightning_mcuprune.hil.board import Board
    from lightning_mcuprune.hil.emulated import EmulatedBoard

MEASURED_OPS = tuple(OP_FEATURES)
#: op types the firmware has no kernel for: their coefficients stay estimates (marked as such)
ESTIMATED_OPS = tuple(op for op in OP_TYPES if op not in MEASURED_OPS)
CSV_COLUMNS = ("board", "firmware", "icount_shift", "index", "split", "op", "key", "h", "w", "c", "oc", "kh", "kw", "sh", "sw",
               "pt", "pb", "pl", "pr", "dm", "cycles", "repeats")
DEFAULT_FIT, DEFAULT_HELD_OUT = 100, 50
#: rough upper bound of one layer's work (cycles; ~10 per in-input MAC): keeps each run short on QEMU and silicon
WORK_CAP_CYCLES = 20_000_000


class CalibrationError(MCUPruneError, ValueError):
    """Calibration cannot go on (wrong CSV, no board, bad arguments); the message says what to do."""


# ---- features ----------------------------------------------------------------------------------------
def layer_features(spec: LayerSpec) -> dict:
    """The resource model's latency features (LATENCY_FEATURES) of one firmware layer, as ResourceModel
    computes them for the same op in a traced network (elements, not bytes)."""
    h, w, c = spec.input_shape
    oh, ow, oc = spec.output_shape
    op = spec.op
    kh, kw = spec.kernel
    sh, sw = spec.stride
    pt, pb, pl, pr = spec.padding
    out_el = oh * ow * oc
    f = dict.fromkeys(LATENCY_FEATURES, 0.0)
    f.update(input_elements=h * w * c * (2 if op == "add" else 1), output_elements=out_el, output_channels=oc,
             output_pixels=oh * ow, output_rows=oh if op not in ("dense", "global_avg_pool") else 1, const=1.0)
    if op in ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool", "pointwise_conv2d"):
        rows = axis_taps(h, oh, kh, sh, pt)
        taps = rows * axis_taps(w, ow, kw, sw, pl)  # per channel
        window, k_rows, row_taps, v_rows = kh * kw, kh, rows * ow * kw, rows * ow
    elif op == "dense":
        taps, window, k_rows, row_taps, v_rows = 1, 1, 1, 1, 1
    elif op == "global_avg_pool":
        taps, window, k_rows, row_taps, v_rows = h * w, h * w, h, h * w, h
    else:
        taps, window, k_rows, row_taps, v_rows = 0, 0, 0, 0, 0
    lin = {"conv2d": c, "pointwise_conv2d": c, "dense": h * w * c, "depthwise_conv2d": 1}.get(op, 0)
    k = {"conv2d": kh * kw, "pointwise_conv2d": 1, "dense": 1, "depthwise_conv2d": kh * kw}.get(op, 0)
    f.update(macs=k * oh * ow * lin * oc, weight_elements=k * lin * oc, valid_macs=taps * lin * oc,
             valid_taps=taps * oc, kernel_positions=window * oh * ow * oc, kernel_rows=k_rows * oh * ow * oc,
             row_taps=row_taps * oc, valid_rows=v_rows * oc)
    return {k_: float(v) for k_, v in f.items()}


# ---- design ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one layer may use on the board: arena and weights store (bytes), work cap (cycles)."""

    arena_bytes: int
    weights_bytes: int
    work_cap: float = WORK_CAP_CYCLES


def _logint(rng, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))))))


def _spatial(rng, lo: int = 1, hi: int = 96) -> tuple[int, int]:
    h = _logint(rng, lo, hi)
    return h, (h if rng.random() < 0.7 else _logint(rng, lo, hi))


#: share of 1-d layers (a 1xK window on H=1, as Conv1d/pooling 1d run on the firmware, or Kx1 on W=1) in the
#: design of conv2d, depthwise_conv2d, max_pool and avg_pool
SHARE_1D = 0.3
ONE_D_OPS = ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool")


def is_1d(spec: LayerSpec) -> bool:
    """A windowed layer on a 1-row or 1-column input (a Conv1d or 1-d pooling as the firmware runs it)."""
    return spec.op in ONE_D_OPS and 1 in spec.input_shape[:2]


def _candidate_1d(op: str, rng, c: int, oc: int) -> LayerSpec:
    if op in ("max_pool", "avg_pool"):
        k = int(rng.choice([2, 3, 4]))
        s, p = int(rng.integers(1, 3)), (int(rng.integers(0, 2)) if k >= 3 else 0)
    else:
        k = int(rng.choice([3, 5, 7, 9, 10]))
        s, p = int(rng.integers(1, 3)), int(rng.choice([0, k // 2]))
    n = _logint(rng, max(1, k - 2 * p), 256)
    rows = rng.random() < 0.8   # H=1, W=L (Conv1d) or, less often, W=1, H=L
    kw = dict(kernel=(1, k) if rows else (k, 1), stride=(1, s) if rows else (s, 1),
              padding=(0, 0, p, p) if rows else (p, p, 0, 0))
    shape = (1, n, c) if rows else (n, 1, c)
    if op == "conv2d":
        return LayerSpec(op, shape, out_channels=oc, **kw)
    if op == "depthwise_conv2d":
        return LayerSpec(op, shape, depth_multiplier=int(rng.choice([1, 1, 1, 2])), **kw)
    return LayerSpec(op, shape, **kw)


def _candidate(op: str, rng) -> LayerSpec:
    c, oc = _logint(rng, 1, 256), _logint(rng, 1, 256)
    if op in ONE_D_OPS and rng.random() < SHARE_1D:
        return _candidate_1d(op, rng, c, oc)
    if op == "conv2d":
        k = int(rng.choice([1, 3, 3, 5, 7]))
        s = 2 if k == 1 else int(rng.integers(1, 3))   # a 1x1 stride-1 conv is a pointwise_conv2d
        p = int(rng.choice([0, k // 2]))
        h, w = _spatial(rng, max(1, k - 2 * p))
        return LayerSpec(op, (h, w, c), out_channels=oc, kernel=k, stride=s, padding=p)
    if op == "depthwise_conv2d":
        k = int(rng.choice([3, 3, 5, 7]))
        s, p = int(rng.integers(1, 3)), int(rng.choice([0, k // 2]))
        h, w = _spatial(rng, max(1, k - 2 * p))
        return LayerSpec(op, (h, w, c), kernel=k, stride=s, padding=p, depth_multiplier=int(rng.choice([1, 1, 1, 2])))
    if op == "pointwise_conv2d":
        return LayerSpec(op, (*_spatial(rng), c), out_channels=oc)
    if op == "dense":
        return LayerSpec(op, (1, 1, _logint(rng, 1, 4096)), out_channels=oc)
    if op in ("max_pool", "avg_pool"):
        k = int(rng.choice([2, 3]))
        s, p = int(rng.integers(1, 3)), (int(rng.integers(0, 2)) if k == 3 else 0)
        h, w = _spatial(rng, max(1, k - 2 * p))
        return LayerSpec(op, (h, w, c), kernel=k, stride=s, padding=p)
    return LayerSpec(op, (*_spatial(rng), c))  # global_avg_pool, add


def _work(spec: LayerSpec) -> float:
    f = layer_features(spec)
    return 10 * f["valid_macs"] + 20 * f["valid_taps"] + 150 * f["output_elements"] + 10 * f["input_elements"]


def fits(spec: LayerSpec, limits: Limits) -> bool:
    """Does the layer fit the arena and weights store (bytes) and the work cap (cycles)?"""
    s = spec.placed()
    return (s.arena_end <= limits.arena_bytes and s.params_offset + s.params_bytes <= limits.weights_bytes
            and _work(spec) <= limits.work_cap)


def config_key(spec: LayerSpec) -> str:
    """A configuration's identity in the CSV (op and geometry; data are derived from it)."""
    h, w, c = spec.input_shape
    oc = spec.output_shape[2]
    return (f"{spec.op} in={h}x{w}x{c} oc={oc} k={spec.kernel[0]}x{spec.kernel[1]} s={spec.stride[0]}x{spec.stride[1]} "
            f"p={','.join(map(str, spec.padding))} m={spec.depth_multiplier}")


def spec_from_row(row: Mapping[str, Any]) -> LayerSpec:
    """The firmware layer a measurement row (a CSV row: op, h, w, c, oc, kernel, stride, ...) describes."""
    op = row["op"]
    kw = dict(input_shape=(int(row["h"]), int(row["w"]), int(row["c"])))
    if op in ("conv2d", "pointwise_conv2d", "dense"):
        kw["out_channels"] = int(row["oc"])
    if op in ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool"):
        kw.update(kernel=(int(row["kh"]), int(row["kw"])), stride=(int(row["sh"]), int(row["sw"])),
                  padding=(int(row["pt"]), int(row["pb"]), int(row["pl"]), int(row["pr"])))
    if op == "depthwise_conv2d":
        kw["depth_multiplier"] = int(row["dm"])
    return LayerSpec(op, **kw)


def make_design(limits: Limits, fit: int = DEFAULT_FIT, held_out: int = DEFAULT_HELD_OUT, seed: int = 0,
                ops: Sequence[str] = MEASURED_OPS) -> list[tuple[str, LayerSpec]]:
    """[(split, spec)]: per op type `fit` layers ("fit") and `held_out` layers ("held_out", drawn with another
    seed), distinct configurations that fit `limits`. Deterministic for given arguments."""
    out, seen = [], set()
    for split, n, sd in (("fit", fit, seed), ("held_out", held_out, seed + 10_007)):
        for op in ops:
            if op not in MEASURED_OPS:
                raise CalibrationError(f"op type {op!r} cannot be measured; the firmware runs {', '.join(MEASURED_OPS)}")
            rng = np.random.default_rng([sd, zlib.crc32(op.encode())])
            got, tries = 0, 0
            while got < n:
                tries += 1
                if tries > 200 * n + 1000:
                    raise CalibrationError(f"cannot find {n} distinct {op} layers that fit an arena of "
                                           f"{limits.arena_bytes} B and a weights store of {limits.weights_bytes} B")
                spec = _candidate(op, rng)
                key = config_key(spec)
                if key in seen or not fits(spec, limits):
                    continue
                seen.add(key)
                out.append((split, spec))
                got += 1
    return out


# ---- CSV ---------------------------------------------------------------------------------------------
CSV_HEADER = ",".join(CSV_COLUMNS).encode()


def _icount(value) -> str:
    """The icount_shift cell: QEMU's -icount shift, empty on a real board."""
    return "" if value is None or value == "" else str(int(value))


def read_measurements(path: Path, board: str, firmware: str, icount_shift: Union[int, str, None] = None,
                      repeats: Optional[int] = None) -> pd.DataFrame:
    """Measurements already in the CSV (empty frame if none). icount_shift: QEMU's shift, "" for a real board,
    None not to check it; repeats None not to check it.

    A file whose first line is not this version's header is refused before anything is written to it (it is
    not ours). A CSV of another board, firmware version, QEMU icount shift or repeat count is refused (its
    cycles would not be comparable). Only then, a last row cut short by an interruption is dropped (the file
    is truncated to its last complete row)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=CSV_COLUMNS)
    with open(path, "rb") as fh:
        first = fh.read(len(CSV_HEADER) + 2)
    if first.rstrip(b"\r\n") != CSV_HEADER or not first[len(CSV_HEADER):].startswith((b"\n", b"\r\n")):
        raise CalibrationError(f"{path} is not a calibration CSV of this version (its first line is not the header "
                               f"{CSV_HEADER.decode()}); it was left unchanged: give another --csv")
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(raw.rfind(b"\n") + 1)
    try:
        df = pd.read_csv(path, dtype={"firmware": str, "board": str, "icount_shift": str}, keep_default_na=False)
    except Exception as e:
        raise CalibrationError(f"{path} is not a readable calibration CSV ({e}); give another --csv") from None
    want_icount = None if icount_shift is None else _icount(icount_shift)
    for col, want, what in (("board", board, "board"), ("firmware", firmware, "firmware version"),
                            ("icount_shift", want_icount, "QEMU icount shift"),
                            ("repeats", None if repeats is None else str(int(repeats)), "repeats per layer")):
        if want is None:
            continue
        other = sorted(set(df[col].astype(str)) - {want})
        if other:
            now = f"{board}, firmware {firmware}" + (
                f", icount shift {want_icount or '- (real board)'}" if want_icount is not None else "") + (
                f", {repeats} repeats" if repeats is not None else "")
            raise CalibrationError(f"{path} holds measurements with {what} {', '.join(o or '-' for o in other)}, but "
                                   f"this run is {now}; give another --csv (or delete it to start over)")
    return df


class _CsvLog:
    """Append rows to the CSV as they arrive: header once, each row flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.fh = open(self.path, "a", newline="")
        self.w = csv.writer(self.fh)
        if new:
            self._write(CSV_COLUMNS)

    def _write(self, row) -> None:
        self.w.writerow(row)
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def append(self, board: str, firmware: str, index: int, split: str, spec: LayerSpec, cycles: int, repeats: int,
               icount_shift: Optional[int] = None):
        h, w, c = spec.input_shape
        self._write((board, firmware, _icount(icount_shift), index, split, spec.op, config_key(spec), h, w, c, spec.output_shape[2],
                     *spec.kernel, *spec.stride, *spec.padding, spec.depth_multiplier, int(cycles), repeats))

    def close(self) -> None:
        self.fh.close()


def icount_shift_of(board: Union[Board, EmulatedBoard]) -> Optional[int]:
    """QEMU's -icount shift of an emulated board (it scales every cycle count), None for a real board."""
    emu = getattr(board, "emulator", None)
    return None if emu is None else int(emu.icount_shift)


def measure(board: Union[Board, EmulatedBoard], csv_path: Path, design: Sequence[tuple[str, LayerSpec]],
            repeats: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run every design layer not yet in the CSV on the board, appending each result; returns all rows.

    repeats: runs per layer (cycles = the minimum); QEMU is deterministic, so 1 suffices there."""
    info = board.info or board.hello()
    name, fw, shift = info["board"], info["firmware_version"], icount_shift_of(board)
    done = read_measurements(csv_path, name, fw, "" if shift is None else shift, repeats)
    have = set(done["key"])
    todo = [(i, split, spec) for i, (split, spec) in enumerate(design) if config_key(spec) not in have]
    log = _CsvLog(csv_path)
    try:
        if progress and todo:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            cols = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn())
            with Progress(*cols) as bar:
                task = bar.add_task(f"calibrating {name}", total=len(design), completed=len(design) - len(todo))
                for i, split, spec in todo:
                    bar.update(task, description=f"{name}: {spec.op:<16}")
                    log.append(name, fw, i, split, spec, _run(board, spec, repeats), repeats, shift)
                    bar.advance(task)
        else:
            for i, split, spec in todo:
                log.append(name, fw, i, split, spec, _run(board, spec, repeats), repeats, shift)
    finally:
        log.close()
    return read_measurements(csv_path, name, fw, "" if shift is None else shift, repeats)


def _run(board, spec: LayerSpec, repeats: int) -> int:
    seed = zlib.crc32(config_key(spec).encode()) & 0xFFFF  # the same data on every run of this configuration
    return board.run_layer(spec, repeats=repeats, seed=seed)


# ---- fit and profile ---------------------------------------------------------------------------------
def feature_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The measurements with one column per latency feature."""
    feats = pd.DataFrame([layer_features(spec_from_row(r)) for _, r in rows.iterrows()], index=rows.index)
    return pd.concat([rows, feats], axis=1)


def fit_all(rows: pd.DataFrame, folds: int = 5) -> tuple[dict, pd.DataFrame]:
    """Fit every measured op type in rows. Returns ({op: fit result}, held-out table with predictions)."""
    df = feature_frame(rows.sort_values("index").reset_index(drop=True))
    results, held = {}, []
    for op in MEASURED_OPS:
        d = df[df["op"] == op]
        if d.empty:
            continue
        fit, ho = d[d["split"] == "fit"], d[d["split"] == "held_out"]
        if len(fit) < len(OP_FEATURES[op]):
            raise CalibrationError(f"{op}: {len(fit)} fit samples for {len(OP_FEATURES[op])} features; measure more (--fit)")
        r = fit_op(fit, ho, OP_FEATURES[op], folds)
        results[op] = r
        h = ho.assign(predicted=r.pop("held_out_pred"), one_d=[is_1d(spec_from_row(x)) for _, x in ho.iterrows()])
        if h["one_d"].any():
            r["held_out_1d"] = errors(h.loc[h["one_d"], "predicted"], h.loc[h["one_d"], "cycles"])
        held.append(h[["op", "key", "cycles", "predicted", "one_d"]])
        r.pop("cv_pred")
    return results, (pd.concat(held, ignore_index=True) if held else
                     pd.DataFrame(columns=["op", "key", "cycles", "predicted", "one_d"]))


def build_profile(base: dict, info: dict, results: dict, *, repeats: int, csv_name: str, folds: int,
                  held: Optional[pd.DataFrame] = None) -> dict:
    """The base profile with its latency section replaced by the fitted coefficients and the accuracy report.
    Op types without measurements keep the base's coefficients, marked as estimates."""
    prof = dict(base)
    prof["clock_hz"] = int(info["clock_hz"])
    base_ops = base.get("latency", {}).get("ops", {})
    ops, per_op = {}, {}
    for op in OP_TYPES:
        if op in results:
            r = results[op]
            ops[op] = {f: round(v, 6) for f, v in r["coefficients"].items()}
            per_op[op] = {"source": "calibrated", "features": r["features"], "samples": r["cv"]["samples"],
                          "held_out_samples": r["held_out"]["samples"], "cv": r["cv"], "held_out": r["held_out"],
                          **({"held_out_1d": r["held_out_1d"]} if "held_out_1d" in r else {})}
        else:
            if op not in base_ops:
                raise CalibrationError(f"op type {op} was not measured and the base profile has no coefficients for it")
            ops[op] = dict(base_ops[op])
            per_op[op] = {"source": "estimate"}
    estimated = [op for op in OP_TYPES if per_op[op]["source"] == "estimate"]
    overall = errors(held["predicted"], held["cycles"]) if held is not None and len(held) else None
    one_d = held[held["one_d"].astype(bool)] if held is not None and "one_d" in held else None
    overall_1d = errors(one_d["predicted"], one_d["cycles"]) if one_d is not None and len(one_d) else None
    prof["latency"] = {
        "source": "calibrated",
        "note": (f"Calibrated with `calibrate` on firmware {info['firmware_version']} ({info['counter']} counter"
                 + ("; on QEMU -icount cycles are instruction-count based" if info["counter"] == "systick" else "")
                 + f"). Not measured (the firmware has no kernel; coefficients estimated): {', '.join(estimated) or 'none'}. "
                 "No SIMD-remainder features: the kernels are plain C loops."),
        "ops": ops,
        "calibration": {
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
            "board": info["board"], "firmware_version": info["firmware_version"], "counter": info["counter"],
            **({"icount_shift": info["icount_shift"]} if info.get("icount_shift") is not None else {}),
            "repeats": repeats, "folds": folds, "csv": csv_name, "estimated_ops": estimated, "per_op": per_op,
            **({"held_out_overall": overall} if overall else {}),
            **({"held_out_1d_overall": overall_1d} if overall_1d else {}),
        },
    }
    return prof


def plot(held: pd.DataFrame, path: Path, title: str) -> Path:
    """PNG of predicted against measured cycles of the held-out layers (log-log, +-10% band), and their
    percentage errors against measured cycles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.5))
    lo, hi = max(1.0, held[["cycles", "predicted"]].min().min() * 0.7), held[["cycles", "predicted"]].max().max() * 1.4
    x = np.geomspace(lo, hi, 50)
    ax.fill_between(x, x * 0.9, x * 1.1, color="0.85", label="±10%")
    ax.plot(x, x, color="0.4", lw=0.8)
    ax2.axhspan(-10, 10, color="0.85", label="±10%")
    ax2.axhline(0, color="0.4", lw=0.8)
    for op, d in held.groupby("op", sort=False):
        ax.scatter(d["cycles"], d["predicted"], s=10, label=op)
        ax2.scatter(d["cycles"], 100 * (d["predicted"] - d["cycles"]) / d["cycles"], s=10, label=op)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured cycles", ylabel="predicted cycles",
           title=title)
    ax2.set(xscale="log", xlim=(lo, hi), ylim=(-15, 15), xlabel="measured cycles", ylabel="error of the prediction (%)",
            title="held-out errors")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def accuracy_table(profile: dict) -> pd.DataFrame:
    """Per op type: samples, CV and held-out median/p95 APE (%), share within +-5/10%; and of the held-out 1-d
    layers (is_1d) where the op type has them (ho_1d: count, median/p95 APE, share within +-10%)."""
    rows = []
    for op, p in profile["latency"]["calibration"]["per_op"].items():
        if p["source"] != "calibrated":
            rows.append({"op": op, "source": "estimate"})
            continue
        cv, ho = p["cv"], p["held_out"]
        rows.append({"op": op, "source": "calibrated", "fit": p["samples"], "held_out": p["held_out_samples"],
                     "cv_median_ape_pct": cv["median_ape_pct"], "cv_p95_ape_pct": cv["p95_ape_pct"],
                     "cv_within_10pct": cv["share_within_10pct"],
                     "ho_median_ape_pct": ho["median_ape_pct"], "ho_p95_ape_pct": ho["p95_ape_pct"],
                     "ho_within_5pct": ho["share_within_5pct"], "ho_within_10pct": ho["share_within_10pct"],
                     **({"ho_1d": p["held_out_1d"]["samples"], "ho_1d_median_ape_pct": p["held_out_1d"]["median_ape_pct"],
                         "ho_1d_p95_ape_pct": p["held_out_1d"]["p95_ape_pct"],
                         "ho_1d_within_10pct": p["held_out_1d"]["share_within_10pct"]} if "held_out_1d" in p else {})})
    return pd.DataFrame(rows)


class CalibrationResult(dict):
    """What `calibrate` returns: the board profile (this dict, as written to `out`) plus the held-out layers
    (`held`: predicted against measured cycles per layer), with the result methods of `Report` and `LabResult`."""

    def __init__(self, profile: dict, held: pd.DataFrame):
        super().__init__(profile)
        self.held = held

    def to_dict(self) -> dict:
        """The profile as a plain dict (what `load_board` reads)."""
        return dict(self)

    def to_json(self, path: Union[str, Path]) -> Path:
        """Write the profile as JSON at `path` (atomically); returns the path."""
        return write_json_atomic(Path(path), self.to_dict())

    def table(self) -> "rich.table.Table":
        """A rich Table of the latency model's accuracy per op (cross-validation and held-out layers)."""
        return accuracy_rich_table(self, self.held)

    def print(self, console: "rich.console.Console | None" = None) -> None:
        """Print `table()` on `console` (default: the library's)."""
        from lightning_mcuprune.console import console as make_console
        (console or make_console()).print(self.table())

    def plot(self, path: Union[str, Path]) -> Path:
        """PNG of predicted against measured cycles of the held-out layers; returns the path."""
        if not len(self.held):
            raise CalibrationError("no held-out layers to plot: calibrate with held_out >= 1")
        return plot(self.held, Path(path), f"{self['name']}: held-out layers, predicted vs measured")


def print_table(profile: dict, held: pd.DataFrame) -> None:
    """Print `accuracy_rich_table` on the library's console."""
    from lightning_mcuprune.console import console
    console().print(accuracy_rich_table(profile, held))


def accuracy_rich_table(profile: dict, held: pd.DataFrame) -> "rich.table.Table":
    """The latency model's accuracy per op (APE = absolute percentage error), and over all held-out layers."""
    from rich.table import Table
    t = Table(title=f"latency model of {profile['name']}: accuracy (APE = absolute percentage error)")
    for col in ("op", "fit", "held-out", "CV median", "CV p95", "CV ±10%", "HO median", "HO p95", "HO ±5%", "HO ±10%",
                "1-d HO (n, median, ±10%)"):
        t.add_column(col, justify="left" if col == "op" else "right")
    pct = lambda v: f"{v:.2f}%"  # noqa: E731
    share = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    for _, r in accuracy_table(profile).iterrows():
        if r["source"] != "calibrated":
            t.add_row(r["op"], "-", "-", "estimate", *["-"] * 7)
            continue
        one_d = (f"{int(r['ho_1d'])}, {pct(r['ho_1d_median_ape_pct'])}, {share(r['ho_1d_within_10pct'])}"
                 if "ho_1d" in r and pd.notna(r["ho_1d"]) else "-")
        t.add_row(r["op"], str(int(r["fit"])), str(int(r["held_out"])), pct(r["cv_median_ape_pct"]), pct(r["cv_p95_ape_pct"]),
                  share(r["cv_within_10pct"]), pct(r["ho_median_ape_pct"]), pct(r["ho_p95_ape_pct"]),
                  share(r["ho_within_5pct"]), share(r["ho_within_10pct"]), one_d)
    if len(held):
        e = errors(held["predicted"], held["cycles"])
        d = held[held["one_d"].astype(bool)] if "one_d" in held else held.iloc[:0]
        e1 = errors(d["predicted"], d["cycles"])
        t.add_row("all", "", str(e["samples"]), "", "", "", pct(e["median_ape_pct"]), pct(e["p95_ape_pct"]),
                  share(e["share_within_5pct"]), share(e["share_within_10pct"]),
                  f"{e1['samples']}, {pct(e1['median_ape_pct'])}, {share(e1['share_within_10pct'])}" if len(d) else "-",
                  style="bold")
    return t


def base_profile(name: str, base: Optional[str]) -> dict:
    """The profile whose non-latency fields (sizes, runtime, scratch, description) the result keeps."""
    if base:
        return load_board(base).to_dict()
    if name in builtin_boards():
        return load_board(name).to_dict()
    raise CalibrationError(f"board {name!r} has no built-in profile; give --base PROFILE.json with its sizes and runtime")


def calibrate(link: Union[Board, EmulatedBoard, None] = None, out: Optional[Path] = None,
              csv_path: Optional[Path] = None, plot_path: Optional[Path] = None,
              *, fit: int = DEFAULT_FIT, held_out: int = DEFAULT_HELD_OUT, seed: int = 0, repeats: int = 1, folds: int = 5,
              base: Optional[str] = None, ops: Sequence[str] = MEASURED_OPS, progress: bool = True, table: bool = True,
              board: Union[Board, EmulatedBoard, None] = None, png: Optional[Path] = None) -> "CalibrationResult":
    """Calibrate the board on an open device `link` (a hil.Board or EmulatedBoard): design, measure (resuming from
    csv_path), fit, write the profile (JSON, `out`) and the plot (PNG, `plot_path`). Returns a CalibrationResult
    (the profile dict with the held-out layers and the result methods).
    Defaults: CSV and PNG beside `out` with the same stem. Deprecated keywords: `board=` (use `link=`) and
    `png=` (use `plot_path=`). Raises CalibrationError for unusable measurements or arguments."""
    link = renamed_keyword("calibrate", "board", board, "link", link)
    plot_path = renamed_keyword("calibrate", "png", png, "plot_path", plot_path)
    if link is None or out is None:
        raise TypeError("calibrate() needs the device link and the output path `out`")
    board = link
    out = Path(out)
    csv_path = Path(csv_path) if csv_path else out.with_suffix(".csv")
    png = Path(plot_path) if plot_path else out.with_suffix(".png")
    info = dict(board.hello(), icount_shift=icount_shift_of(board))
    limits = Limits(info["arena_bytes"], info["weights_bytes"])
    design = make_design(limits, fit, held_out, seed, ops)
    prof0 = base_profile(info["board"], base)
    t0 = time.perf_counter()
    rows = measure(board, csv_path, design, repeats, progress)
    keys = {config_key(s) for _, s in design}
    rows = rows[rows["key"].isin(keys)]
    results, held = fit_all(rows, folds)
    prof = build_profile(prof0, info, results, repeats=repeats, csv_name=csv_path.name, folds=folds, held=held)
    load_board(prof)  # validate before writing
    write_json_atomic(out, prof)
    if len(held):
        plot(held, png, f"{info['board']}: held-out layers, predicted vs measured")
    if table:
        print_table(prof, held)
        print(f"profile {out}, measurements {csv_path}, plot {png} ({time.perf_counter() - t0:.0f} s)")
    return CalibrationResult(prof, held)


# ---- board selection and CLI --------------------------------------------------------------------------
def select_port(devices: list, port: Optional[str] = None) -> str:
    """The serial port to calibrate: `port` if given; else the only connected board; else a clear error."""
    if port:
        return port
    if not devices:
        raise CalibrationError("no board found on USB; connect one and give --port, or calibrate an emulated board "
                               "with --emulate mps2-an386")
    if len(devices) > 1:
        listing = "; ".join(f"{d.get('port')} ({d.get('board_type', 'unknown')})" for d in devices)
        raise CalibrationError(f"{len(devices)} boards connected: {listing}; choose one with --port")
    if not devices[0].get("port"):
        raise CalibrationError(f"the connected board {devices[0].get('board_type', 'unknown')} has no serial port; give --port")
    return devices[0]["port"]


def _cmd_calibrate(args) -> int:
    """The CLI: HIL errors (QEMU or toolchain missing, a bad --port, a board that does not answer) become one
    line (CalibrationError is a ValueError, which the CLI prints without a traceback; exit code 2)."""
    from lightning_mcuprune.hil.board import HILError
    try:
        return _calibrate_cli(args)
    except HILError as e:
        raise CalibrationError(str(e)) from e


def _calibrate_cli(args) -> int:
    if args.emulate and args.port:
        raise CalibrationError("give either --port or --emulate, not both")
    kw = dict(fit=args.fit, held_out=args.held_out, seed=args.seed, repeats=args.repeats, folds=args.folds,
              base=args.base, progress=not args.no_progress,
              ops=tuple(args.ops.split(",")) if args.ops else MEASURED_OPS)
    if args.emulate:
        from lightning_mcuprune.hil.emulated import EMULATED_BOARDS, EmulatedBoard
        if args.emulate not in EMULATED_BOARDS:
            raise CalibrationError(f"unknown emulated board {args.emulate!r}; emulated boards: {', '.join(EMULATED_BOARDS)}")
        out = Path(args.out or f"{args.emulate}.json")
        with EmulatedBoard(args.emulate) as board:
            calibrate(board, out, args.csv, args.plot, **kw)
        return 0
    from lightning_mcuprune.hil.board import Board
    devices = []
    if not args.port:
        from lightning_mcuprune.hil.devices import connected_boards
        devices = connected_boards()
    port = select_port(devices, args.port)
    board = Board(port)
    try:
        out = Path(args.out or f"{board.info['board'] or 'board'}.json")
        calibrate(board, out, args.csv, args.plot, **kw)
    finally:
        board.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `calibrate` subcommand to the `mcuprune` command line."""
    p = subparsers.add_parser("calibrate", help="measure a board's layer latencies and fit its latency model (profile JSON)")
    p.add_argument("--port", help="serial port of a connected board (default: the only connected board)")
    p.add_argument("--emulate", metavar="BOARD", help="calibrate an emulated board under QEMU (mps2-an386, mps2-an500)")
    p.add_argument("--out", help="profile JSON to write (default: BOARD.json); the CSV and PNG go beside it")
    p.add_argument("--csv", help="measurements CSV (default: OUT with .csv); an existing one is resumed")
    p.add_argument("--plot", help="PNG of predicted vs measured (default: OUT with .png)")
    p.add_argument("--base", help="profile whose sizes/runtime to keep (default: the board's built-in profile)")
    p.add_argument("--fit", type=int, default=DEFAULT_FIT, help=f"layers per op type to fit (default {DEFAULT_FIT})")
    p.add_argument("--held-out", type=int, default=DEFAULT_HELD_OUT, help=f"held-out layers per op type (default {DEFAULT_HELD_OUT})")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--repeats", type=int, default=1, help="runs per layer, minimum kept (default 1: QEMU is deterministic; use 3+ on silicon)")
    p.add_argument("--seed", type=int, default=0, help="design seed (default 0)")
    p.add_argument("--ops", help=f"comma-separated op types to measure (default all: {','.join(MEASURED_OPS)})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_calibrate)
