"""What each banked run would have scored had it stopped earlier: aligned ISNR at every
recorded step of the finest scale, from the runs' curve.csv (no new runs).

The curve's aligned PSNR at the finest scale is the figure metrics.json reports at the
end (same reference, border and shift search), so ISNR(step) = aligned_psnr(step) −
the input's aligned PSNR. Writes benchmarks/fast_method/results/bank_stop_points.json (for another
bank root, e.g. the held-out seeds', bank_stop_points_<root name>.json; with ``--seeds``,
only those seeds' runs, in ``…_seeds<seeds>.json``) and prints, per method, mean ISNR and
failures (< 1 dB) at each step.

    .venv/bin/python benchmarks/fast_method/bank_stop_points.py
    .venv/bin/python benchmarks/fast_method/bank_stop_points.py --root benchmarks/results/full_fidelity_heldout --seeds 2-3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import BANK, ROOT, banked_methods, save  # noqa: E402

from lightning_deblur.commands.batch.jobs import parse_seeds  # noqa: E402
from lightning_deblur.core.curve_table import read_curve  # noqa: E402
from lightning_deblur.commands.evaluate_tables import FAILURE_ISNR_DB  # noqa: E402


def finest_isnr_by_step(run: Path) -> dict[int, float]:
    """``{global step: aligned ISNR}`` over the finest scale's recorded steps."""
    metrics = json.loads((run / "metrics.json").read_text())
    rows = read_curve(run / "curve.csv")
    finest = max(row["scale"] for row in rows)
    return {
        int(row["step_in_scale"]): row["aligned_psnr"] - metrics["input_aligned_psnr"]
        for row in rows
        if row["scale"] == finest and row["aligned_psnr"] is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=BANK, help="the bank's folder (default: the bank's seeds 0-1)")
    parser.add_argument("--seeds", default="", help="only these seeds' runs, e.g. 2-3 (default: every run under the root)")
    args = parser.parse_args()
    root = args.root.resolve()
    seeds = set(parse_seeds(args.seeds)) if args.seeds else None
    report = {"root": str(root.relative_to(ROOT)), "seeds": sorted(seeds) if seeds else "all"}
    for method in banked_methods(root):
        runs = sorted(
            p.parent for p in (root / method).glob("*/seed*/metrics.json")
            if seeds is None or int(p.parent.name.removeprefix("seed")) in seeds
        )  # fmt: skip
        if not runs:
            continue
        curves = [finest_isnr_by_step(run) for run in runs]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        if not steps:  # e.g. the true-kernel runs, made without the sharp image at hand
            print(f"{method} ({len(runs)} runs): no aligned PSNR in its curves; left out")
            continue
        table = []
        for step in steps:
            values = [c[step] for c in curves]
            table.append({
                "finest_step": step,
                "mean_isnr": statistics.fmean(values),
                "median_isnr": statistics.median(values),
                "failures": sum(v < FAILURE_ISNR_DB for v in values),
            })  # fmt: skip
        best = max(table, key=lambda row: row["mean_isnr"])
        report[method] = {"runs": len(runs), "by_step": table, "best": best, "final": table[-1]}
        print(f"{method} ({len(runs)} runs): final {table[-1]['mean_isnr']:.2f} dB at step {table[-1]['finest_step']}, "
              f"best mean {best['mean_isnr']:.2f} dB at finest step {best['finest_step']} ({best['failures']} failures)")
        for row in table[:: max(1, len(table) // 12)]:
            print(f"  step {row['finest_step']:5d}: mean {row['mean_isnr']:5.2f}  median {row['median_isnr']:5.2f}  "
                  f"failures {row['failures']}/{len(runs)}")
    name = "bank_stop_points" if root == BANK else f"bank_stop_points_{root.name}"
    name += f"_seeds{args.seeds}" if args.seeds else ""
    print(f"saved {save(name, report, measured_here=False)}")


if __name__ == "__main__":
    main()
