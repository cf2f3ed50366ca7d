"""``curve.csv``: a job's loss terms, kernel peak and PSNR every few steps, as a table
(written by :class:`~lightning_deblur.job.curves.QualityCurve`, read by figures and studies)."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning_deblur.core.imagefiles import write_csv
from lightning_deblur.core.losses import LOSS_TERMS


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
