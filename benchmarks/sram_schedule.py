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
                 "the defaults' seed-to-seed spread there, and the middle schedule loses too. The gain is not general "
                 "across networks/tasks, so it is not a default; pass `warmup=0.02, prune_end=0.15` for short runs of "
                 "networks like these. Not measured: which of task, network or run length (12 vs 3 epochs) makes the "
                 "difference.")
    lines.append("")
    lines.append("Decision: " + ("the 2-15% schedule loses on " + ", ".join(lose) +
                                 ", so the SRAM default stays 10% -> 60% (not flipped)." if lose else
                                 "the 2-15% schedule is ≥ the defaults on the mean on every network."))
    write_section("sram-schedule", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
