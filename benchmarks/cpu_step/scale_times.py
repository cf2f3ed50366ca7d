"""Per-scale cost of an improved-method job against the original configuration.

Runs the real `fit` configuration of both methods on a Levin image (255×255, kernel
27×27 by default) for a few steps per scale, timing every step and every re-fit, and
reports measured seconds per step per scale, measured re-fit times, and the whole-job
times they imply for the full schedules (500 + 500 + 5000 iterations against 5000). The
implied totals are products of measured step times and iteration counts, not timings of
whole jobs.

    .venv/bin/python benchmarks/cpu_step/scale_times.py --size 255 --kernel 27 --steps 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import ROOT, save  # noqa: E402
from lightning.pytorch import Callback
from step_time import make_input

from lightning_deblur.commands.fit import DeblurCLI
from lightning_deblur.job.multiscale import ScaleTransition



class Clock(Callback):
    def __init__(self):
        self.steps: dict[int, list[float]] = {}
        self._start = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()
        self._scale = pl_module.scale_index

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Recorded before the scale transition runs (the job's own callbacks come last).
        self.steps.setdefault(self._scale, []).append(time.perf_counter() - self._start)


def run(config: str, image: Path, kernel: int, steps: int, logs: Path) -> tuple[dict, list, object]:
    refits: list[tuple[int, float]] = []
    original = ScaleTransition.on_train_batch_end

    def timed(self, trainer, pl_module, *args):
        start, scale = time.perf_counter(), pl_module.scale_index
        original(self, trainer, pl_module, *args)
        if pl_module.scale_index != scale:
            refits.append((pl_module.scale_index, time.perf_counter() - start))

    ScaleTransition.on_train_batch_end = timed
    try:
        cli = DeblurCLI(
            args=[
                "--config", str(ROOT / "configs" / config), "--data.image", str(image),
                "--data.kernel_size", str(kernel), "--model.iterations", str(steps),
                "--model.scales.coarse_iterations", str(steps), "--trainer.logger.init_args.save_dir", str(logs),
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--outputs.verbose", "false", "--image_logging.every_n_steps", "0",
            ],  # fmt: skip
            run=False,
        )
        clock = Clock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        ScaleTransition.on_train_batch_end = original
    return clock.steps, refits, cli.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=255)
    parser.add_argument("--kernel", type=int, default=27)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per scale (the first is dropped)")
    args = parser.parse_args()
    report = {"config": vars(args)}
    with tempfile.TemporaryDirectory() as folder:
        image = make_input(Path(folder), args.size)
        for method, config, full in (("improved", "improved.yaml", [500, 500, 5000]), ("original", "selfdeblur.yaml", [5000])):
            steps, refits, job = run(config, image, args.kernel, args.steps, Path(folder) / method)
            per_step = {scale: statistics.median(times[1:]) for scale, times in steps.items()}
            scales = []
            for scale in job.plan.stages:
                refit = sum(t for index, t in refits if index == scale.index)
                implied = per_step[scale.index] * full[scale.index] + refit
                scales.append({
                    "scale": scale.index, "image": scale.image_size, "kernel": scale.kernel_size,
                    "s_per_step": per_step[scale.index], "refit_s": refit, "iterations": full[scale.index],
                    "implied_s": implied,
                })  # fmt: skip
                print(f"{method} scale {scale.index}: {scale.image_size[0]}×{scale.image_size[1]}, kernel "
                      f"{scale.kernel_size[0]}, {per_step[scale.index]:.3f} s/step, re-fit {refit:.1f} s "
                      f"-> {full[scale.index]} iterations ≈ {implied / 60:.1f} min", flush=True)  # fmt: skip
            total = sum(s["implied_s"] for s in scales)
            report[method] = {"scales": scales, "implied_total_s": total}
            print(f"{method}: implied whole job {total / 3600:.2f} h", flush=True)
    ratio = report["improved"]["implied_total_s"] / report["original"]["implied_total_s"]
    print(f"improved / original: {ratio:.3f}")
    report["improved_over_original"] = ratio
    print(f"saved {save(f'scale_times_{args.size}_{args.kernel}', report)}")


if __name__ == "__main__":
    main()
