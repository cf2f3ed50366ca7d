"""Why the improved method falls after its peak: its finest scale continued from the step
where the schedule switches (1 − SSIM + TV, kernel ℓ2 off), under other schedules.

The improved method's finest scale switches at its step 2000 (global step 3000 after two
coarse scales of 500) from MSE with the kernel ℓ2 term to 1 − SSIM + 0.01·TV without it.
On the 96×96 bank it peaked about 300 steps later and lost most of the gain by the end.
Each arm resumes the run's checkpoint at that step with one change to the finest scale's
schedule, and runs to the end in its own folder:

- ``as_published``: the schedule unchanged (the control: it reproduces the banked run
  bit for bit on the same machine, checked on a tiny job);
- ``no_tv``: the TV term left out after the switch;
- ``kernel_l2_kept``: the kernel ℓ2 term (0.1) kept on after the switch.

The checkpoint at step 3000 is either given (``--checkpoint``: a copy taken while the
banked run's ``last.ckpt`` held step 3000; the bank writes it every 500 steps) or made
here: the banked run's config.yaml run again with ``--trainer.max_steps 3000`` into
``<root>/prefix/<input>/`` (the same steps as the banked run on the same machine and
threads), whose stop leaves that checkpoint. A checkpoint only resumes on the machine that
wrote it, so the prefix and the arms belong to one sitting; each stage is skipped once
done, so a stopped command resumes.

    # the control left out: the banked run's own curve.csv is the schedule as published
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/paper_scale/post_peak_ablation.py --arms no_tv,kernel_l2_kept \
        --run benchmarks/results/paper_scale_kodak256/improved/kodim05_levin09_k5/seed0 \
        --checkpoint <a copy of that run's last.ckpt at step 3000>

Results go beside the run's bank, here ``benchmarks/results/paper_scale_kodak256/post_peak/<arm>/<input>/``; each
arm's ``curve.csv`` against the banked run's tells where the fall comes from. The arms run
``python -m lightning_deblur`` in ``--code``: a checkout of the commit that made the
checkpoint, since it holds that code's classes and the control must reproduce the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from lightning_deblur.commands.batch.summary import read_finished
from lightning_deblur.core.planning import ScalesSpec
from lightning_deblur.core.schedule import IMPROVED_WEIGHTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import ROOT, fit_into  # noqa: E402

ARMS = {
    "as_published": [],
    "no_tv": ["--schedule.weights", "{mse: {0: 1.0, 2000: 0.0}, ssim: {2000: 1.0}, kernel_l2: {0: 0.1, 2000: 0.0}}"],
    "kernel_l2_kept": ["--schedule.weights", "{mse: {0: 1.0, 2000: 0.0}, ssim: {2000: 1.0}, tv: {2000: 0.01}, kernel_l2: {0: 0.1}}"],
}


SWITCH_STEP = (ScalesSpec.count - 1) * ScalesSpec.coarse_iterations + min(IMPROVED_WEIGHTS["ssim"])
"""The global step of the improved config's switch to 1 − SSIM + TV (3000: two coarse scales
of 500 steps, then the finest scale's step 2000)."""


def status(run: Path) -> tuple[str, int]:
    """A run folder's ``metrics.json`` status and iterations (``("", 0)`` when it has none):
    the prefix run ends ``("stopped", switch step)``; finished arms are told by ``read_finished``."""
    metrics = run / "metrics.json"
    if not metrics.is_file():
        return "", 0
    figures = json.loads(metrics.read_text())
    return figures.get("status", ""), int(figures.get("iterations", 0))


def arms_root(run: Path) -> Path:
    """Where the arms of ``run`` (``<bank>/<method>/<input>/seed<k>``) go by default:
    ``<bank>/post_peak``, beside the bank the run comes from."""
    return run.parents[2] / "post_peak"


def switch_checkpoint(args, run: Path, root: Path, name: str) -> Path:
    """The checkpoint at the switch: ``--checkpoint``, or the prefix run's (made if needed)."""
    if args.checkpoint:
        return Path(args.checkpoint).resolve()
    prefix = root / "prefix" / name
    kept = prefix / f"step{args.switch_step}.ckpt"  # outside checkpoints/: the arms write their own folders
    if not kept.is_file():
        resume = prefix / "checkpoints" / "last.ckpt"
        if status(prefix) != ("stopped", args.switch_step):
            print(f"=== prefix {name}: steps 0-{args.switch_step}", flush=True)
            extra = ["--trainer.max_steps", str(args.switch_step)] + (["--ckpt_path", str(resume)] if resume.is_file() else [])
            code = fit_into(run / "config.yaml", root / "prefix", name, *extra, code=Path(args.code))
            if code != 0 or status(prefix) != ("stopped", args.switch_step):
                sys.exit(f"error: the prefix run in {prefix} did not stop at step {args.switch_step} (exit {code}); run the command again to resume it")
        shutil.copyfile(resume, kept)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the banked run's folder (its config.yaml is used)")
    parser.add_argument("--checkpoint", help="a copy of the banked run's checkpoint at the switch (default: made here)")
    parser.add_argument("--switch_step", type=int, default=SWITCH_STEP, help="global step of the switch (the prefix's end)")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated: " + ", ".join(ARMS))
    parser.add_argument("--code", default=str(ROOT), help="checkout whose lightning_deblur runs the arms")
    parser.add_argument("--root", help="where the arms go (default: post_peak/ beside the run's bank, "
                        "<bank>/post_peak for a run at <bank>/<method>/<input>/seed0)")
    args = parser.parse_args()
    unknown = sorted(set(args.arms.split(",")) - set(ARMS))
    if unknown:
        sys.exit(f"error: unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    run = Path(args.run).resolve()
    if not (run / "config.yaml").is_file() or len(run.parents) < 3:
        sys.exit(f"error: {run} is not a banked run (<bank>/<method>/<input>/seed<k> with a config.yaml); pass one with --run")
    root = Path(args.root).resolve() if args.root else arms_root(run)
    name = run.parent.name
    start = switch_checkpoint(args, run, root, name)
    code = 0
    for arm in args.arms.split(","):
        folder = root / arm
        if read_finished(folder / name) is not None:
            continue
        resume = folder / name / "checkpoints" / "last.ckpt"
        print(f"=== {arm} {name}", flush=True)
        start_from = str(resume if resume.is_file() else start)
        code = max(code, fit_into(run / "config.yaml", folder, name, "--ckpt_path", start_from, *ARMS[arm], code=Path(args.code)))
    sys.exit(code)


if __name__ == "__main__":
    main()
