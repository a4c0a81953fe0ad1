"""Regenerate the built-in profiles of the emulated boards with `calibrate`, timing each full calibration.

    python3 benchmarks/calibration_speed.py [--boards mps2-an386 mps2-an500] [--resume] [--no-write]

Writes lightning_mcuprune/boards/profiles/<board>.json (sizes, runtime, scratch, description kept; latency
replaced), the measurements and plot under benchmarks/results/calibration/, and the section
<!-- calibration --> of BENCHMARKS.md: wall time per board and the accuracy figures per op type.
scripts/calibrate_builtin.sh runs this.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import pandas as pd  # noqa: E402

from lightning_mcuprune.hil.calibrate import DEFAULT_FIT, DEFAULT_HELD_OUT, accuracy_table, calibrate  # noqa: E402
from lightning_mcuprune.hil.emulated import EmulatedBoard  # noqa: E402
from lightning_mcuprune.hil.latency_fit import errors  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "calibration"
PROFILES = ROOT / "lightning_mcuprune" / "boards" / "profiles"


def run(board: str, resume: bool) -> dict:
    csv_path, png = RESULTS / f"{board}.csv", RESULTS / f"{board}.png"
    if csv_path.exists() and not resume:
        csv_path.unlink()
    base = str(PROFILES / f"{board}.json")
    t = time.perf_counter()
    with EmulatedBoard(board) as b:
        prof = calibrate(b, PROFILES / f"{board}.json", csv_path, png, base=base)
    wall = time.perf_counter() - t
    rows = pd.read_csv(csv_path)
    return {"board": board, "wall_s": wall, "layers": len(rows), "profile": prof}


def section(results: list) -> str:
    lines = ["## Calibration (emulated boards)", "",
             "`python3 benchmarks/calibration_speed.py` (= `scripts/calibrate_builtin.sh`): a full `calibrate --emulate` "
             f"of each emulated board ({DEFAULT_FIT} fit + {DEFAULT_HELD_OUT} held-out layers per op type, 1 run per "
             "layer: QEMU -icount is deterministic), wall time including QEMU start-up and the fit. It regenerates the "
             "built-in profiles. APE = absolute percentage error of predicted against measured cycles; CV = 5-fold "
             "cross-validation on the fit layers; held-out = layers drawn separately, never fitted.", "",
             "1-d = the layers of conv2d, depthwise_conv2d, max_pool and avg_pool on a 1-row (or 1-column) input, "
             "which is how Conv1d and 1-d pooling run on the firmware (about 30% of their design); their held-out "
             "figures are also given on their own.", "",
             "| board | layers measured | wall time | held-out median APE | held-out p95 APE | held-out within ±5% | "
             "within ±10% | 1-d held-out: layers, median APE, p95, within ±10% |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        o1 = r["profile"]["latency"]["calibration"].get("held_out_1d_overall")
        one_d = (f"{o1['samples']}, {o1['median_ape_pct']:.2f}%, {o1['p95_ape_pct']:.2f}%, "
                 f"{100 * o1['share_within_10pct']:.1f}%" if o1 else "-")
        lines.append(f"| {r['board']} | {r['layers']} | {r['wall_s']:.0f} s | {r['overall']['median_ape_pct']:.2f}% | "
                     f"{r['overall']['p95_ape_pct']:.2f}% | {100 * r['overall']['share_within_5pct']:.1f}% | "
                     f"{100 * r['overall']['share_within_10pct']:.1f}% | {one_d} |")
    for r in results:
        t = accuracy_table(r["profile"])
        t = t[t["source"] == "calibrated"].drop(columns="source")
        lines += ["", f"**{r['board']}** per op type (estimated, not measured: mul, concat, activation):", "",
                  "| op | fit | held-out | CV median | CV p95 | CV ±10% | HO median | HO p95 | HO ±5% | HO ±10% | "
                  "1-d HO: layers, median, p95, ±10% |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, x in t.iterrows():
            one_d = (f"{int(x['ho_1d'])}, {x['ho_1d_median_ape_pct']:.2f}%, {x['ho_1d_p95_ape_pct']:.2f}%, "
                     f"{100 * x['ho_1d_within_10pct']:.1f}%" if "ho_1d" in x and pd.notna(x["ho_1d"]) else "-")
            lines.append(f"| {x['op']} | {int(x['fit'])} | {int(x['held_out'])} | {x['cv_median_ape_pct']:.2f}% | "
                         f"{x['cv_p95_ape_pct']:.2f}% | {100 * x['cv_within_10pct']:.1f}% | {x['ho_median_ape_pct']:.2f}% | "
                         f"{x['ho_p95_ape_pct']:.2f}% | {100 * x['ho_within_5pct']:.1f}% | {100 * x['ho_within_10pct']:.1f}% | "
                         f"{one_d} |")
    return "\n".join(lines)


def overall(prof: dict, csv_path: Path) -> dict:
    """Held-out figures over all measured op types, recomputed from the CSV and the profile's coefficients."""
    from lightning_mcuprune.hil.calibrate import feature_frame
    rows = pd.read_csv(csv_path)
    df = feature_frame(rows[rows["split"] == "held_out"].reset_index(drop=True))
    ops = prof["latency"]["ops"]
    pred = [sum(c * row[f] for f, c in ops[row["op"]].items()) for _, row in df.iterrows()]
    return errors(pred, df["cycles"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", nargs="+", default=["mps2-an386", "mps2-an500"])
    ap.add_argument("--resume", action="store_true", help="resume from the CSVs instead of measuring afresh")
    ap.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = ap.parse_args()
    results = []
    for b in args.boards:
        r = run(b, args.resume)
        r["overall"] = overall(r["profile"], RESULTS / f"{b}.csv")
        print(f"{b}: {r['layers']} layers in {r['wall_s']:.0f} s; held-out overall {r['overall']}")
        results.append(r)
    body = section(results)
    print(body)
    if not args.no_write:
        from _common import write_section
        write_section("calibration", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
