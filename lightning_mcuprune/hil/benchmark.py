"""Lab benchmark: the (pruned) int8 network on a board, measured against the resource model's prediction.

``benchmark(model, example_input, calib_data, emulate="mps2-an386" | port="/dev/ttyACM0")`` quantises the
network (`lightning_mcuprune.quantize`), plans the arena from the resource model's execution order and
liveness, streams weights and input to the board, runs it op by op, and reports per layer and in total:
measured against predicted cycles/ms, arena high-water mark against the predicted activation peak, stack use
against the profile's runtime SRAM, image bytes against predicted flash, board output against the host int8
executor (bit-exact) and int8 against float (top-1 agreement; accuracy with labelled test data).

CLI: ``mcuprune benchmark PKG.MODULE:CALLABLE --checkpoint CKPT --input-shape 1,28,28 --emulate mps2-an386``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

import numpy as np
import pandas as pd
import torch

from lightning_mcuprune._compat import renamed_keyword
from lightning_mcuprune.boards import load_board
from lightning_mcuprune.errors import CHECK_FAILED_EXIT_CODE, USER_ERROR_EXIT_CODE
from lightning_mcuprune.graph import trace_graph
from lightning_mcuprune.hil.board import HILError
from lightning_mcuprune.hil.deploy import (BoardRun, DeployError, build_deployment, firmware_bytes, run_on_board,
                                           upload)
from lightning_mcuprune.io import save_figure
from lightning_mcuprune.quantize.ptq import QuantizedGraph, quantize
from lightning_mcuprune.resources import ResourceModel

if TYPE_CHECKING:
    import argparse

    from rich.console import Console
    from rich.table import Table

    from lightning_mcuprune.boards import BoardProfile
    from lightning_mcuprune.hil.board import Board
    from lightning_mcuprune.hil.emulated import EmulatedBoard


class BoardLostError(HILError):
    """The board stopped answering mid-run; ``.result`` keeps the per-layer results measured so far."""

    def __init__(self, message: str, result: "LabResult"):
        super().__init__(message)
        self.result = result


@dataclass
class LabResult:
    layers: pd.DataFrame
    summary: dict
    complete: bool = True
    error: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        rows = json.loads(self.layers.to_json(orient="records"))
        return {"complete": self.complete, "error": self.error, "summary": _jsonable(self.summary), "layers": rows}

    def to_json(self, path: Union[str, Path]) -> Path:
        """Write `to_dict()` as JSON at `path` (atomically); returns the path."""
        from lightning_mcuprune.io import write_json_atomic
        return write_json_atomic(Path(path), self.to_dict())

    def table(self) -> tuple[Table, Table]:
        """A rich Table per layer and a summary Table."""
        from rich.table import Table
        s = self.summary
        t = Table(title=f"Lab benchmark on {s['board']} (profile latency: {s['latency_source']})")
        for c in ("#", "layer", "op", "MACs", "pred cyc", "meas cyc", "err %", "meas ms", "bit-exact"):
            t.add_column(c, justify="right" if c not in ("layer", "op") else "left")
        for r in self.layers.itertuples():
            t.add_row(str(r.index), str(r.label), r.type, f"{r.macs:,}", f"{r.predicted_cycles:,.0f}",
                      "-" if pd.isna(r.measured_cycles) else f"{r.measured_cycles:,.0f}",
                      "-" if pd.isna(r.error_pct) else f"{r.error_pct:+.1f}",
                      "-" if pd.isna(r.measured_ms) else f"{r.measured_ms:.3f}",
                      {True: "yes", False: "NO"}.get(r.bit_exact, "-"))
        u = Table(title="Whole network: measured vs predicted")
        u.add_column("quantity"); u.add_column("measured", justify="right"); u.add_column("predicted", justify="right")
        u.add_column("diff", justify="right")

        def row(name, m, p, unit=""):
            if m is None or p is None:
                u.add_row(name, "-" if m is None else f"{m:,.4g}{unit}", "-" if p is None else f"{p:,.4g}{unit}", "")
            else:
                u.add_row(name, f"{m:,.6g}{unit}", f"{p:,.6g}{unit}", f"{(m - p) / p * 100 if p else 0:+.1f}%")
        row("latency (cycles)", s.get("measured_cycles"), s["predicted_cycles"])
        row("latency (ms)", s.get("measured_ms"), s["predicted_ms"])
        row("arena high-water (B)", s.get("arena_high_water"), s["predicted_peak_sram"])
        row("stack used (B) / runtime SRAM", s.get("stack_used"), s["predicted_runtime_sram"])
        row("image = firmware + weights (B)", s.get("image_bytes"), s["predicted_flash"])
        u.add_row("layers within ±10%", f"{s.get('layers_within_10pct', 0)}/{s['layers']}", "", "")
        u.add_row("board output bit-exact", str(s.get("bit_exact")), "", f"{s.get('layers_bit_exact', 0)}/{s['layers']} layers")
        if s.get("top1_agreement") is not None:
            u.add_row("int8 vs float top-1 agreement", f"{s['top1_agreement']:.4f}", "", f"n={s['agreement_samples']}")
        if s.get("accuracy_int8") is not None:
            u.add_row("accuracy int8 / float", f"{s['accuracy_int8']:.4f}", f"{s['accuracy_float']:.4f}", "")
        if s.get("board_samples"):
            u.add_row("board = host predictions", f"{s['board_same_predictions']}/{s['board_samples']}", "",
                      f"{s['board_bit_exact_samples']} bit-exact")
        return t, u

    def print(self, console: Optional[Console] = None) -> None:
        """Print the per-layer and summary tables (and what is incomplete) on `console` (default: the library's)."""
        from lightning_mcuprune.console import console as make_console
        console = console or make_console()
        for t in self.table():
            console.print(t)
        if not self.complete:
            console.print(f"[red]incomplete: {self.error}[/red]")

    def plot(self, path: Union[str, Path]) -> Path:
        """PNG: measured against predicted cycles per layer (and the ratio)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        d = self.layers
        fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
        x = np.arange(len(d))
        ax[0].bar(x - 0.2, d.predicted_cycles, 0.4, label="predicted")
        ax[0].bar(x + 0.2, d.measured_cycles.fillna(0), 0.4, label="measured")
        ax[0].set_xticks(x, [f"{i} {t}" for i, t in zip(d["index"], d.type)], rotation=90, fontsize=7)
        ax[0].set_ylabel("cycles"); ax[0].legend(); ax[0].set_title(f"per layer on {self.summary['board']}")
        ratio = d.measured_cycles / d.predicted_cycles
        ax[1].scatter(d.predicted_cycles, d.measured_cycles)
        lim = [1, max(d.predicted_cycles.max(), d.measured_cycles.max(skipna=True) or 1) * 1.2]
        ax[1].plot(lim, lim, "k--", lw=1); ax[1].fill_between(lim, [v * 0.9 for v in lim], [v * 1.1 for v in lim], alpha=0.2)
        ax[1].set_xscale("log"); ax[1].set_yscale("log"); ax[1].set_xlabel("predicted cycles"); ax[1].set_ylabel("measured cycles")
        ax[1].set_title(f"total {self.summary.get('latency_error_pct', float('nan')):+.1f}%, "
                        f"{int((ratio.sub(1).abs() <= 0.1).sum())}/{len(d)} layers within ±10%")
        fig.tight_layout()
        return save_figure(fig, path)


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _xy(data):
    """(x, y or None) from a tensor, a (x, y) pair, a Dataset or a DataLoader."""
    if data is None:
        return None, None
    if isinstance(data, torch.Tensor):
        return data.float(), None
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data[0].float(), data[1]
    xs, ys = [], []
    for item in data:
        if isinstance(item, (tuple, list)):
            xs.append(torch.as_tensor(item[0]).float()); ys.append(torch.as_tensor(item[1]))
        else:
            xs.append(torch.as_tensor(item).float())
    x = torch.cat(xs) if xs[0].dim() > 3 or len(xs[0].shape) == len(xs[-1].shape) and xs[0].dim() == 4 else torch.stack(xs)
    y = (torch.cat(ys) if ys[0].dim() else torch.stack(ys)) if ys else None
    return x, y


def _link_and_profile(link, board, profile):
    """(device link, board profile) from benchmark's arguments, mapping the deprecated spellings."""
    import warnings
    if board is not None and hasattr(board, "hello"):   # an open device link passed as board= (old name)
        warnings.warn("benchmark(board=<open Board>) is deprecated: pass the device as link=; board= names the "
                      "board profile, as everywhere in the library", DeprecationWarning, stacklevel=3)
        if link is not None:
            raise ValueError("give the device once: link=")
        link, board = board, None
    return link, renamed_keyword("benchmark", "profile", profile, "board", board)


def benchmark(model: torch.nn.Module, example_input: torch.Tensor, calib_data: Union[torch.Tensor, Iterable],
              port: Optional[str] = None, emulate: Optional[str] = None,
              board: Union[str, Path, BoardProfile, Board, EmulatedBoard, None] = None,
              profile: Union[str, Path, BoardProfile, None] = None, test_data: Any = None, board_samples: int = 0,
              order: str = "traced", read_layers: bool = True, json_path: Union[str, Path, None] = None,
              plot_path: Union[str, Path, None] = None, console: Optional[Console] = None,
              qgraph: Optional[QuantizedGraph] = None, *, link: Union[Board, EmulatedBoard, None] = None) -> LabResult:
    """Quantise `model`, run it on a board, compare with the resource model. See the module docstring.

    The device: `emulate="mps2-an386"|"mps2-an500"` (QEMU), `port="/dev/ttyACM0"`, or an open device `link`
    (a hil.Board or EmulatedBoard). `board`: the board profile for the prediction (a built-in name, a JSON path
    or a BoardProfile; default: the connected board's), as `board` means everywhere in the library.
    Deprecated: `board=` given an open device link (use `link=`), and `profile=` (use `board=`). `test_data`: labelled data
    (x, y) or a DataLoader for accuracy and int8-vs-float agreement (else `calib_data` gives agreement);
    `board_samples`: that many test inputs also run on the board (predictions compared with the host).
    Raises DeployError (before anything is sent) if the model does not fit, UnsupportedOnBoardError for an
    op the firmware lacks, BoardLostError (with `.result`, partial) if the board goes away mid-run.
    """
    link, profile = _link_and_profile(link, board, profile)
    if sum(v is not None for v in (port, emulate, link)) != 1:
        raise ValueError("give exactly one of port=, emulate= or link=")
    example_input = example_input[:1].float()
    model = model.eval()
    graph = trace_graph(model, example_input)
    q = qgraph or quantize(model, example_input, calib_data, graph=graph)
    prof_name = profile or emulate or (link.info or {}).get("board") if (profile or emulate or link) else None
    prof = load_board(prof_name) if prof_name else None
    dep = build_deployment(q)
    if prof is not None:
        dep.check_fits(prof.sram_available, prof.flash_available, prof.name)

    def run(b) -> LabResult:
        nonlocal prof
        info = b.info or b.hello()
        if prof is None:
            prof = load_board(profile or info["board"])
        dep.check_fits(info["arena_bytes"], info["weights_bytes"], info["board"])   # before anything is sent
        return _measure(b, model, example_input, calib_data, q, dep, prof, test_data, board_samples, read_layers,
                        order, json_path)

    if link is not None:
        res = run(link)
    elif emulate is not None:
        from lightning_mcuprune.hil.emulated import EmulatedBoard
        with EmulatedBoard(emulate) as b:
            res = run(b)
    else:
        from lightning_mcuprune.hil.board import Board
        with Board(port) as b:
            res = run(b)
    if json_path:
        res.to_json(json_path)
    if plot_path:
        res.plot(plot_path)
    if console is not None:
        res.print(console)
    return res


def _measure(b, model, example_input, calib_data, q, dep, prof, test_data, board_samples, read_layers, order,
             json_path) -> LabResult:
    graph = q.graph
    rm = ResourceModel(graph, prof, order=order)
    r = rm.evaluate(graph.dense_counts)
    op_cycles = r.op_cycles.detach().numpy()
    ws = r.working_set.detach().numpy()
    summary = dict(board=(b.info or {}).get("board", prof.name), profile=prof.name, latency_source=prof.latency_source,
                   clock_hz=prof.clock_hz, layers=len(q.ops), predicted_cycles=float(op_cycles.sum()),
                   predicted_ms=float(r.latency_ms), predicted_peak_sram=int(round(float(r.peak_sram_bytes))),
                   arena_plan=dep.plan.method, arena_plan_bytes=dep.plan.arena_bytes,
                   predicted_runtime_sram=prof.runtime_sram_bytes, predicted_flash=int(round(float(r.flash_bytes))),
                   weights_bytes=dep.weights_bytes, firmware_bytes=firmware_bytes(prof.name),
                   predicted_runtime_flash=prof.runtime_flash_bytes)
    if summary["firmware_bytes"] is not None:
        summary["image_bytes"] = summary["firmware_bytes"] + dep.weights_bytes
    # host reference and float comparison
    xq = q.quantize_input(example_input)
    host = q.run(xq, keep=True)
    x_eval, y_eval = _xy(test_data) if test_data is not None else _xy(calib_data)
    if x_eval is not None:
        with torch.no_grad():
            f = torch.cat([model(x_eval[i:i + 500]) for i in range(0, len(x_eval), 500)]).numpy()
        iq = q.predict(x_eval)
        summary.update(top1_agreement=float((f.argmax(1) == iq.argmax(1)).mean()), agreement_samples=len(x_eval))
        if y_eval is not None and test_data is not None:
            y = np.asarray(y_eval)
            summary.update(accuracy_float=float((f.argmax(1) == y).mean()), accuracy_int8=float((iq.argmax(1) == y).mean()))
    run = BoardRun()
    error = None
    t0 = time.monotonic()
    try:
        run.upload_s = upload(b, dep)
        run_on_board(b, dep, xq[0], read_layers=read_layers, result=run)
        st = b.get_stats()
        summary.update(arena_high_water=st["arena_high_water"], stack_used=st["stack_used"],
                       stack_bytes=st["stack_bytes"], weights_high_water=st["weights_high_water"])
        if board_samples and x_eval is not None:
            n = min(int(board_samples), len(x_eval))
            xs = q.quantize_input(x_eval[:n])
            want = q.run(xs).reshape(n, -1)
            same = exact = 0
            for i in range(n):
                got = run_on_board(b, dep, xs[i], read_layers=False).output.reshape(-1)
                exact += bool(np.array_equal(got, want[i]))
                same += int(got.argmax() == want[i].argmax())
            summary.update(board_samples=n, board_same_predictions=same, board_bit_exact_samples=exact)
    except HILError as e:
        error = f"board lost after {len(run.cycles)} of {len(q.ops)} layers: {type(e).__name__}: {e}"
    summary["board_seconds"] = round(time.monotonic() - t0, 2)
    rows = []
    order_idx = dep.order
    for k, i in enumerate(order_idx):
        op = q.ops[i]
        meas = run.cycles[k] if k < len(run.cycles) else np.nan
        out = run.outputs[k] if k < len(run.outputs) else None
        exact = None if out is None else bool(np.array_equal(out, host[op.output][0].reshape(out.shape)))
        rows.append(dict(index=k, name=op.name, label=op.label, type=op.type, macs=int(op.spec.macs),
                         predicted_cycles=float(op_cycles[i]), measured_cycles=meas,
                         error_pct=(meas - op_cycles[i]) / op_cycles[i] * 100 if op_cycles[i] else np.nan,
                         predicted_ms=prof.cycles_to_ms(float(op_cycles[i])), measured_ms=prof.cycles_to_ms(meas),
                         working_set_bytes=int(round(float(ws[i]))), output_offset=dep.plan.offsets[op.output],
                         output_bytes=dep.plan.sizes[op.output], bit_exact=exact))
    layers = pd.DataFrame(rows)
    done = layers.measured_cycles.notna()
    if done.any():
        mc = float(layers.measured_cycles[done].sum())
        pc = float(layers.predicted_cycles[done].sum())
        summary.update(measured_cycles=mc, measured_ms=prof.cycles_to_ms(mc),
                       latency_error_pct=(mc - pc) / pc * 100 if pc else float("nan"),
                       layers_within_10pct=int((layers.error_pct[done].abs() <= 10).sum()),
                       layers_measured=int(done.sum()))
    if read_layers:
        summary["layers_bit_exact"] = int(sum(v is True for v in layers.bit_exact))
    if run.output is not None:
        summary["bit_exact"] = bool(np.array_equal(run.output.reshape(-1), host[q.output][0].reshape(-1)))
    if "arena_high_water" in summary:
        summary["arena_matches_peak"] = summary["arena_high_water"] == summary["predicted_peak_sram"]
    res = LabResult(layers, summary, complete=error is None, error=error)
    if error is not None:
        if json_path:
            res.to_json(json_path)
        raise BoardLostError(error + " (partial per-layer results in .result" +
                             (f" and {json_path}" if json_path else "") + ")", res)
    return res


# ---- CLI ------------------------------------------------------------------------------------------
def _cmd(args) -> int:
    from lightning_mcuprune.cli_helpers import load_export, load_model, parse_shape
    from lightning_mcuprune.console import console as make_console
    console = make_console()
    try:
        net = load_model(args.model, args.checkpoint, args.network, args.unsafe_pickle)
    except (ValueError, ImportError, AttributeError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}")
        return USER_ERROR_EXIT_CODE
    shape = parse_shape(args.input_shape)
    if Path(args.model).is_dir() and args.input_shape == "1,28,28":
        shape = load_export(Path(args.model), args.network, args.unsafe_pickle)[1] or shape
    example = torch.zeros(1, *shape)
    test = None
    if args.test_data == "fashion-mnist":
        from lightning_mcuprune.data.datasets import load_fashion_mnist, to_tensors
        xtr, _ = to_tensors(*load_fashion_mnist("train"))
        xte, yte = to_tensors(*load_fashion_mnist("test"))
        calib, test = xtr[:256], (xte, yte)
    else:
        torch.manual_seed(0)
        calib = torch.randn(64, *shape)
    if args.runtime == "tflm":   # TensorFlow Lite Micro's own interpreter on the host: outputs and arena
        from lightning_mcuprune.deploy import export_tflite
        from lightning_mcuprune.deploy.tflm import check
        try:
            res = export_tflite(net.eval(), example, calib, order=args.order)
            n = 100
            inputs = test[0][:n] if test is not None else torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))
            r = check(res.qgraph, res.data, inputs)
        except (ValueError, ImportError) as e:
            console.print(f"[red]error:[/red] {e}")
            return USER_ERROR_EXIT_CODE
        console.print(f"TFLite Micro (host interpreter, tflite-micro): {r.samples - r.mismatched_samples}/{r.samples} "
                      f"outputs bit-exact with the host int8 executor (max |diff| {r.max_abs_diff})")
        console.print(f"arena: measured {r.measured_arena_bytes} B (smallest that runs, 64-bit host build), predicted "
                      f"{res.host.total} B; 32-bit Cortex-M estimate {res.cortex_m.total} B; model {len(res.data)} B")
        if args.json:
            from lightning_mcuprune.io import write_json_atomic
            write_json_atomic(args.json, {"runtime": "tflm", "samples": r.samples, "bit_exact": r.bit_exact,
                                          "mismatched_samples": r.mismatched_samples,
                                          "measured_arena_bytes": r.measured_arena_bytes, **res.summary()})
        return 0 if r.bit_exact else CHECK_FAILED_EXIT_CODE
    if not (args.port or args.emulate):
        console.print("[red]error:[/red] give --port or --emulate (or --runtime tflm for the host TFLM check)")
        return USER_ERROR_EXIT_CODE
    try:
        res = benchmark(net, example, calib, port=args.port, emulate=args.emulate, test_data=test,
                        board_samples=args.board_samples, json_path=args.json, plot_path=args.plot, console=console)
    except BoardLostError as e:
        e.result.print(console)
        console.print(f"[red]{e}[/red]")
        return CHECK_FAILED_EXIT_CODE
    except (DeployError, ValueError, HILError) as e:
        console.print(f"[red]error:[/red] {e}")
        return USER_ERROR_EXIT_CODE
    s = res.summary
    if s.get("bit_exact") is False or s.get("board_bit_exact_samples", 0) < s.get("board_samples", 0):
        console.print("[red]check failed:[/red] the board's int8 output differs from the host reference "
                      f"(bit-exact network output: {s.get('bit_exact')}, samples bit-exact: "
                      f"{s.get('board_bit_exact_samples', '-')} of {s.get('board_samples', '-')})")
        return CHECK_FAILED_EXIT_CODE
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `benchmark` subcommand to the `mcuprune` command line."""
    p = subparsers.add_parser("benchmark", help="run the int8 network on a board and compare with the resource model")
    p.add_argument("model", help="the export directory MCUPruneCallback wrote (with --network or --unsafe-pickle), "
                                 "or PKG.MODULE:CALLABLE building the dense network (with --checkpoint for a pruned run)")
    p.add_argument("--network", metavar="PKG.MODULE:CALLABLE",
                   help="with an export directory: build the dense network and apply the directory's pruned_state.pt "
                        "(weights-only: nothing in the directory runs)")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="with an export directory: load its model.pt, a pickle; loading it RUNS CODE named in the "
                        "file, so only for directories you wrote or trust like code")
    p.add_argument("--checkpoint", help="Lightning checkpoint of an MCUPruneCallback run, or the export's "
                                        "pruned_state.pt; read weights-only (no code runs) and applied with load_pruned")
    p.add_argument("--input-shape", default="1,28,28", help="C,H,W of one input (default 1,28,28)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--port", help="serial port of a board flashed with the HIL firmware")
    g.add_argument("--emulate", choices=("mps2-an386", "mps2-an500"), help="run on QEMU")
    p.add_argument("--test-data", choices=("fashion-mnist",), help="labelled test data for accuracy")
    p.add_argument("--board-samples", type=int, default=0, help="test images also run on the board")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--plot", help="write a PNG of measured against predicted per layer")
    p.add_argument("--runtime", choices=("mcuprune-firmware", "tflm"), default="mcuprune-firmware",
                   help="mcuprune-firmware: run on the board (--port/--emulate); tflm: check the int8 .tflite in "
                        "TensorFlow Lite Micro's host interpreter (bit-exact outputs, measured arena)")
    p.add_argument("--order", choices=("traced", "optimal"), default="traced", help="op order (--runtime tflm)")
    p.set_defaults(func=_cmd)
