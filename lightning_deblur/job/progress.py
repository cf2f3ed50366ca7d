"""The progress of a job: iteration, loss, and PSNR when a sharp reference is known.

On a terminal a tqdm bar; elsewhere (a batch job's stdout.log, CI, nohup) a plain line
every few steps, since a bar redrawn with carriage returns fills a file with every
intermediate state.
"""

from __future__ import annotations

import sys
import time

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

from lightning_deblur.core.errors import InputError
from lightning_deblur.job.lightning_internals import train_bar

LINES_PER_JOB = 50
"""Plain log lines of a job with the automatic interval: one every 2 % of the steps, so a
job of any length logs a few kilobytes."""


class JobProgressBar(TQDMProgressBar):
    """A tqdm bar over the job's iterations, or plain log lines when stdout is no terminal.

    Updating it reads the logged loss back to the host, so on an accelerator it
    refreshes only every ``refresh_rate`` steps.

    Args:
        refresh_rate: steps between refreshes of the bar; None picks 1 on CPU (where
            reading a value costs nothing) and 25 on accelerators; 0 shows no progress
            at all.
        log_every_n_steps: when stdout is not a terminal: steps between the plain lines
            (step/total, scale, loss, PSNR, elapsed time, ETA); None logs one line every
            2 % of the job (50 lines in all). The last step is always logged.
    """

    def __init__(self, refresh_rate: int | None = None, log_every_n_steps: int | None = None) -> None:
        # Before super().__init__, which reads is_enabled.
        self.plain_lines = False
        """True when stdout is not a terminal: the bar stays hidden and lines are printed."""
        super().__init__(refresh_rate=1 if refresh_rate is None else refresh_rate)
        self._automatic_rate = refresh_rate is None
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise InputError(f"--progress_bar.log_every_n_steps must be at least 1, got {log_every_n_steps}")
        self.log_every_n_steps = log_every_n_steps
        self._started_at = 0.0
        self._first_step = 0

    @property
    def total_train_batches(self) -> int | float:
        # The job's steps as planned so far (a restart adds a pass). Lightning's bar
        # counts the steps left instead when max_epochs is -1, as it is for a job.
        return self.trainer.lightning_module.plan.total_steps

    @property
    def is_enabled(self) -> bool:
        # Off a terminal the tqdm bar is never drawn; the plain lines keep their own test.
        return super().is_enabled and not self.plain_lines

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self._automatic_rate:
            self._refresh_rate = 1 if pl_module.device.type == "cpu" and trainer.strategy.root_device.type == "cpu" else 25
        isatty = getattr(sys.stdout, "isatty", None)
        self.plain_lines = not (isatty and isatty())

    def on_train_start(self, trainer: Trainer, *args) -> None:
        super().on_train_start(trainer, *args)
        # A resumed job starts at its checkpoint's step: the rate counts this run's steps only.
        self._started_at, self._first_step = time.monotonic(), trainer.global_step

    def on_train_epoch_start(self, trainer: Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(self.description(trainer.lightning_module))

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        # The scale changes between steps; the description is plain Python state, no sync.
        if pl_module.step_in_scale == 0 and train_bar(self) is not None and not self.is_disabled:
            self.train_progress_bar.set_description(self.description(pl_module))
            self.train_progress_bar.total = self.total_train_batches  # a restart adds a pass

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        total = self.total_train_batches
        step = trainer.global_step
        # super().is_enabled: off unless refresh_rate is 0 (no progress wanted) or another rank.
        wanted = self.plain_lines and super().is_enabled and trainer.is_global_zero
        if wanted and logs_step(step, total, self.log_every_n_steps):
            sys.stdout.write(self.log_line(trainer, pl_module, step, total) + "\n")
            sys.stdout.flush()  # a file's buffer would hold the lines back until the job ends

    def log_line(self, trainer: Trainer, pl_module: LightningModule, step: int, total: int) -> str:
        """``step 120/6000 (2%) | deblurring, scale 1/3 | loss 0.0123 | PSNR 21.30 dB | elapsed 0:01:02 | ETA 0:50:10``
        (PSNR only with a sharp reference; times as H:MM:SS)."""
        elapsed = time.monotonic() - self._started_at
        done = step - self._first_step
        remaining = elapsed / done * (total - step) if done > 0 else None
        parts = [f"step {step}/{total} ({100 * step // max(total, 1)}%)", self.description(pl_module)]
        metrics = self.get_metrics(trainer, pl_module)
        if "psnr" in metrics:
            metrics["PSNR"] = f"{metrics.pop('psnr')} dB"
        parts += [f"{name} {value}" for name, value in metrics.items()]
        parts += [f"elapsed {clock(elapsed)}", f"ETA {clock(remaining) if remaining is not None else '?'}"]
        return " | ".join(parts)

    @staticmethod
    def description(pl_module: LightningModule) -> str:
        plan = pl_module.plan
        if plan is not None and pl_module.current_scale.finishing:
            index = pl_module.scale_index - plan.blind_scale_count
            return f"non-blind finishing, tile {index + 1}/{plan.tile_count}" if plan.tile_count > 1 else "non-blind finishing"
        if plan is not None and len(plan.stages) > 1:
            stage = pl_module.current_scale
            if stage.probe:
                return "probing the kernel size"
            words = f"deblurring, scale {plan.scale_number(stage) + 1}/{plan.scale_count}"
            if stage.attempt:
                words += f", restart {stage.attempt}"
            return words if stage.start is None else f"{words}, start {stage.start + 1}/{plan.starts}"
        return "deblurring"

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        """Loss and PSNR of the latest step, read back from the device only here."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        for name in ("loss", "psnr"):
            value = getattr(pl_module, f"latest_{name}", None)
            if value is not None:
                metrics[name] = f"{value.item():.4g}" if name == "loss" else f"{value.item():.2f}"
        return metrics


def logs_step(step: int, total: int, every: int | None = None) -> bool:
    """Whether global step ``step`` (1-based, of ``total``) gets a plain line: every
    ``every`` steps, by default every 2 % of the job, and always the last one."""
    every = every or max(1, round(total / LINES_PER_JOB))
    return step % every == 0 or step == total


def clock(seconds: float) -> str:
    """Seconds as ``H:MM:SS``."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
