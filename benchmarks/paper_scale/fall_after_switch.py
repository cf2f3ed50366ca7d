"""How far the improved method's finest scale falls after its peak, from run folders' curves.

The improved config switches its finest scale at step 2000 of that scale from MSE with the
kernel ℓ2 term to 1 − SSIM + 0.01·TV. For each run folder given, this reads ``curve.csv``
(a row every 100 steps: ``scale``, ``step_in_scale``, ``aligned_psnr`` in dB,
``kernel_peak``) and prints one markdown row: the aligned PSNR at the switch, its highest
value from the switch on and the step where it was reached, the value at the end, the fall
(highest − end, dB) and the kernel's peak at the switch and at the end.

    .venv/bin/python benchmarks/paper_scale/fall_after_switch.py \\
        benchmarks/results/full_fidelity_bank/improved/kodim05_levin09_k5/seed0 \\
        benchmarks/results/full_fidelity_postcorrection/improved/kodim05_levin09_k5/seed0

Only for runs of configs/improved.yaml (three scales, the switch at the finest scale's step
2000); curves written before curve.csv scored the estimate as centring registers it can read
low where centring moved the image (see the paper-scale README).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning_deblur.commands.batch.summary import read_finished
from lightning_deblur.core.curve_table import read_curve
from lightning_deblur.core.planning import ScalesSpec
from lightning_deblur.core.schedule import IMPROVED_WEIGHTS

SWITCH_STEP_IN_SCALE = min(IMPROVED_WEIGHTS["ssim"])
"""The finest scale's step at which the improved schedule switches to 1 − SSIM + TV (2000)."""


def fall_after_switch(run: Path) -> dict[str, float]:
    """The finest scale's aligned PSNR (dB) and kernel peak around the switch, from ``run/curve.csv``."""
    rows = read_curve(run / "curve.csv")
    finest = max(row["scale"] for row in rows)
    if finest != ScalesSpec.count - 1:  # the original method's single scale also has a step 2000, but no switch
        raise ValueError(f"{run}: curve.csv has {int(finest) + 1} scale(s), not the improved config's {ScalesSpec.count}")
    after = [row for row in rows if row["scale"] == finest and row["step_in_scale"] >= SWITCH_STEP_IN_SCALE]
    if not after or after[0]["step_in_scale"] != SWITCH_STEP_IN_SCALE:
        raise ValueError(f"{run}: curve.csv has no row at the finest scale's step {SWITCH_STEP_IN_SCALE}")
    best = max(after, key=lambda row: row["aligned_psnr"])
    return {
        "at_switch": after[0]["aligned_psnr"],
        "highest": best["aligned_psnr"],
        "highest_step_in_scale": int(best["step_in_scale"]),
        "end": after[-1]["aligned_psnr"],
        "fall": best["aligned_psnr"] - after[-1]["aligned_psnr"],
        "kernel_peak_at_switch": after[0]["kernel_peak"],
        "kernel_peak_end": after[-1]["kernel_peak"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of configs/improved.yaml, each with curve.csv")
    args = parser.parse_args(argv)
    rows = []  # every run read before anything is printed: a bad folder leaves only its one-line error
    for run in args.runs:
        if read_finished(run) is None:  # a running or stopped job's curve ends part of the way
            print(
                f"fall_after_switch: {run} is not finished (no metrics.json, or one that does not say done); "
                "give finished run folders",
                file=sys.stderr,
            )
            return 2
        if not (run / "curve.csv").is_file():
            print(f"fall_after_switch: {run} has no curve.csv (run with --curve.every_n_steps 0, or before curves were recorded)", file=sys.stderr)
            return 2
        try:
            rows.append((run, fall_after_switch(run)))
        except ValueError as error:
            print(f"fall_after_switch: {error}; give a run of configs/improved.yaml", file=sys.stderr)
            return 2
    print("| run | at switch | highest (step in scale) | end | fall | kernel peak: switch → end |")
    print("|---|---:|---:|---:|---:|---|")
    for run, row in rows:
        print(
            f"| {run} | {row['at_switch']:.2f} | {row['highest']:.2f} ({row['highest_step_in_scale']}) | "
            f"{row['end']:.2f} | {row['fall']:.2f} | {row['kernel_peak_at_switch']:.3f} → {row['kernel_peak_end']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
