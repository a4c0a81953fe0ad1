"""Is the compute-budget schedule (warmup=0.02, prune_end=0.15) better than the SRAM defaults (0.1 -> 0.6) beyond
the reference CNN? Section `sram-schedule` of BENCHMARKS.md from benchmarks/results/sram_schedule.csv.

The runs are compute_budgets.py's recipes (ResNet-8 and MobileNetV2-tiny on Fashion-MNIST, 6k images x 3 epochs;
DS-CNN on keyword spotting, 12 epochs) under an SRAM-only budget at 1/4 of the dense peak SRAM, seeds 0-2:
  python benchmarks/compute_budgets.py --resources sram --fractions 0.25 --seeds 0 1 2 \
      --csv benchmarks/results/sram_schedule.csv --no-write --nets resnet8 mbv2 dscnn \
      --methods ours --variant default          (then --variant sram-early, --variant early, --methods uniform)
Run: python benchmarks/sram_schedule.py   (writes the section only)
"""
from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

CSV = Path(__file__).resolve().parent / "results" / "sram_schedule.csv"
NETS = {"resnet8": "ResNet-8 (Fashion-MNIST, 3 ep)", "mbv2": "MobileNetV2-tiny (Fashion-MNIST, 3 ep)",
        "dscnn": "DS-CNN (KWS, 12 ep)"}
ALT = {"sram-early": "warmup=0.02, prune_end=0.15", "early": "warmup=0.05, prune_end=0.3"}


LENGTH = {"sram_schedule_3ep.csv": "DS-CNN (KWS), 3 epochs instead of 12",
          "sram_schedule_12ep.csv": "ResNet-8 (Fashion-MNIST 6k), 12 epochs instead of 3"}


def run_length() -> list[str]:
    """The same pair (defaults vs 2-15%) with the run lengths swapped: rows in sram_schedule_{3,12}ep.csv
    (compute_budgets.py ... --epochs 3 / 12 --csv ...)."""
    out = ["", "Run length: the same pair with the epochs swapped (`--epochs`; rows "
           "`benchmarks/results/sram_schedule_3ep.csv`, `sram_schedule_12ep.csv`):", "",
           "| network, run | seed | defaults (%) | 2-15% (%) | 2-15% - defaults (pp) |", "|---|---|---|---|---|"]
    for name, title in LENGTH.items():
        path = CSV.parent / name
        if not path.exists():
            continue
        with path.open() as f:
            acc = {(r["variant"], int(r["seed"])): 100 * float(r["test_acc"]) for r in csv.DictReader(f)}
        d = []
        for s in range(3):
            a, b = acc.get(("default", s)), acc.get(("sram-early", s))
            if a is None and b is None:
                continue
            if a is not None and b is not None:
                d.append(b - a)
            out.append(f"| {title} | {s} | {'n/a' if a is None else f'{a:.2f}'} | {'n/a' if b is None else f'{b:.2f}'} | "
                       f"{f'{b - a:+.2f}' if a is not None and b is not None else 'n/a'} |")
        if d:
            out.append(f"| {title} | mean | | | **{statistics.mean(d):+.2f}** ({sum(x >= 0 for x in d)}/{len(d)} ≥) |")
    return out


