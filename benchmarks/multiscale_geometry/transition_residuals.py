"""How well one scale's true estimates, handed up, re-blur to the next scale's input:
the job's transition (magnified by the inputs' factor) against the earlier one (each
support resized onto the next), on the continuous scene of
tests/test_multiscale_geometry.py.

    .venv/bin/python benchmarks/multiscale_geometry/transition_residuals.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import save  # noqa: E402
from test_multiscale_geometry import Scene, misregistration, rms  # noqa: E402

from lightning_deblur.job.data import Observation  # noqa: E402
from lightning_deblur.job.multiscale import handed_up  # noqa: E402
from lightning_deblur.core.physics import blur_valid  # noqa: E402
from lightning_deblur.core.planning import ScalesSpec, plan_job  # noqa: E402
from lightning_deblur.core.generators import ImageNetSpec  # noqa: E402
from lightning_deblur.core.kernel_crop import KernelCropSpec  # noqa: E402
from lightning_deblur.core.resample import resize_image, resize_kernel  # noqa: E402
from lightning_deblur.core.tiles import FinishSpec  # noqa: E402

CASES = [((255, 255), (27, 27)), ((255, 255), (11, 11)), ((96, 96), (9, 9)), ((117, 95), (21, 15))]


def support_resize(x, k, coarse, fine):
    """The transition before the fix: each support resized onto the next."""
    return resize_image(x, fine.support), resize_kernel(k, fine.kernel_size)


def main() -> None:
    rows = []
    for image_size, kernel_size in CASES:
        scene = Scene(image_size, kernel_size)
        plan = plan_job(
            Observation(torch.zeros(1, 1, *image_size), kernel_size, source=None), blind=True, colour="luminance",
            image_spec=ImageNetSpec(levels=3), scales=ScalesSpec(), iterations=1,
            kernel_crop=KernelCropSpec(size=None), finish=FinishSpec(),
        )  # fmt: skip
        stages = plan.stages
        x_full, k_full = scene.truth(image_size, stages[-1].support, kernel_size)
        y_full = blur_valid(x_full, k_full)
        for coarse, fine in zip(stages, stages[1:]):
            y_fine = resize_image(y_full.float(), fine.image_size)  # as the job makes it
            x_coarse, k_coarse = scene.truth(coarse.image_size, coarse.support, coarse.kernel_size)
            row = {"image": list(image_size), "kernel": list(kernel_size), "from": [*coarse.image_size, *coarse.kernel_size],
                   "to": [*fine.image_size, *fine.kernel_size]}  # fmt: skip
            for name, transition in (("inputs_factor", handed_up), ("support_resize", support_resize)):
                reblurred = blur_valid(*transition(x_coarse.float(), k_coarse.float(), coarse, fine))
                shift_rows, shift_cols, magnification = misregistration(reblurred, y_fine)
                row[name] = {"rms": round(rms(reblurred, y_fine), 5), "shift_px": [round(shift_rows, 4), round(shift_cols, 4)],
                             "magnification_error": round(magnification, 5)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row))
    # Float32 resampling rounded to 5 digits: the same figures on any machine.
    save("transition_residuals", {"rows": rows}, Path(__file__).resolve().parent / "results", measured_here=False)


if __name__ == "__main__":
    main()
