"""TFLite Micro check (issue 14): int8 .tflite from our writer, run in TFLM's own interpreter (tflite-micro,
host build), on the zoo's and the tests' networks, dense and pruned by MCUPruneCallback(runtime="tflm").

Per network: TFLM's outputs against our host int8 executor on 100 inputs (bit for bit); TFLM's arena measured
(smallest arena_size that allocates and invokes, bisection) against the predicted one (export_tflite, and
analyze(runtime="tflm")); the predicted model flash against len(model.tflite). Pruned runs: the measured arena
against the SRAM budget. Branching networks: the measured arena with our op order (order="optimal") against
TFLM planning the same ops in a plain breadth-first topological order.

    python benchmarks/tflm_check.py            # writes the "tflm" section of BENCHMARKS.md
"""
from __future__ import annotations

import sys
import time
import warnings
from collections import deque
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import lightning_mcuprune as lm  # noqa: E402
from lightning_mcuprune.examples import zoo  # noqa: E402
from lightning_mcuprune.deploy.export import runtime_flash_bytes  # noqa: E402
from lightning_mcuprune.deploy.tflm import check, measure_arena  # noqa: E402
from _common import write_section  # noqa: E402


class Conv1dNet(nn.Module):
    """A 1-D keyword-spotting-style net: Conv1d + BN + ReLU blocks, global average pooling, linear."""

    def __init__(self, c=40, classes=12):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(c, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
                                  nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
                                  nn.Conv1d(32, 48, 3, padding=1), nn.BatchNorm1d(48), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(48, classes))

    def forward(self, x):
        return self.body(x)


def networks():
    import nets as tnets
    out = [(n, f, s) for n, (f, s) in tnets.NETS.items()]
    out += [("mobilenet_v2_0.35_64px", lambda: zoo.mobilenet_v2(num_classes=10, width=0.35), (3, 64, 64)),
            ("conv1d_kws", Conv1dNet, (40, 49)),
            ("reference_cnn_w0.37 (odd channels)", lambda: zoo.reference_cnn(width=0.37), (1, 28, 28))]
    from se_nets import se_resnet   # squeeze-excitation: MUL + LOGISTIC (fused after the SE's second conv/linear)
    out += [("se_resnet (conv SE)", lambda: se_resnet(spelling="conv"), (1, 16, 16)),
            ("se_resnet (linear SE, view)", lambda: se_resnet(spelling="view"), (1, 16, 16))]
    return out


def bfs_order(graph) -> list:
    """Kahn's algorithm, first-in first-out: a plain breadth-first topological order."""
    idx = {op.name: i for i, op in enumerate(graph.ops)}
    preds = [{idx[graph.buffers[b].producer] for b in op.inputs if graph.buffers[b].producer} for op in graph.ops]
    succ = [[] for _ in graph.ops]
    for i, p in enumerate(preds):
        for j in p:
            succ[j].append(i)
    indeg = [len(p) for p in preds]
    q = deque(i for i, d in enumerate(indeg) if d == 0)
    order = []
    while q:
        i = q.popleft()
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                q.append(j)
    return order


def measure(name, net, shape, calib, inputs, budget=None):
    t0 = time.time()
    row = {"name": name}
    try:
        res = lm.export_tflite(net.eval(), calib[:1], calib)   # traced order, arena plan embedded
    except ValueError as e:
        row["error"] = str(e).split(";")[0][:160]
        return row, None
    r = check(res.qgraph, res.data, inputs)
    rep = lm.analyze(net, calib[:1], runtime="tflm")
    flash_pred = rep.flash_bytes - runtime_flash_bytes(res.model.op_codes)
    row.update(ops=len(res.model.ops), exact=f"{r.samples - r.mismatched_samples}/{r.samples}",
               bit_exact=r.bit_exact, measured=r.measured_arena_bytes, predicted=res.host.total,
               rm_predicted=int(rep.peak_sram_bytes), cortex_m=res.cortex_m.total, file=len(res.data),
               flash_pred=int(flash_pred), budget=budget, secs=time.time() - t0)
    return row, res


