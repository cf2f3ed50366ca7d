"""Coarse-to-fine estimation: the scale plan, resampling between scales, and the
scale-transition callback that re-fits both generators to the upsampled estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_deblur.centring import centre_kernel
from lightning_deblur.fitting import fit_generator
from lightning_deblur.image_logging import ImageLogging
from lightning_deblur.imagefiles import write_image, write_kernel_npy, write_kernel_png
from lightning_deblur.physics import support_size
from lightning_deblur.resample import gaussian_kernel, odd_size, resize_image, resize_kernel
from lightning_deblur.tiles import Box


@dataclass
class ScalesSpec:
    """How many scales, how far apart, and how long each runs.

    Attributes:
        count: number of scales; 1 runs at full resolution only (the original method).
        ratio: size ratio between consecutive scales; the coarsest is ``ratio**-(count-1)``
            of the input (1/2 for 3 scales at √2).
        min_kernel_size: floor of the kernel side at coarse scales (odd, pixels); never
            above the full kernel size.
        coarse_iterations: iterations at every scale but the finest.
    """

    count: int = 3
    ratio: float = math.sqrt(2)
    min_kernel_size: int = 7
    coarse_iterations: int = 500


@dataclass
class RefitSpec:
    """Initialization of the generators by fitting them to a starting estimate.

    Attributes:
        initial_kernel: ``gaussian``: at the coarsest scale, fit G_k to a Gaussian whose σ
            equals the kernel half-width; ``none``: start from the random net.
        image_rmse: fit G_x until the RMSE to the upsampled image is at most this.
        kernel_rmse: fit G_k until the RMSE to the target kernel is at most this fraction
            of the target's peak value (the kernel analogue of ``image_rmse`` on a [0, 1]
            image).
        max_iterations: cap on the Adam steps of each fit (reaching it is logged).
        image_lr: Adam learning rate of the image fit.
        kernel_lr: Adam learning rate of the kernel fit.
    """

    initial_kernel: Literal["gaussian", "none"] = "gaussian"
    image_rmse: float = 10 / 255
    kernel_rmse: float = 10 / 255
    max_iterations: int = 2000
    image_lr: float = 0.01
    kernel_lr: float = 0.001


@dataclass(frozen=True)
class Scale:
    """One scale of the plan.

    Attributes:
        index: 0 is the coarsest.
        image_size: ``(H, W)`` of the observation at this scale, pixels.
        kernel_size: ``(kh, kw)`` at this scale, odd.
        iterations: optimization steps at this scale.
        start_step: global step at which the scale begins.
        finishing: a non-blind stage after the blind scales (or the whole of a
            non-blind job): the kernel is fixed and the image net deblurs one tile of the
            full-size observation (``tile``) in ``channels`` channels.
        channels: image channels of the stage: 1 (luminance or grey) or 3 (RGB).
        tile: the box of the full-size observation a finishing stage deblurs.
    """

    index: int
    image_size: tuple[int, int]
    kernel_size: tuple[int, int]
    iterations: int
    start_step: int
    finishing: bool = False
    channels: int = 1
    tile: Box | None = None

    @property
    def support(self) -> tuple[int, int]:
        return support_size(self.image_size, self.kernel_size)

    @property
    def end_step(self) -> int:
        return self.start_step + self.iterations


def plan_scales(
    image_size: tuple[int, int], kernel_size: tuple[int, int], spec: ScalesSpec, finest_iterations: int
) -> list[Scale]:
    """Sizes and iteration budgets of every scale, coarsest first.

    Scale ``s`` of ``n`` has factor ``ratio**-(n-1-s)``; its image size is the input size
    times the factor, rounded; its kernel size the full kernel size times the factor,
    rounded to odd, at least ``min_kernel_size`` (and at most the full size).
    """
    if spec.count < 1:
        raise ValueError(f"the number of scales must be at least 1, got {spec.count}")
    scales, start = [], 0
    for index in range(spec.count):
        factor = spec.ratio ** -(spec.count - 1 - index)
        finest = index == spec.count - 1
        # Half-up rounding with a little slack: √2·√2 is not exactly 2 in floating point.
        image = image_size if finest else tuple(max(1, math.floor(side * factor + 0.5 + 1e-9)) for side in image_size)
        kernel = (
            kernel_size
            if finest
            else tuple(min(full, max(spec.min_kernel_size, odd_size(full * factor))) for full in kernel_size)
        )
        iterations = finest_iterations if finest else spec.coarse_iterations
        scales.append(Scale(index, image, kernel, iterations, start))
        start += iterations
    return scales


class ScaleTransition(Callback):
    """Moves a :class:`DeblurJob` through its scale plan.

    - At the start: fits G_k to the initial Gaussian kernel (if the job asks for it).
    - At the end of every scale but the last: upsamples the image estimate to the next
      support size and the kernel to the next kernel size, lets the job switch its data
      and input noise to the next scale and give G_k an output layer of the new size,
      fits both nets to the upsampled estimates, and hands the trainer a new optimizer
      over the new parameters. The per-scale step counter the schedules read restarts.
    - At the end of every finishing tile: adds its estimate to the whole-image blend;
      before the next tile, the job resets the image net and this callback fits it to the
      tile's starting estimate (when the job has one), with a new optimizer again.
    - After the finest blind scale, has the job centre its kernel (``end_blind_scales``);
      with ``centre_kernel_between_scales``, centres every coarser scale's estimates
      before the next scale's generators are fitted to them.
    - Writes every blind scale's estimate into ``<run folder>/scales/`` and logs the state right
      after each re-fit to TensorBoard under ``refit/``.

    The job attaches this callback itself (``configure_callbacks``).
    """

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        blind = pl_module.kernel_net is not None
        if blind and pl_module.refit_spec.initial_kernel == "gaussian" and pl_module.global_step == 0:
            scale = pl_module.current_scale
            target = gaussian_kernel(scale.kernel_size, device=pl_module.device)
            self._fit_kernel(pl_module, target)
            self._log_refit(trainer, pl_module, include_image=False)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        scale = pl_module.current_scale
        if trainer.global_step != scale.end_step or pl_module.failure is not None:
            return
        if scale.finishing:
            pl_module.blend_finished_tile()
        else:
            # scales/ keeps the estimate as the optimization left it; the job centres it
            # (after its finest blind scale) before anything else uses it.
            self._save_scale(trainer, pl_module, scale)
            pl_module.end_blind_scales()
        if scale.index + 1 >= len(pl_module.plan):
            return
        x_previous, k_previous = pl_module.latest_x, pl_module.latest_k
        pl_module.enter_scale(scale.index + 1)
        nxt = pl_module.current_scale
        if nxt.finishing:
            # The kernel is now fixed; the image net starts each tile from the job's
            # starting estimate for it (none in a non-blind job).
            start = pl_module.finishing_start()
            if start is not None:
                self._fit_image(pl_module, start)
        else:
            if pl_module.centre_kernel_between_scales:
                x_previous, k_previous, _, _ = centre_kernel(x_previous, k_previous)
            self._fit_image(pl_module, resize_image(x_previous, nxt.support))
            self._fit_kernel(pl_module, resize_kernel(k_previous, nxt.kernel_size))
        # New parameters need a new optimizer, and the trainer must be handed it: the
        # module's own reference alone is not what the fit loop steps.
        trainer.strategy.optimizers = [pl_module.configure_optimizers()]
        self._log_refit(trainer, pl_module, include_image=True)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _fit_image(pl_module, target: torch.Tensor) -> None:
        spec = pl_module.refit_spec
        report = fit_generator(
            pl_module.image_net, pl_module.z_x, target, spec.image_rmse, spec.image_lr, spec.max_iterations
        )
        pl_module.refit_reports.append(("image", pl_module.scale_index, report))

    @staticmethod
    def _fit_kernel(pl_module, target: torch.Tensor) -> None:
        spec = pl_module.refit_spec
        tolerance = spec.kernel_rmse * float(target.max())
        report = fit_generator(
            pl_module.kernel_net, pl_module.z_k, target, tolerance, spec.kernel_lr, spec.max_iterations
        )
        pl_module.refit_reports.append(("kernel", pl_module.scale_index, report))

    @staticmethod
    def _log_refit(trainer: Trainer, pl_module, include_image: bool) -> None:
        with torch.no_grad():
            x, k = pl_module(perturb=False)
        pl_module.latest_x, pl_module.latest_k = x.detach().float(), k.detach()
        step = trainer.global_step
        for logger in trainer.loggers:
            metrics = {"scale": float(pl_module.scale_index)}
            for name, scale_index, report in pl_module.refit_reports:
                if scale_index == pl_module.scale_index:
                    metrics[f"refit/{name}_iterations"] = float(report.iterations)
                    metrics[f"refit/{name}_rmse"] = report.rmse
            logger.log_metrics(metrics, step=step)
        if include_image:
            ImageLogging.log_estimate(trainer, pl_module, "refit", step)
        else:
            ImageLogging.log_kernel(trainer, pl_module, "refit", step)

    @staticmethod
    def _save_scale(trainer: Trainer, pl_module, scale: Scale) -> None:
        # Without a logger there is no run folder to keep them in.
        if not trainer.is_global_zero or pl_module.latest_x is None or not trainer.loggers:
            return
        folder = Path(trainer.log_dir) / "scales"
        image, kernel = pl_module.estimate()
        prefix = folder / f"scale{scale.index}"
        write_image(f"{prefix}_image.png", image[0, 0].double().cpu().numpy())
        kernel_array = kernel.float().cpu().numpy()
        write_kernel_npy(f"{prefix}_kernel.npy", kernel_array / kernel_array.sum(dtype=np.float64))
        write_kernel_png(f"{prefix}_kernel.png", kernel_array)
