"""Coarse-to-fine estimation: how the generators are re-fitted to a starting estimate,
and the callback that moves a job from stage to stage (the stages themselves are planned
in :mod:`lightning_deblur.core.planning`; resampling and the fitting loop are the core's,
:mod:`lightning_deblur.core.resample` and :mod:`lightning_deblur.core.fitting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_deblur.core.centring import centre_kernel
from lightning_deblur.core.fitting import fit_generator
from lightning_deblur.job.image_logging import ImageLogging
from lightning_deblur.core.imagefiles import write_image, write_kernel_npy, write_kernel_png
from lightning_deblur.core.planning import Scale
from lightning_deblur.core.resample import gaussian_kernel, magnify
from lightning_deblur.core.verdict import NO_BLUR
from lightning_deblur.job.lightning_internals import step_limit


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


def handed_up(x: torch.Tensor, k: torch.Tensor, coarse: Scale, fine: Scale) -> tuple[torch.Tensor, torch.Tensor]:
    """The starting estimates of scale ``fine`` made from scale ``coarse``'s estimates.

    Both are magnified by the factor between the two scales' *inputs* (``fine.image_size /
    coarse.image_size`` per axis) about their centres, the common centre of the supports
    and of the observations. The supports themselves grow by another factor (the kernel
    margin does not scale with the image, and the kernel floor keeps coarse kernels
    large), so resizing one support onto the other would magnify by the wrong amount and
    hand up an estimate out of register with the finer input. The image is sampled on
    ``fine.support`` (edges repeated where that reaches beyond the magnified estimate),
    the kernel on ``fine.kernel_size`` (zero outside; mass beyond it cut off), kept
    non-negative and renormalized to sum 1.

    Args:
        x: ``(1, C, *coarse.support)`` image estimate, values in [0, 1].
        k: ``(*coarse.kernel_size)`` kernel estimate.
        coarse, fine: consecutive blind scales of one plan.

    Returns:
        ``(1, C, *fine.support)`` float32 image and ``(*fine.kernel_size)`` float32 kernel.
    """
    factor = tuple(f / c for f, c in zip(fine.image_size, coarse.image_size))
    x_up = magnify(x, factor, fine.support, padding="border")
    k_up = magnify(k[None, None], factor, fine.kernel_size, padding="zeros")[0, 0].clamp_min(0)
    return x_up, k_up / k_up.sum()


class ScaleTransition(Callback):
    """Moves a :class:`DeblurJob` through its scale plan.

    - At the start: fits G_k to the initial Gaussian kernel (if the job asks for it).
    - With several starts of the coarsest scale: at the end of each, has the job score it
      (``end_start``: after the last one, the job takes back the best start's state) and
      logs its score under ``start/``; before the next start (fresh generators, drawn by
      the job), fits G_k to the initial Gaussian kernel again, with a new optimizer.
    - At the end of every scale but the last: magnifies the image and kernel estimates
      onto the next scale's support and kernel size (:func:`handed_up`), lets the job switch its data
      and input noise to the next scale and give G_k an output layer of the new size,
      fits both nets to the upsampled estimates, and has the strategy set up a new
      optimizer and scheduler over the new parameters (``setup_optimizers``). The
      per-stage step counter the schedules read restarts.
    - At the end of every finishing tile: adds its estimate to the whole-image blend;
      before the next tile, the job resets the image net and this callback fits it to the
      tile's starting estimate (when the job has one), with a new optimizer again.
    - With ``restarts``, at the end of each pass over the blind scales has the job judge
      it (``end_attempt``), logs the verdict under ``attempt/``, and when the job
      restarts, extends the Trainer's step budget by the new pass; the restart's coarsest
      scale begins as the job did, with only the kernel fitted (the image net goes on
      from the last pass's weights).
    - With ``--data.kernel_size auto``, at the end of the probe has the job choose the
      kernel size (``end_probe``: the plan's later stages replaced), logs it under
      ``kernel_size/``, and begins the method's first stage as the job would have
      begun without the probe: fresh generators, only the kernel fitted.
    - After the finest blind scale, has the job centre its kernel (``end_blind_scales``);
      with ``centre_kernel_between_scales``, centres every coarser scale's estimates
      before the next scale's generators are fitted to them.
    - When the fit stops at a stage's end (``--trainer.max_steps``, a time budget, a
      signal), ends that stage but enters no other: the job's results are the ended
      stage's estimate, and a fit resumed from its checkpoint enters the next stage first.
    - Writes every blind scale's estimate into ``<run folder>/scales/`` and logs the state right
      after each re-fit to TensorBoard under ``refit/``.

    The job attaches this callback itself (``configure_callbacks``).
    """

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.global_step == 0:
            if self._fit_initial_kernel(pl_module):
                self._log_refit(trainer, pl_module, include_image=False)
        elif pl_module.between_stages:
            # Resumed from a fit that stopped at a stage's end: enter the next stage now,
            # as the uninterrupted fit did right after that step (the RNG is restored).
            self._enter_next_stage(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not self.end_stage(trainer, pl_module) or not pl_module.between_stages:
            return
        if self._fit_ends_now(trainer):
            # Its results are the ended stage's estimate, not the next stage's freshly
            # fitted nets; the checkpoint enters the next stage when resumed.
            return
        self._enter_next_stage(trainer, pl_module)

    @staticmethod
    def _fit_ends_now(trainer: Trainer) -> bool:
        """Whether the fit ends after the step just taken: told to stop (a time budget, a
        signal; the job's own callbacks that say so act before this one) or at its step
        limit (``--trainer.max_steps``, or the plan's last step)."""
        limit = step_limit(trainer)
        return trainer.should_stop or (limit is not None and 0 <= limit <= trainer.global_step)

    @classmethod
    def _enter_next_stage(cls, trainer: Trainer, job) -> None:
        entered = cls._enter_and_refit(job)
        # New parameters need a new optimizer (and learning-rate scheduler): the strategy
        # makes them from configure_optimizers as it did at the start of the fit.
        trainer.strategy.setup_optimizers(trainer)
        cls._log_refit(trainer, job, include_image=not job.plan.begins_afresh(entered))

    @classmethod
    def end_stage(cls, trainer: Trainer, job) -> bool:
        """If this step was the last of ``job``'s stage, end it (scales/, starts, verdicts,
        centring, the kernel-size probe's choice, a tile's blend) and return ``True``."""
        scale = job.current_scale
        if trainer.global_step != scale.end_step or job.failure is not None:
            return False
        if scale.finishing:
            job.blend_finished_tile()
        else:
            # scales/ keeps the estimate as the optimization left it; the job centres it
            # (after its finest blind scale) before anything else uses it.
            cls._save_scale(trainer, job, scale)
            if scale.start is not None:
                job.end_start()
                cls._log_start(trainer, job, scale)
            attempts = job.plan.attempts
            record = job.end_attempt()  # a restart grows the plan, and with it max_steps
            if record is not None:
                cls._log_attempt(trainer, job, record, restarted=job.plan.attempts > attempts)
            job.end_blind_scales()
            choice = job.end_probe()  # the chosen kernel size replaces the later stages
            if choice is not None:
                cls._log_kernel_size(trainer, choice)
        return True

    @classmethod
    def _enter_and_refit(cls, job) -> Scale:
        """Enter the stage after ``job``'s ended one and prepare it (re-fits included);
        return it. The caller sets up the new optimizer."""
        scale = job.current_scale
        x_previous, k_previous = job.latest_x, job.latest_k
        job.enter_scale(scale.index + 1)
        nxt = job.current_scale
        if nxt.finishing:
            # The kernel is now fixed; the image net starts each tile from the job's
            # starting estimate for it (none in a non-blind job).
            start = job.finishing_start()
            if start is not None:
                cls._fit_image(job, start)
        elif job.plan.begins_afresh(nxt):
            # A new start, a restart or the method after the kernel-size probe begins as the
            # job did: only the kernel fitted (the job drew fresh nets for a start and after
            # the probe; a restart's image net goes on from the last pass).
            cls._fit_initial_kernel(job)
        else:
            if job.centre_kernel_between_scales:
                x_previous, k_previous, _, _ = centre_kernel(x_previous, k_previous)
            x_target, k_target = handed_up(x_previous, k_previous, scale, nxt)
            cls._fit_image(job, x_target)
            cls._fit_kernel(job, k_target)
        return nxt

    # ---------------------------------------------------------------- helpers
    @classmethod
    def _fit_initial_kernel(cls, pl_module) -> bool:
        """Fit G_k to the Gaussian of the current (coarsest) kernel size, if the job is
        blind and asks for it; say whether it did."""
        if pl_module.kernel_net is None or pl_module.refit_spec.initial_kernel != "gaussian":
            return False
        cls._fit_kernel(pl_module, gaussian_kernel(pl_module.current_scale.kernel_size, device=pl_module.device))
        return True

    @staticmethod
    def _fit_image(pl_module, target: torch.Tensor) -> None:
        spec = pl_module.refit_spec
        report = fit_generator(
            pl_module.image_net, pl_module.z_x, target, spec.image_rmse, spec.image_lr, spec.max_iterations,
            fused=pl_module.optimizer_spec.fused,
        )
        pl_module.refit_reports.append(("image", pl_module.scale_index, report))

    @staticmethod
    def _fit_kernel(pl_module, target: torch.Tensor) -> None:
        spec = pl_module.refit_spec
        tolerance = spec.kernel_rmse * float(target.max())
        report = fit_generator(
            pl_module.kernel_net, pl_module.z_k, target, tolerance, spec.kernel_lr, spec.max_iterations,
            fused=pl_module.optimizer_spec.fused,
        )
        pl_module.refit_reports.append(("kernel", pl_module.scale_index, report))

    @staticmethod
    def _log_refit(trainer: Trainer, pl_module, include_image: bool) -> None:
        """Take the re-fitted nets' output as the job's latest estimate and log the
        re-fits of the current stage."""
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
    def _log_start(trainer: Trainer, pl_module, scale: Scale) -> None:
        """The ended start's score and signals under ``start/``, and after the last start
        the one chosen (``start/chosen``, 0-based)."""
        prefix = "start/"
        metrics = {prefix + name: value for name, value in pl_module.start_records[-1].as_metrics().items()}
        if scale.start == pl_module.plan.starts - 1:
            metrics[prefix + "chosen"] = float(pl_module.chosen_start)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _log_kernel_size(trainer: Trainer, choice: dict) -> None:
        """The size the kernel-size probe chose under ``kernel_size/`` (height, width) and
        the probe kernel's centred extent (probe pixels)."""
        (height, width), (extent_h, extent_w) = choice["kernel_size"], choice["probe_extent"]
        metrics = {"kernel_size/height": float(height), "kernel_size/width": float(width)}
        metrics.update({"kernel_size/probe_extent_height": extent_h, "kernel_size/probe_extent_width": extent_w})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _log_attempt(trainer: Trainer, pl_module, record: dict, restarted: bool) -> None:
        """The verdict on the pass that just ended under ``attempt/``: ``no_blur`` (1 or 0),
        its signals, and ``restarted`` (1 when another pass follows)."""
        prefix = "attempt/"
        metrics = {prefix + name: float(value) for name, value in record["verdict_signals"].items()}
        metrics[prefix + "no_blur"] = float(record["verdict"] == NO_BLUR)
        metrics[prefix + "restarted"] = float(restarted)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _save_scale(trainer: Trainer, pl_module, scale: Scale) -> None:
        # Without a logger there is no run folder to keep them in.
        if not trainer.is_global_zero or pl_module.latest_x is None or not trainer.loggers:
            return
        folder = pl_module.run_folder() / "scales"
        image, kernel = pl_module.estimate()
        prefix = folder / pl_module.plan.scale_name(scale)
        write_image(f"{prefix}_image.png", image[0, 0].double().cpu().numpy())
        kernel_array = kernel.float().cpu().numpy()
        write_kernel_npy(f"{prefix}_kernel.npy", kernel_array / kernel_array.sum(dtype=np.float64))
        write_kernel_png(f"{prefix}_kernel.png", kernel_array)
