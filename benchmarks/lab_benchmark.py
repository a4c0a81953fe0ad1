"""Lab benchmark: the int8 networks on both emulated boards, measured against the resource model.

Matrix: mps2-an386 and mps2-an500 x {ResNet-8 (width 0.5, 1x16x16), DS-CNN (width 0.25, 1x25x10),
MobileNetV2-tiny (width 0.35, 1x16x16)} x {dense, pruned by MCUPruneCallback to 50% and 25% of the dense
peak SRAM}. Plus Fashion-MNIST: the reference CNN pruned by the callback (sram 16KiB on mps2-an386), int8
accuracy on the full 10k test set (host executor) against float, and board predictions for N test images.

    python3 benchmarks/lab_benchmark.py [--fmnist-epochs 2] [--board-images 500] [--skip-fmnist]

Writes the `<!-- lab -->` section of BENCHMARKS.md, benchmarks/results/lab/*.json and PNGs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from benchmarks._common import write_section  # noqa: E402
from lightning_mcuprune.boards import load_board  # noqa: E402
from lightning_mcuprune.hil.emulated import EmulatedBoard  # noqa: E402
from lightning_mcuprune.hil.benchmark import benchmark  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "lab"
BOARDS = ("mps2-an386", "mps2-an500")
NETS = ("resnet8", "ds_cnn", "mobilenet_v2")
FRACS = (1.0, 0.5, 0.25)


def cache_dir() -> Path:
    """Per-user cache of the trained networks ($XDG_CACHE_HOME or ~/.cache, /lightning-mcuprune/lab_benchmark),
    private to the user; files in it are weights-only (read with torch.load(weights_only=True)), so a planted
    file cannot run code."""
    import os
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    d = base / "lightning-mcuprune" / "lab_benchmark"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def save_net(net, factory, shape, path: Path, **extra) -> None:
    """`net` (a pruned or dense instance of `factory()`) as a weights-only pruned_state file, plus `extra`
    tensors/numbers beside it."""
    from lightning_mcuprune.export import save_pruned_state
    from lightning_mcuprune.io import atomic_path
    from lightning_mcuprune.pruning.plan import make_plan
    example = torch.zeros(1, *shape)
    plan = make_plan(factory(), example)
    present = [torch.arange(net.get_submodule(p).weight.shape[0]) for p in plan.producers]  # widths; weights follow
    save_pruned_state(net, path, module=None, example_shape=example.shape, signature=plan.signature(), present=present)
    with atomic_path(path.with_suffix(".extra.pt")) as tmp:
        torch.save(extra, tmp)


def load_net(factory, path: Path):
    """(network, extra) saved by save_net, or None if not cached; nothing is unpickled."""
    from lightning_mcuprune.export import load_pruned
    extra_path = path.with_suffix(".extra.pt")
    if not (path.is_file() and extra_path.is_file()):
        return None
    return load_pruned(factory(), path), torch.load(extra_path, weights_only=True)


def matrix(rows: list) -> None:
    from lab_nets import NETS, make_net
    nets = {}
    for name in NETS:
        for frac in FRACS:
            factory, shape = NETS[name]
            path = cache_dir() / f"{name}_{frac}.pt"
            cached = load_net(factory, path)
            if cached is not None:
                nets[(name, frac)] = (cached[0], shape, cached[1]["calib"])
                continue
            t = time.time()
            nets[(name, frac)] = make_net(name, "mps2-an386", frac, steps=16)
            print(f"built {name} {frac}: {time.time() - t:.0f} s", flush=True)
            save_net(nets[(name, frac)][0], factory, shape, path, calib=nets[(name, frac)][2])
    for board in BOARDS:
        prof = load_board(board)
        with EmulatedBoard(board) as b:
            for name in NETS:
                for frac in FRACS:
                    net, shape, calib = nets[(name, frac)]
                    tag = f"{board}_{name}_{'dense' if frac == 1 else f'sram{int(frac * 100)}'}"
                    res = benchmark(net, calib[:1], calib, link=b, board_samples=4, json_path=OUT / f"{tag}.json",
                                    plot_path=OUT / f"{tag}.png")
                    s = res.summary
                    rows.append({**s, "board": board, "net": name,
                                 "variant": "dense" if frac == 1 else f"{int(frac * 100)}% SRAM",
                                 "profile": f"{prof.name} ({prof.latency_source})"})
                    print(tag, {k: s.get(k) for k in ("bit_exact", "layers_bit_exact", "layers", "arena_high_water",
                                                      "predicted_peak_sram", "latency_error_pct", "layers_within_10pct")},
                          flush=True)


def fmnist(epochs: int, board_images: int) -> dict:
    import lightning.pytorch as pl

    from lightning_mcuprune.callback import MCUPruneCallback
    from lightning_mcuprune.examples.classifier import ImageClassifier
    from lightning_mcuprune.data.datasets import FashionMNISTDataModule, load_fashion_mnist, to_tensors
    from lightning_mcuprune.examples.zoo import ReferenceCNN
    pl.seed_everything(0, verbose=False)
    data = FashionMNISTDataModule(batch_size=128, train_subset=12000, seed=0)
    model = ImageClassifier(ReferenceCNN(), lr=2e-3, input_shape=(1, 28, 28))
    cb = MCUPruneCallback("mps2-an386", {"sram": "16KiB"}, verbose=False, export=False)
    path = cache_dir() / f"fmnist_e{epochs}.pt"
    cached = load_net(ReferenceCNN, path)
    if cached is not None:
        net, train_s = cached[0], float(cached[1]["train_s"])
    else:
        t = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[cb], logger=False,
                       enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                       num_sanity_val_steps=0).fit(model, datamodule=data)
        train_s = time.time() - t
        net = model.net
        save_net(net, ReferenceCNN, (1, 28, 28), path, train_s=train_s)
    net = net.eval()
    xtr, _ = to_tensors(*load_fashion_mnist("train"))
    xte, yte = to_tensors(*load_fashion_mnist("test"))
    g = torch.Generator().manual_seed(0)
    calib = xtr[torch.randperm(len(xtr), generator=g)[:256]]
    with EmulatedBoard("mps2-an386") as b:
        res = benchmark(net, xte[:1], calib, link=b, test_data=(xte, yte.numpy()), board_samples=board_images,
                        json_path=OUT / "fmnist_reference_cnn.json", plot_path=OUT / "fmnist_reference_cnn.png")
    s = res.summary
    s["train_s"] = round(train_s, 1)
    s["epochs"] = epochs
    s["channels"] = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    print("fmnist", {k: s.get(k) for k in ("accuracy_float", "accuracy_int8", "top1_agreement", "board_samples",
                                            "board_same_predictions", "board_bit_exact_samples", "predicted_peak_sram",
                                            "arena_high_water", "latency_error_pct")}, flush=True)
    return s


def section(rows: list, fm: dict | None) -> str:
    lines = ["## Lab benchmark: int8 networks on the emulated boards, measured against predicted", "",
             "`python3 benchmarks/lab_benchmark.py`. Networks: ResNet-8 (width 0.5, 1x16x16), DS-CNN (width 0.25, "
             "1x25x10), MobileNetV2-tiny (width 0.35, 1x16x16), each dense and pruned by `MCUPruneCallback` (16 steps on "
             "random data, budget = 50% / 25% of the dense peak SRAM, pruned once with the mps2-an386 profile and run on "
             "both boards). Predicted = `ResourceModel` with the built-in board profile (latency source in the table). "
             "Bit-exact = board output equals the host int8 executor; layers = per-layer outputs read back after each op. "
             "Image = firmware.bin + weights store bytes written; predicted flash = the flash resource model "
             "(its runtime term is the profile's 32 KiB estimate; the firmware image is ~7.5 KiB).", "",
             "| board | net | variant | profile | bit-exact (layers) | arena high-water / predicted peak (B) | "
             "latency meas / pred (ms) | error | layers within ±10% | stack used / runtime SRAM (B) | image / predicted flash (B) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['board']} | {r['net']} | {r['variant']} | {r['profile']} | {r['bit_exact']} ({r['layers_bit_exact']}/{r['layers']}) "
            f"| {r['arena_high_water']} / {r['predicted_peak_sram']} | {r['measured_ms']:.2f} / {r['predicted_ms']:.2f} | "
            f"{r['latency_error_pct']:+.2f}% | {r['layers_within_10pct']}/{r['layers']} | {r['stack_used']} / "
            f"{r['predicted_runtime_sram']} | {r.get('image_bytes')} / {r['predicted_flash']} |")
    if rows:
        n = len(rows)
        lines += ["", f"Summary over {n} runs: bit-exact {sum(r['bit_exact'] for r in rows)}/{n}; high-water = predicted "
                  f"peak {sum(r['arena_high_water'] == r['predicted_peak_sram'] for r in rows)}/{n}; total latency within "
                  f"±5% {sum(abs(r['latency_error_pct']) <= 5 for r in rows)}/{n} (worst {max(abs(r['latency_error_pct']) for r in rows):.2f}%); "
                  f"layers within ±10% {sum(r['layers_within_10pct'] for r in rows)}/{sum(r['layers'] for r in rows)}."]
    if fm:
        lines += ["", "### Fashion-MNIST: reference CNN pruned by the callback (sram 16KiB, mps2-an386)", "",
                  f"{fm['epochs']} epochs on 12,000 training images ({fm['train_s']:.0f} s); channels after pruning "
                  f"{fm['channels']}; calibration: 256 training images.", "",
                  "| float accuracy | int8 accuracy (host executor) | difference | int8/float top-1 agreement | "
                  "board = host predictions | board bit-exact | peak SRAM pred / high-water | latency meas / pred (ms) |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| {fm['accuracy_float']:.4f} | {fm['accuracy_int8']:.4f} | "
                  f"{(fm['accuracy_int8'] - fm['accuracy_float']) * 100:+.2f} pp | {fm['top1_agreement']:.4f} "
                  f"(10,000) | {fm['board_same_predictions']}/{fm['board_samples']} | {fm['board_bit_exact_samples']}/"
                  f"{fm['board_samples']} | {fm['predicted_peak_sram']} / {fm['arena_high_water']} | "
                  f"{fm['measured_ms']:.2f} / {fm['predicted_ms']:.2f} |"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fmnist-epochs", type=int, default=2)
    ap.add_argument("--board-images", type=int, default=500)
    ap.add_argument("--skip-fmnist", action="store_true")
    ap.add_argument("--skip-matrix", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    rows: list = []
    if not a.skip_matrix:
        matrix(rows)
        (OUT / "matrix.json").write_text(json.dumps(rows, indent=1, default=str))
    elif (OUT / "matrix.json").exists():
        rows = json.loads((OUT / "matrix.json").read_text())
    fm = None
    if not a.skip_fmnist:
        fm = fmnist(a.fmnist_epochs, a.board_images)
        (OUT / "fmnist.json").write_text(json.dumps(fm, indent=1, default=str))
    elif (OUT / "fmnist.json").exists():
        fm = json.loads((OUT / "fmnist.json").read_text())
    write_section("lab", section(rows, fm))


if __name__ == "__main__":
    main()
