"""Shared by the benchmark scripts: write a named section of BENCHMARKS.md atomically."""
from __future__ import annotations

import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import torch

from lightning_mcuprune.io import write_text_atomic

BENCH_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nMeasured figures, each section written by the script named in it. Re-run a script to refresh its section.\n"


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"


def append_csv_row(path: Path, fields: list, row: dict) -> None:
    """Append one finished run to a CSV (header on first write), flushed at once: runs are kept as they finish."""
    import csv
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()


def plain_trainer(epochs: int, callbacks=()):
    """The Trainer every benchmark run uses: CPU, no logger, checkpoints, progress bar or validation; deterministic."""
    import lightning.pytorch as pl
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=list(callbacks), logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0, deterministic=True)


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section `<!-- key -->...<!-- /key -->` in BENCHMARKS.md."""
    text = BENCH_MD.read_text() if BENCH_MD.exists() else HEADER
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = f"<!-- {key} -->\n{body.rstrip()}\n\n_Measured {stamp} on {machine()}._\n<!-- /{key} -->"
    pat = re.compile(rf"<!-- {re.escape(key)} -->.*?<!-- /{re.escape(key)} -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    write_text_atomic(BENCH_MD, text)