def main() -> None:
    with CSV.open() as f:
        rows = list(csv.DictReader(f))
    acc = {(r["net"], r["variant"] if r["method"] == "ours" else "uniform", int(r["seed"])): 100 * float(r["test_acc"])
           for r in rows}
    alts = [a for a in ALT if any(k[1] == a for k in acc)]
    head = "| network | seed | defaults 0.1/0.6 (%) | " + " | ".join(f"`{a}` (%) | {a} - defaults (pp)" for a in alts) + \
        " | uniform width (%) | defaults - uniform (pp) |"
    lines = ["## The SRAM default schedule on other networks (1/4 of dense peak SRAM)", "",
             "Ours under an SRAM-only budget (1/4 of the dense network's peak SRAM, board mps2-an386) with the current "
             "SRAM defaults (pruning 10% -> 60% of the run, reset_optimizer on) against the compute-budget schedule "
             "(`sram-early`: 2% -> 15%) and a middle one (`early`: 5% -> 30%), and uniform width trained from fresh "
             "weights for the same epochs. Recipes of `compute_budgets.py`; rows: "
             "`benchmarks/results/sram_schedule.csv`. On the reference CNN (`fashion_mnist_sram.py`, section above) "
             "the 2-15% schedule was +2.57 pp at 1/4.", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    summary = []
    for n, title in NETS.items():
        diffs = {a: [] for a in alts}
        du = []
        for s in range(3):
            d = acc.get((n, "default", s))
            u = acc.get((n, "uniform", s))
            cells = [f"{d:.2f}" if d is not None else "n/a"]
            for a in alts:
                x = acc.get((n, a, s))
                if x is not None and d is not None:
                    diffs[a].append(x - d)
                cells += [f"{x:.2f}" if x is not None else "n/a",
                          f"{x - d:+.2f}" if x is not None and d is not None else "n/a"]
            if d is not None and u is not None:
                du.append(d - u)
            cells += [f"{u:.2f}" if u is not None else "n/a", f"{d - u:+.2f}" if d is not None and u is not None else "n/a"]
            lines.append(f"| {title} | {s} | " + " | ".join(cells) + " |")
        m = lambda v: f"**{statistics.mean(v):+.2f}** ({sum(x >= 0 for x in v)}/{len(v)} ≥)" if v else "n/a"
        lines.append(f"| {title} | mean | | " + " | ".join(f" | {m(diffs[a])}" for a in alts) + f" | | {m(du)} |")
        summary.append((title, {a: statistics.mean(diffs[a]) if diffs[a] else None for a in alts}))
    ch = {(r["net"], r["variant"], int(r["seed"])): r["channels"] for r in rows if r["method"] == "ours"}
    pairs = [(k, ch[(k[0], "sram-early", k[2])]) for k in ch if k[1] == "default" and (k[0], "sram-early", k[2]) in ch]
    same = sum(ch[k] == c for k, c in pairs)
    lines += ["", "Every run met its budget: " + f"{sum(r['meets_budget'] == 'True' for r in rows)}/{len(rows)}. "
              f"Ours found the same channels per group with 2-15% as with the defaults in {same} of {len(pairs)} "
              "pairs, so these differences come from training (how long the network trains dense and masked "
              "before hardening), not from the architecture found.", ""]
    lose = [t for t, d in summary if d.get("sram-early") is not None and d["sram-early"] < 0]
    lines.append("Reading: on the two Fashion-MNIST networks (3-epoch runs) an earlier hardening wins in every seed, as "
                 "on the reference CNN; on DS-CNN (12-epoch keyword-spotting runs) it loses in every seed, by more than "
                 "the defaults' seed-to-seed spread there, and the middle schedule (5-30%) loses too. Run length alone "
                 "does not explain it (table below): ResNet-8 trained 12 epochs still gains from 2-15% in 3 of 3 seeds, "
                 "and DS-CNN in 3 epochs (undertrained, 43-57%) gains too, so what DS-CNN at 12 epochs gains from the "
                 "long masked phase is specific to that network/task (not diagnosed). The gain is not general, so the "
                 "SRAM default stays 10% -> 60%; `warmup=0.02, prune_end=0.15` is an option worth passing on "
                 "Fashion-MNIST-like CNNs. Fit times: in the 12-epoch ResNet-8 runs 2-15% fitted in 44-47 s against "
                 "62-67 s (the network is narrow for longer; 2 shared cores, load ~1, so not clean timings).")
    lines += run_length()
    lines.append("")
    lines.append("Decision: " + ("the 2-15% schedule loses on " + ", ".join(lose) +
                                 ", so the SRAM default stays 10% -> 60% (not flipped)." if lose else
                                 "the 2-15% schedule is ≥ the defaults on the mean on every network."))
    write_section("sram-schedule", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
