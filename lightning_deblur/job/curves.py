"""The course of a job as a small table: loss terms and quality every N steps (``curve.csv``)."""

from __future__ import annotations

import math

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_deblur.core.alignment import aligned_psnr, fits_levin_comparison
from lightning_deblur.core.curve_table import write_curve
from lightning_deblur.core.losses import LOSS_TERMS
from lightning_deblur.core.metrics import psnr


class QualityCurve(Callback):
    """Records a row of :data:`CURVE_COLUMNS` every ``every_n_steps`` steps and at the last
    step of every stage, and writes them to ``curve.csv`` in the run folder when the job
    ends (atomically). The rows so far travel in checkpoints, so a resumed job writes
    the same table as an uninterrupted one. Each row's shift-aligned PSNR also goes to
    the loggers (TensorBoard's ``aligned_psnr``) as it is taken.

    Quality is scored on the estimate as the results would register it
    (:meth:`~lightning_deblur.job.stages.JobStages.estimate_as_written`), so the last row's
    PSNR is ``metrics.json``'s.

    Reading the values back is a host sync and the aligned PSNR searches 1681 shifts, so
    rows are only taken at these intervals.

    Args:
        every_n_steps: interval in steps; 0 turns the table off.
    """

    def __init__(self, every_n_steps: int = 100) -> None:
        if every_n_steps < 0:
            raise ValueError(f"curve.every_n_steps must be 0 or positive, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.rows: list[dict] = []
        """Rows so far."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not self.every_n_steps:
            return
        step = trainer.global_step  # counts the step that just ended
        scale = pl_module.current_scale
        last_of_scale = step == scale.start_step + scale.iterations
        if step % self.every_n_steps == 0 or last_of_scale:
            if pl_module.latest_x is not None:
                row = self.row(trainer, pl_module, step)
                self.rows.append(row)
                if row["aligned_psnr"] is not None:
                    # The figure to read (a blind result is defined up to a small shift);
                    # the per-step `psnr` compares pixel for pixel.
                    for logger in trainer.loggers:
                        logger.log_metrics({"aligned_psnr": row["aligned_psnr"]}, step=step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.every_n_steps or not trainer.is_global_zero:
            return
        if self.rows:
            write_curve(pl_module.run_folder() / "curve.csv", self.rows)

    @staticmethod
    @torch.no_grad()
    def row(trainer: Trainer, pl_module: LightningModule, step: int) -> dict:
        """The values of :data:`CURVE_COLUMNS` after ``step`` steps."""
        scale = pl_module.current_scale
        logged = trainer.callback_metrics
        row = {"step": step, "scale": scale.index, "step_in_scale": step - scale.start_step}
        row["loss"] = float(pl_module.latest_loss) if pl_module.latest_loss is not None else math.nan
        for term in LOSS_TERMS:
            value = logged.get(f"loss/{term}")
            row[term] = float(value) if value is not None and pl_module.loss_weights.get(term, 0) != 0 else None
        row["kernel_peak"] = float(pl_module.latest_k.max()) if pl_module.latest_k is not None else None
        row["psnr"] = row["aligned_psnr"] = None
        sharp = pl_module.sharp
        if sharp is not None and not scale.finishing:
            estimate = pl_module.estimate_as_written().float()
            sharp = sharp.float()
            row["psnr"] = float(psnr(estimate, sharp))
            if fits_levin_comparison(sharp):
                row["aligned_psnr"] = float(aligned_psnr(estimate, sharp)[0])
        return row

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict) -> None:
        # Checkpoints of the 0.1 series keep the rows per job of a seed batch ("" for a job
        # of its own).
        self.rows = list(state_dict["rows_by_job"].get("", []) if "rows_by_job" in state_dict else state_dict.get("rows", []))
