"""`mcuprune demo`: the main job, end to end. The Fashion-MNIST reference CNN (Debian's
dataset-fashion-mnist) pruned while it trains for the emulated Cortex-M4 board (mps2-an386) under SRAM,
flash and latency budgets: a progress bar, the final tables, test accuracy, plots and the exported model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import time
import warnings
from pathlib import Path

if TYPE_CHECKING:
    import argparse

    from lightning_mcuprune.boards import BoardProfile

DEFAULT_BUDGETS = {"sram": "16KiB", "flash": "128KiB", "latency_ms": 1500}


def run_demo(out: "str | Path" = "runs/demo", board: "str | BoardProfile" = "mps2-an386",
             budgets: "dict | None" = None, epochs: int = 4, train_subset: int = 12000,
             batch_size: int = 128, seed: int = 0, progress: bool = True) -> dict:
    """Train and prune; returns test accuracy, the report and where the artefacts are."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from lightning_mcuprune.callback import MCUPruneCallback
    from lightning_mcuprune.examples.classifier import ImageClassifier
    from lightning_mcuprune.console import console as make_console
    from lightning_mcuprune.data.datasets import FashionMNISTDataModule
    from lightning_mcuprune.examples.zoo import ReferenceCNN

    console = make_console()
    budgets = dict(DEFAULT_BUDGETS if budgets is None else budgets)
    pl.seed_everything(seed, verbose=False)
    out = Path(out)
    data = FashionMNISTDataModule(batch_size=batch_size, train_subset=train_subset, seed=seed)
    model = ImageClassifier(ReferenceCNN(), lr=2e-3, input_shape=(1, 28, 28))
    cb = MCUPruneCallback(board, budgets)
    console.print(f"[bold]mcuprune demo[/]: reference CNN on Fashion-MNIST ({train_subset} training images, {epochs} epochs) "
                  f"pruned for [bold]{cb.board.name}[/] under {budgets}")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=out,
                         logger=CSVLogger(out, name="logs"), callbacks=[cb, ModelCheckpoint(save_last=True)] +
                         ([RichProgressBar()] if progress else []), enable_progress_bar=progress,
                         enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=10)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(model, datamodule=data)
        test = trainer.test(model, datamodule=data, verbose=False)[0]
    wall = time.perf_counter() - t0
    acc = float(test["test_acc"])
    console.print(f"test accuracy of the pruned network: [bold]{acc:.2%}[/] (full 10k test set); wall time {wall:.0f} s")
    console.print(f"artefacts (pruned_state.pt, model.tflite + C files, ONNX, report.json, plots) in [bold]{cb.export_dir}[/]")
    return {"test_acc": acc, "report": cb.report, "export_dir": cb.export_dir, "wall_s": wall, "callback": cb}


def _cmd_demo(args) -> int:
    budgets = dict(DEFAULT_BUDGETS)
    for key in ("sram", "flash"):
        if getattr(args, key):
            budgets[key] = getattr(args, key)
    if args.latency_ms:
        budgets["latency_ms"] = args.latency_ms
    run_demo(out=args.out, board=args.board, budgets=budgets, epochs=args.epochs, train_subset=args.train_subset,
             seed=args.seed, progress=not args.no_progress)
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser("demo", help="prune the Fashion-MNIST reference CNN for an emulated Cortex-M4 (the main job)")
    p.add_argument("--board", default="mps2-an386")
    p.add_argument("--sram", help=f"SRAM budget (default {DEFAULT_BUDGETS['sram']})")
    p.add_argument("--flash", help=f"flash budget (default {DEFAULT_BUDGETS['flash']})")
    p.add_argument("--latency-ms", type=float, help=f"latency budget in ms (default {DEFAULT_BUDGETS['latency_ms']})")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-subset", type=int, default=12000, help="training images used (of 60000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo", help="output folder (logs, checkpoint, ONNX, report, plots)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=_cmd_demo)
