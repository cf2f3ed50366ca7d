"""Why the improved method falls after its peak: its finest scale continued from the step
where the schedule switches (1 − SSIM + TV, kernel ℓ2 off), under other schedules.

The improved method's finest scale switches at its step 2000 (global step 3000 after two
coarse scales of 500) from MSE with the kernel ℓ2 term to 1 − SSIM + 0.01·TV without it.
On the 96×96 bank it peaked about 300 steps later and lost most of the gain by the end.
Each arm resumes a copy of a banked improved run's checkpoint at that step (the bank
writes ``last.ckpt`` every 500 steps; a copy taken while it holds step 3000) with one
change to the finest scale's schedule, and runs to the end in its own folder:

- ``as_published``: the schedule unchanged (the control: it reproduces the banked run
  bit for bit on the same machine, checked on a tiny job);
- ``no_tv``: the TV term left out after the switch;
- ``kernel_l2_kept``: the kernel ℓ2 term (0.1) kept on after the switch.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/paper_scale/post_peak_ablation.py \\
        --checkpoint CKPT --run benchmarks/results/paper_scale_levin8/improved/im1_kernel1/seed0

Results go to ``benchmarks/results/paper_scale_levin8/post_peak/<arm>/<input>/``; each
arm's ``curve.csv`` against the banked run's tells where the fall comes from. The arms run
``python -m lightning_deblur`` in ``--code``: a checkout of the commit that made the banked
run, since its checkpoint holds that code's classes and the control must reproduce it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARMS = {
    "as_published": [],
    "no_tv": ["--schedule.weights", "{mse: {0: 1.0, 2000: 0.0}, ssim: {2000: 1.0}, kernel_l2: {0: 0.1, 2000: 0.0}}"],
    "kernel_l2_kept": ["--schedule.weights", "{mse: {0: 1.0, 2000: 0.0}, ssim: {2000: 1.0}, tv: {2000: 0.01}, kernel_l2: {0: 0.1}}"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the banked run's checkpoint at the switch (step 3000)")
    parser.add_argument("--run", required=True, help="the banked run's folder (its config.yaml is used)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--code", default=str(ROOT), help="checkout whose lightning_deblur runs the arms (the bank's commit)")
    parser.add_argument("--root", default=str(ROOT / "benchmarks" / "results" / "paper_scale_levin8" / "post_peak"))
    args = parser.parse_args()
    run = Path(args.run).resolve()
    name = run.parent.name
    code = 0
    for arm in args.arms.split(","):
        folder = Path(args.root).resolve() / arm
        if (folder / name / "metrics.json").is_file():
            continue
        resume = folder / name / "checkpoints" / "last.ckpt"
        command = [
            sys.executable, "-W", "ignore", "-m", "lightning_deblur", "fit", "--config", str(run / "config.yaml"),
            "--trainer.logger.init_args.save_dir", str(folder), "--trainer.logger.init_args.name", "",
            "--trainer.logger.init_args.version", name,
            "--ckpt_path", str(resume if resume.is_file() else Path(args.checkpoint).resolve()), *ARMS[arm],
        ]  # fmt: skip
        print(f"=== {arm} {name}", flush=True)
        code = max(code, subprocess.run(command, cwd=args.code).returncode)
    sys.exit(code)


if __name__ == "__main__":
    main()
