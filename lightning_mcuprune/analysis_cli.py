"""`mcuprune analyze PKG.MODULE:CALLABLE [--input-shape 1,28,28] [--board B] ...`: lightning_mcuprune.analyze on the
command line (the report as tables, JSON and PNG)."""
from __future__ import annotations

import argparse

import torch

from lightning_mcuprune.analysis import analyze
from lightning_mcuprune.cli_helpers import build_module, load_callable, parse_shape


def _cmd_analyze(args: argparse.Namespace) -> int:
    from lightning_mcuprune.console import console as cli_console
    factory = load_callable(args.model)
    model = build_module(args.model)
    if args.input_shape:
        shape = parse_shape(args.input_shape)
    else:
        shape = getattr(factory, "input_shape", None)   # a factory may name its input (the zoo's do)
        if shape is None:
            raise ValueError("--input-shape is required (the input without the batch, e.g. 1,28,28)")
    model.eval()
    from lightning_mcuprune.resources.order import OrderSearchTooLargeError
    try:
        rep = analyze(model, torch.zeros(1, *shape), board=args.board, order=args.order, runtime=args.runtime)
    except OrderSearchTooLargeError as e:
        raise ValueError(f"{e} (--order traced)") from None
    console = cli_console()
    rep.print(console)
    if args.plot:
        rep.plot_memory(args.plot)
        console.print(f"memory profile written to {args.plot}")
    if args.json:
        rep.to_json(args.json)
        console.print(f"report written to {args.json}")
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser("analyze", help="resources of a network on a board (MACs, flash, peak SRAM, latency)")
    p.add_argument("model", help="PKG.MODULE:CALLABLE returning an nn.Module, e.g. lightning_mcuprune.examples.zoo:ds_cnn")
    p.add_argument("--input-shape", help="input without the batch, e.g. 1,28,28 (default for zoo models: their own)")
    p.add_argument("--board", default="mps2-an386", help="built-in board name or profile JSON (default mps2-an386)")
    p.add_argument("--order", choices=("traced", "optimal"), default="traced", help="execution order for peak SRAM")
    p.add_argument("--runtime", choices=("mcuprune-firmware", "tflm"), default="mcuprune-firmware",
                   help="where the network runs: our HIL firmware (default) or TensorFlow Lite Micro")
    p.add_argument("--plot", help="write the memory profile as PNG here")
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(func=_cmd_analyze)
