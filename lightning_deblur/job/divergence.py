"""Stops a job whose loss is no longer finite or whose image collapsed to a constant.

Such a job keeps its last good estimate: the result files are written from it and
``metrics.json`` says ``"status": "failed"`` with the reason, so a batch records it as
failed while the user still gets the best image the job reached.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class DivergenceGuard(Callback):
    """Checks the job every ``every_n_steps`` steps (a host sync, so not every step).

    A check passes when the loss is finite and the image estimate's standard deviation
    is at least ``min_std``; the estimate is then remembered as the last good one. A
    failing check restores the last good estimate, records the reason in
    ``pl_module.failure`` and stops the trainer.

    Args:
        every_n_steps: interval between checks, in steps.
        min_std: smallest standard deviation (on [0, 1]) of a non-collapsed image.
    """

    def __init__(self, every_n_steps: int = 25, min_std: float = 1e-3) -> None:
        self.every_n_steps = every_n_steps
        self.min_std = min_std
        self._last_good: tuple[torch.Tensor, torch.Tensor, int, int] | None = None
        """Estimate, kernel, step and stage of the last good check."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_good = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        last_step_of_scale = step == pl_module.current_scale.end_step
        if not self.every_n_steps or (step % self.every_n_steps and not last_step_of_scale):
            return
        if pl_module.failure is None:
            self.check(trainer, pl_module, step)

    def check(self, trainer: Trainer, job, step: int) -> None:
        """Remember ``job``'s estimate as good, or fail it and stop the trainer."""
        reason = self.problem(job)
        if reason is None:
            self._last_good = (job.latest_x.clone(), job.latest_k.clone(), step, job.scale_index)
            return
        last_good = self._last_good
        if last_good is not None and last_good[3] == job.scale_index:
            job.latest_x, job.latest_k = last_good[0], last_good[1]
            kept = f"the estimate of step {last_good[2]} is kept"
        else:
            kept = "no good estimate at this scale to keep"
            job.latest_x = None
        job.failure = f"{reason} at step {step}; {kept}"
        trainer.should_stop = True

    def problem(self, pl_module: LightningModule) -> str | None:
        """Why the current state is bad, or ``None`` when it is fine."""
        if pl_module.latest_loss is None:
            return None
        if not bool(torch.isfinite(pl_module.latest_loss)):
            return "the loss is not finite (diverged)"
        if not bool(torch.isfinite(pl_module.latest_x).all()):
            return "the image estimate holds NaN or inf values"
        if float(pl_module.latest_x.std()) < self.min_std:
            return f"the image estimate collapsed to a constant (std < {self.min_std:g})"
        return None
