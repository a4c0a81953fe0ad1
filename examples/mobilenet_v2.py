"""MobileNetV2 (width 0.35: inverted residuals, depthwise convs, residual adds) on Fashion-MNIST, pruned while it
trains for the emulated Cortex-M4 board mps2-an386 under peak-SRAM and latency budgets.

Residual adds tie channels across blocks into one channel group (pruned together); the expansion layers of
the inverted residuals, which hold the activation peak, are pruned on their own. A short run by default.
Needs Debian's dataset-fashion-mnist.

Run: python examples/mobilenet_v2.py [--epochs 3 --train-subset 6000 --sram 24KiB --latency-ms 400]

Measured (2026-11-22, one seed, 6000 training images, 3 epochs, full 10k test set, ~90 s on a loaded 2-core
CPU; mps2-an386 latency from its calibrated profile): dense 45.9 KiB, 928 ms, 80.26 %; pruned under
24 KiB + 400 ms: 10.7 KiB, 398 ms (latency binds), 766,783 MACs, 74.32 %. The stem (28x28, the costliest
layer in time) keeps 3 of 16 channels and the first expansion 6 of 48; the late expansions stay whole.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

BOARD = "mps2-an386"
DEFAULT_BUDGETS = {"sram": "24KiB", "latency_ms": 400}   # dense: 45.9 KiB peak SRAM, 928 ms (calibrated profile)


def main(epochs: int = 3, train_subset: int = 6000, budgets: dict | None = None, min_channels: int = 1, batch_size: int = 128, lr: float = 3e-3,
         seed: int = 0, limit_train_batches: int | float | None = None, limit_test_batches: int | float | None = None,
         progress: bool = True, out: str = "runs/mobilenet_v2") -> dict:
    """Train and prune zoo.mobilenet_v2_tiny (width 0.35) on Fashion-MNIST for mps2-an386.

    `min_channels`: fewest channels any layer keeps (MCUPruneCallback's option).
    Returns {"test_acc": fraction of the (limited) 10k test set right, "report": the pruned network's
    `analyze` report, "budgets": bytes/ms, "callback", "wall_s": seconds}."""
    import lightning.pytorch as pl
    from rich.console import Console

    from lightning_mcuprune.examples import zoo
    from lightning_mcuprune.callback import MCUPruneCallback
    from lightning_mcuprune.examples.classifier import ImageClassifier
    from lightning_mcuprune.data.datasets import FashionMNISTDataModule

    console = Console()
    pl.seed_everything(seed, verbose=False)
    dm = FashionMNISTDataModule(batch_size=batch_size, train_subset=train_subset, val_size=5000, seed=seed)
    model = ImageClassifier(zoo.mobilenet_v2_tiny(num_classes=10, in_channels=1, width=0.35), lr=lr,
                            input_shape=(1, 28, 28))
    cb = MCUPruneCallback(BOARD, dict(DEFAULT_BUDGETS if budgets is None else budgets), module="net",
                          min_channels=min_channels)
    console.print(f"[bold]MobileNetV2-0.35[/] on Fashion-MNIST ({train_subset} training images, {epochs} epochs) pruned "
                  f"for [bold]{BOARD}[/] under {budgets or DEFAULT_BUDGETS}")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[cb], default_root_dir=out,
                         logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         limit_train_batches=limit_train_batches, limit_test_batches=limit_test_batches)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(model, datamodule=dm)
        acc = float(trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"])
    wall = time.perf_counter() - t
    if not cb.verbose:
        cb.print_summary()
    console.print(f"test accuracy of the pruned MobileNetV2-0.35: [bold]{acc:.2%}[/]; fit+test {wall:.0f} s")
    return {"test_acc": acc, "report": cb.report, "budgets": dict(cb.budgets), "callback": cb, "wall_s": wall}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-subset", type=int, default=6000, help="training images (of 60000)")
    p.add_argument("--sram", default=DEFAULT_BUDGETS["sram"], help="peak SRAM budget, e.g. 24KiB")
    p.add_argument("--latency-ms", type=float, default=DEFAULT_BUDGETS["latency_ms"], help="latency budget (ms)")
    p.add_argument("--min-channels", type=int, default=1, help="fewest channels any layer keeps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    main(epochs=a.epochs, train_subset=a.train_subset, budgets={"sram": a.sram, "latency_ms": a.latency_ms},
         seed=a.seed, min_channels=a.min_channels, progress=not a.no_progress)


if __name__ == "__main__":
    cli()
