"""`mcuprune export (PKG.MODULE:CALLABLE [--checkpoint CKPT] | EXPORT_DIR --network CALLABLE) --format tflite|c --out DIR
--calib-data DATA`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import argparse


def load_calib(spec: str | None, shape: tuple) -> torch.Tensor:
    """Calibration inputs from a .npy/.pt file of float inputs [N, C, H, W], or 'fashion-mnist'."""
    if not spec:
        raise ValueError("int8 export needs calibration data: pass --calib-data FILE.npy|FILE.pt (a few hundred training "
                         "inputs, float [N, C, H, W]) or --calib-data fashion-mnist")
    if spec == "fashion-mnist":
        from lightning_mcuprune.data.datasets import load_fashion_mnist, to_tensors
        return to_tensors(*load_fashion_mnist("train"))[0][:256]
    p = Path(spec)
    if not p.is_file():
        raise ValueError(f"--calib-data {spec!r}: no such file (give a .npy or .pt of float inputs, or fashion-mnist)")
    x = torch.as_tensor(np.load(p)) if p.suffix == ".npy" else torch.load(p, map_location="cpu", weights_only=True)
    x = torch.as_tensor(x).float()
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"--calib-data {spec!r}: inputs of shape {tuple(x.shape[1:])}, the network takes {tuple(shape)}")
    return x


def _cmd(args) -> int:
    from lightning_mcuprune.deploy import export_tflite
    from lightning_mcuprune.cli_helpers import load_export, load_model, parse_shape
    shape = parse_shape(args.input_shape) if args.input_shape else None
    if Path(args.model).is_dir():
        net, saved = load_export(Path(args.model), args.network, args.unsafe_pickle)
        shape = shape or saved
    else:   # a network factory, pruned by --checkpoint if given
        net = load_model(args.model, args.checkpoint)
    if not shape:
        raise ValueError("--input-shape C,H,W is required (the export directory's report.json gives it otherwise)")
    net.eval()
    calib = load_calib(args.calib_data, shape)
    out = Path(args.out)
    res = export_tflite(net, torch.zeros(1, *shape), calib, out / "model.tflite" if args.format == "tflite" else None,
                        order=args.order, c_dir=out if args.format == "c" else None)
    for name, path in res.paths.items():
        print(f"wrote {path}")
    print(f"model {len(res.data)} B; TFLM arena {res.host.total} B predicted (64-bit host build), "
          f"{res.cortex_m.total} B estimated for a 32-bit Cortex-M")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand to the `mcuprune` command line."""
    p = subparsers.add_parser("export", help="write the (pruned) network as an int8 .tflite or C arrays for TFLite Micro")
    p.add_argument("model", help="the export directory MCUPruneCallback wrote, or PKG.MODULE:CALLABLE building the "
                                 "network (with --checkpoint for a pruned run)")
    p.add_argument("--checkpoint", help="Lightning checkpoint of an MCUPruneCallback run (rebuilt with load_pruned)")
    p.add_argument("--network", help="with an export directory: PKG.MODULE:CALLABLE building the dense network, to which "
                                     "the directory's pruned_state.pt is applied (weights-only, nothing in it runs)")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="with an export directory: load its model.pt instead (a pickle: loading it runs code)")
    p.add_argument("--format", choices=("tflite", "c"), default="tflite",
                   help="tflite: model.tflite; c: model_data.h/.cc and model_ops.h")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--calib-data", help="calibration inputs: FILE.npy or FILE.pt (float [N, C, H, W]) or fashion-mnist")
    p.add_argument("--input-shape", help="C,H,W of one input (default: from the export directory)")
    p.add_argument("--order", choices=("traced", "optimal"), default="traced", help="op order written into the model")
    p.set_defaults(func=_cmd)
