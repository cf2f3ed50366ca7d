"""The course of a job as a small table: loss terms and quality every N steps (``curve.csv``)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_deblur.imagefiles import write_csv
from lightning_deblur.losses import LOSS_TERMS
from lightning_deblur.metrics import aligned_psnr, psnr
from lightning_deblur.outputs import ALIGNED_BORDER, ALIGNED_MAX_SHIFT
from lightning_deblur.physics import crop_to_observation

CURVE_COLUMNS = (
    "step",
    "scale",
    "step_in_scale",
    "loss",
    *LOSS_TERMS,
    "kernel_peak",
    "psnr",
    "aligned_psnr",
)
"""Columns of ``curve.csv``. ``step`` counts finished steps over the whole job;
``scale`` is the index of the stage the step belongs to (0 = coarsest); the loss
columns are the values of that step (empty when a term had zero weight);
``kernel_peak`` is the largest kernel value (1 for the no-blur delta); ``psnr`` and
``aligned_psnr`` (dB) compare the current estimate with the sharp reference *at the
current scale* (empty without a reference; ``aligned_psnr`` also empty when the scale is
too small for the 15 px border crop)."""


class QualityCurve(Callback):
    """Records a row of :data:`CURVE_COLUMNS` every ``every_n_steps`` steps and at the last
    step of every stage, and writes them to ``curve.csv`` in the run folder when the job
    ends (atomically). The rows so far travel in checkpoints, so a resumed job writes
    the same table as an uninterrupted one.

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
                self.rows.append(self.row(trainer, pl_module, step))

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
            estimate = crop_to_observation(pl_module.latest_x, scale.kernel_size).float()
            sharp = sharp.float()
            row["psnr"] = float(psnr(estimate, sharp))
            if min(sharp.shape[-2:]) >= 2 * ALIGNED_BORDER + 16:
                aligned = aligned_psnr(estimate, sharp, border=ALIGNED_BORDER, max_shift=ALIGNED_MAX_SHIFT)
                row["aligned_psnr"] = float(aligned[0])
        return row

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict) -> None:
        # Checkpoints of the 0.1 series keep the rows per job of a seed batch ("" for a job
        # of its own).
        self.rows = list(state_dict["rows_by_job"].get("", []) if "rows_by_job" in state_dict else state_dict.get("rows", []))


def write_curve(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts keyed by :data:`CURVE_COLUMNS`) as CSV, atomically; floats
    with 6 significant digits, ``None`` as an empty cell."""

    def cell(value) -> str:
        if value is None:
            return ""
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    cells = ({column: cell(row.get(column)) for column in CURVE_COLUMNS} for row in rows)
    return write_csv(path, CURVE_COLUMNS, cells, line_end="\r\n")


def read_curve(path: str | Path) -> list[dict]:
    """Rows of a ``curve.csv`` as dicts of floats (``None`` for empty cells)."""
    with open(path, newline="") as handle:
        return [
            {key: (float(value) if value != "" else None) for key, value in row.items()} for row in csv.DictReader(handle)
        ]
