"""Quality against cost: mean aligned ISNR over the full-fidelity bank against the CPU
minutes of one whole job, per method, with each method's failure rate.

Quality comes from the bank's evaluation (benchmarks/results/full_fidelity_bank/eval/
summary.json); cost from whole jobs timed side by side by benchmarks/method_cost/method_speed.py
(its JSON files given with --speed; a method's time is its median whole-process wall
time, start-up included). Writes docs/figures/quality_cost.png.

    .venv/bin/python benchmarks/method_cost/quality_cost_figure.py \\
        --speed benchmarks/method_cost/results/method_speed_selfdeblur_fast_*.json \\
            benchmarks/method_cost/results/method_speed_improved_fast-fused-adam_*.json

(a config timed in several files takes the last file's time.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lightning_deblur.commands.figures.style import new_figure, save_figure  # noqa: E402

CONFIG_OF_METHOD = {"original": "selfdeblur", "improved": "improved", "fast_fused": "fast"}
"""Bank method name -> config name timed by method_speed.py (``fast_fused`` is fast.yaml
as shipped; the bank's ``fast`` is the same config with PyTorch's default Adam)."""
SHOWN_AS = {"fast_fused": "fast"}
"""Bank method name -> the name on the figure, where they differ."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", default=str(ROOT / "benchmarks/results/full_fidelity_bank/eval/summary.json"))
    parser.add_argument("--speed", nargs="+", required=True, help="method_speed.py result files")
    parser.add_argument("--output", default=str(ROOT / "docs/figures/quality_cost.png"))
    args = parser.parse_args()
    quality = json.loads(Path(args.summary).read_text())["methods"]
    minutes: dict[str, float] = {}
    precision: dict[str, str] = {}
    machines = set()
    for file in args.speed:
        result = json.loads(Path(file).read_text())
        machines.add(result["machine"]["cpu"])
        for config, timing in result["methods"].items():
            minutes[config] = timing["process_s"] / 60
            precision[config] = timing["runs"][0]["precision"]
    figure = new_figure()
    axes = figure.add_subplot()
    for method, config in CONFIG_OF_METHOD.items():
        if method not in quality or config not in minutes:
            continue
        stats = quality[method]
        axes.scatter(minutes[config], stats["isnr_mean"], s=60)
        axes.annotate(
            f"{SHOWN_AS.get(method, method)} ({precision[config]})\n{stats['failures']}/{stats['runs']} failed",
            (minutes[config], stats["isnr_mean"]),
            textcoords="offset points",
            xytext=(8, -4),
            fontsize="small",
        )
        print(f"{method}: {minutes[config]:.1f} CPU-min/job, mean ISNR {stats['isnr_mean']:.2f} dB, "
              f"failures {stats['failures']}/{stats['runs']}")
    # From 0 dB (no gain), so that the gaps are not magnified.
    top = max(quality[m]["isnr_mean"] for m in CONFIG_OF_METHOD if m in quality)
    axes.set_ylim(0, top + 0.5)
    axes.set_xlim(0.3, 60)
    axes.set_xscale("log")
    axes.set_xlabel(f"minutes per whole job, one thread ({', '.join(sorted(machines))}; log scale)")
    axes.set_ylabel("mean aligned ISNR over the bank (dB)")
    axes.set_title("Quality against cost, full-fidelity protocol (96×96)")
    axes.grid(True, alpha=0.3)
    print(f"saved {save_figure(figure, args.output)}")


if __name__ == "__main__":
    main()