def prune(factory, shape, frac, seed=0):
    from lit import Classifier, random_loader, trainer

    from lightning_mcuprune.callback import MCUPruneCallback
    dense = lm.analyze(factory().eval(), torch.zeros(1, *shape), runtime="tflm").peak_sram_bytes
    budget = int(dense * frac)
    torch.manual_seed(seed)
    model = Classifier(factory())
    cb = MCUPruneCallback("mps2-an386", {"sram": budget}, runtime="tflm", verbose=False, export=False,
                          calib_samples=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer([cb], max_steps=24).fit(model, random_loader(shape, n=48, batch=8, seed=seed))
    return cb.root.eval(), budget


def main():
    torch.set_num_threads(1)   # a shared machine: one thread
    torch.manual_seed(0)
    rows, order_rows = [], []
    nets = networks()
    for name, factory, shape in nets:
        calib = torch.randn(128, *shape)
        inputs = torch.randn(100, *shape)
        row, _ = measure(name, factory(), shape, calib, inputs)
        rows.append(row)
        print(row, flush=True)
    pruned = [("plain_cnn", lambda: zoo.reference_cnn(width=0.5), (1, 28, 28), 0.5),
              ("resnet8", lambda: zoo.resnet8(in_channels=1, width=0.5), (1, 16, 16), 0.75),
              ("mobilenet_v2_tiny", lambda: zoo.mobilenet_v2_tiny(width=0.5), (1, 16, 16), 0.75),
              ("ds_cnn", lambda: zoo.ds_cnn(width=0.5, num_classes=10), (1, 49, 10), 0.6),
              ("inception", zoo.inception_like, (1, 20, 20), 0.7),
              ("vgg", lambda: zoo.vgg_style(width=0.25), (1, 28, 28), 0.5),
              ("conv1d_kws", Conv1dNet, (40, 49), 0.8)]
    for name, factory, shape, frac in pruned:
        try:
            net, budget = prune(factory, shape, frac)
        except ValueError as e:   # a budget below the smallest network: said before training
            rows.append({"name": f"{name} pruned (sram {frac:.0%})", "error": str(e)[:160]})
            continue
        row, _ = measure(f"{name} pruned (sram {frac:.0%})", net, shape, torch.randn(128, *shape),
                         torch.randn(100, *shape), budget)
        rows.append(row)
        print(row, flush=True)
    for name, factory, shape in [("resnet8", zoo.resnet8, (3, 32, 32)),
                                 ("mobilenet_v2_tiny", zoo.mobilenet_v2_tiny, (1, 28, 28)),
                                 ("inception_like", zoo.inception_like, (1, 28, 28)),
                                 ("mobilenet_v2_0.35_64px", lambda: zoo.mobilenet_v2(num_classes=10, width=0.35), (3, 64, 64))]:
        net = factory().eval()
        calib = torch.randn(64, *shape)
        graph = lm.trace_graph(net, calib[:1])
        res = {}
        for label, order, plan in (("ours", "optimal", True), ("bfs", bfs_order(graph), False),
                                   ("traced", "traced", False)):
            try:
                r = lm.export_tflite(net, calib[:1], calib, order=order, offline_plan=plan)
            except Exception as e:  # noqa: BLE001 - order search too large
                res[label] = (None, str(e)[:60])
                continue
            res[label] = (measure_arena(r.data), r.host.total)
        order_rows.append((name, res))
        print(name, res, flush=True)
    write(rows, order_rows)


def write(rows, order_rows):
    ok = [r for r in rows if "error" not in r]
    lines = ["## TensorFlow Lite Micro: int8 .tflite checked in TFLM's own interpreter (issue 14)", "",
             "`python benchmarks/tflm_check.py`. Each network is quantised on 128 random inputs, written by our pure-Python "
             "writer and run by `tflite-micro`'s host interpreter (TFLM's reference kernels, 64-bit). Bit-exact: TFLM's "
             "output equals our host int8 executor's on 100 inputs. Arena measured = the smallest `arena_size` with which "
             "TFLM allocates and invokes (bisection); predicted = `export_tflite` (what `model_ops.h` gets as "
             "`kTensorArenaSize`) and `analyze(runtime=\"tflm\")` (the callback's model at these counts). Flash: "
             "`analyze(runtime=\"tflm\")` flash minus TFLM's code (an estimate) against `len(model.tflite)`; the "
             "resource model serialises the writer's layout of the network at its channel counts "
             "(`resources.tflite_layout.layout`, which the writer fills in), without quantising it. "
             "Pruned rows: `MCUPruneCallback(runtime=\"tflm\", budgets={\"sram\": B})`, 24 steps on random data.", "",
             "| network | TFLite ops | bit-exact | arena measured (B) | predicted (B) | pred - meas | analyze() (B) | "
             "32-bit estimate (B) | .tflite (B) | flash predicted (B) | flash error | SRAM budget B | measured <= B |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | not exported: {r['error']} |  |  |  |  |  |  |  |  |  |  |  |")
            continue
        d = r["predicted"] - r["measured"]
        fe = 100 * (r["flash_pred"] - r["file"]) / r["file"]
        b = r["budget"]
        lines.append(f"| {r['name']} | {r['ops']} | {r['exact']} | {r['measured']} | {r['predicted']} | {d:+d} | "
                     f"{r['rm_predicted']} | {r['cortex_m']} | {r['file']} | {r['flash_pred']} | "
                     f"{r['flash_pred'] - r['file']:+d} B ({fe:+.2f}%) | "
                     f"{b if b else ''} | {'' if not b else ('yes' if r['measured'] <= b else 'NO')} |")
    n_exact = sum(r["bit_exact"] for r in ok)
    within = sum(r["measured"] <= r["predicted"] <= r["measured"] + max(0.01 * r["measured"], 64) for r in ok)
    fl = sum(abs(r["flash_pred"] - r["file"]) <= 0.01 * r["file"] for r in ok)
    fl_exact = sum(r["flash_pred"] == r["file"] for r in ok)
    budg = [r for r in ok if r["budget"]]
    lines += ["", f"**{n_exact}/{len(ok)} networks bit-exact** (100 inputs each); predicted arena never below and at most "
              f"max(1 %, 64 B) above the measured: **{within}/{len(ok)}**; predicted model flash within 1 % of the file: "
              f"**{fl}/{len(ok)}**, equal to it to the byte: **{fl_exact}/{len(ok)}**; pruned with `runtime=\"tflm\"`: measured arena <= budget in "
              f"**{sum(r['measured'] <= r['budget'] for r in budg)}/{len(budg)}** runs.", "",
              "Op order and arena plan on branching networks: TFLM's measured arena (B) with the ops in our order "
              "(`order=\"optimal\"`, the resource model's exact search) and our arena plan embedded as "
              "OfflineMemoryAllocation (`export_tflite`'s default), against TFLM planning the same ops itself (greedy) "
              "in the traced order and in a plain breadth-first topological order (Kahn, FIFO).", "",
              "| network | ours (optimal order + our plan) | traced, TFLM-planned | breadth-first, TFLM-planned | "
              "ours / breadth-first |", "|---|---|---|---|---|"]
    for name, res in order_rows:
        o, t, b = res.get("ours", (None,))[0], res.get("traced", (None,))[0], res.get("bfs", (None,))[0]
        ratio = f"{o / b:.3f}" if o and b else "n/a"
        lines.append(f"| {name} | {o if o else res['ours'][1]} | {t} | {b} | {ratio} |")
    lines += converter_lines()
    write_section("tflm", "\n".join(lines))


def converter_lines() -> list:
    """The comparison with litert-torch, from benchmarks/results/tflm_vs_litert.json (benchmarks/tflm_vs_litert.py,
    which runs where litert-torch is installed), if it has been run."""
    import json
    path = ROOT / "benchmarks" / "results" / "tflm_vs_litert.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    lines = ["", f"The public PyTorch -> int8 .tflite route that installs without TensorFlow, litert-torch (PT2E static "
             f"int8, per-channel weights), against ours on the {r['network']} trained on {r['train_samples']} "
             f"Fashion-MNIST images (float accuracy {100 * r['float_acc']:.1f} % on the first {r['test']} test images), "
             f"both calibrated on the same {r['calib']} training images and run in TFLM's interpreter "
             f"(`{r['command']}`, measured {r['measured']}):", "",
             "| converter | TFLite ops | .tflite (B) | TFLM arena measured (B) | int8 accuracy in TFLM |",
             "|---|---|---|---|---|"]
    for name, row in r["rows"].items():
        lines.append(f"| {name} | {', '.join(row['ops'])} | {row['tflite_bytes']} | {row['arena_measured']} | "
                     f"{100 * row['int8_acc']:.1f} % |")
    return lines


if __name__ == "__main__":
    main()
