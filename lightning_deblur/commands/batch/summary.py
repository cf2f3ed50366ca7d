"""What a batch knows of finished jobs: a job folder's ``metrics.json`` and the
``summary.csv`` rows (one per job, the sparsest run of each image marked), merged over ranks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from lightning_deblur.commands.batch.jobs import BatchJob
from lightning_deblur.core.imagefiles import size_text, write_csv
from lightning_deblur.commands.ranks import Rank


SUMMARY_FIELDS = [
    "name",
    "seed",
    "image",
    "sharp",
    "kernel_size",
    "status",
    "wall_time_s",
    "device",
    "error",
    "run_dir",
]

"""The first columns of ``summary.csv``; the figures of ``metrics.json`` follow (:data:`METRIC_FIELDS`)."""


METRIC_FIELDS = [
    "chosen_kernel_size",
    "psnr",
    "ssim",
    "isnr",
    "aligned_psnr",
    "aligned_ssim",
    "aligned_isnr",
    "input_psnr",
    "input_ssim",
    "input_aligned_psnr",
    "final_loss",
    "iterations",
    "fit_time_s",
    "seconds_per_iteration",
    "precision",
    "verdict",
    "gradient_sparsity",
    "sparsest",
    "restarts",
]

"""Figures taken from each job's ``metrics.json`` (``fit_time_s`` is its ``wall_time_s``:
the optimization alone, without process start-up; ``gradient_sparsity`` is in its
``verdict_signals``; ``chosen_kernel_size``, e.g. ``19x19``, is the size a job given ``auto``
chose, its ``kernel_size``), and ``sparsest`` (:func:`mark_sparsest`). Other numeric keys follow, sorted."""


FINISHED_STATUSES = ("done", "skipped-done")

"""Summary statuses of a finished job (``skipped-done``: finished by an earlier run of the batch)."""


def read_finished(run_dir: Path) -> dict | None:
    """``metrics.json`` of a finished job, or ``None``.

    Finished means: ``metrics.json`` is there and readable, its ``status`` (when it has
    one) is ``done`` (the divergence guard writes ``failed``), and its final loss (when it
    has one) is finite.
    """
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("status", "done") != "done":
        return None
    loss = metrics.get("final_loss", 0.0)
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return None
    return metrics


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path`` (a job's ``metrics.json`` or ``batch.json``), or ``{}``
    when the file is missing, unreadable or holds something else."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def stopped_before_its_end(metrics: dict) -> bool:
    """Whether a job's ``metrics.json`` (as a dict) says it was stopped before its plan's end
    (a signal, a time budget, ``--trainer.max_steps``): ``"status": "stopped"``. Its folder
    then holds an estimate part of the way and a checkpoint to resume from, not a result.
    A diverged job (``failed``) did reach its end: ``batch`` retries it, while ``evaluate``
    scores it as the method's result for its seed."""
    return metrics.get("status") == "stopped"


def summary_row(job: BatchJob, output_dir: Path, status: str, **values) -> dict:
    """One row of ``summary.csv``; figures come from the job's ``metrics.json`` when it is finished."""
    run_dir = job.run_dir(output_dir)
    row = {
        "name": job.case.name,
        "seed": job.seed,
        "image": job.case.image,
        "sharp": job.case.sharp or "",
        "kernel_size": job.case.kernel_size_text,
        "status": status,
        "run_dir": str(run_dir),
    }
    if status in FINISHED_STATUSES:
        metrics = read_finished(run_dir) or {}
        record = read_json_object(run_dir / "batch.json")
        row["wall_time_s"] = record.get("wall_time_s", "")
        row["device"] = record.get("device", metrics.get("device", ""))
        for key, value in metrics.items():
            if key == "wall_time_s":
                row["fit_time_s"] = value
            elif key == "kernel_size_choice" and isinstance(metrics.get("kernel_size"), list):
                row["chosen_kernel_size"] = size_text(metrics["kernel_size"])
            elif key == "verdict_signals" and isinstance(value, dict) and "gradient_sparsity" in value:
                row["gradient_sparsity"] = value["gradient_sparsity"]
            elif key in METRIC_FIELDS or (
                key not in ("image", "kernel_size", "device") and isinstance(value, (int, float))
            ):
                row[key] = value
    row.update({key: value for key, value in values.items() if value is not None})
    return row


def mark_sparsest(rows: list[dict]) -> None:
    """Among each image's finished runs (two or more with a ``gradient_sparsity``), mark the
    one with the lowest sparsity ``sparsest = 1`` and the others 0: the run to keep when
    the sharp image is unknown (lightning_deblur.core.verdict; docs/RESULTS.md, "Choosing
    among finished runs"). Images with fewer such runs get no mark. Other ranks' rows come
    from their CSV parts, so the values may be text."""
    by_image: dict[str, list[tuple[float, dict]]] = {}
    for row in rows:
        row.pop("sparsest", None)
        try:
            sparsity = float(row.get("gradient_sparsity", ""))
        except (TypeError, ValueError):
            continue
        if math.isfinite(sparsity):
            by_image.setdefault(row["name"], []).append((sparsity, row))
    for runs in by_image.values():
        if len(runs) > 1:
            keep = min(runs, key=lambda run: run[0])[1]
            for _, row in runs:
                row["sparsest"] = int(row is keep)


def write_summary(path: Path, rows: list[dict]) -> None:
    """Write the rows as CSV, atomically (the sparsest run of each image marked); figure
    columns are the union over the rows."""
    mark_sparsest(rows)
    present = {key for row in rows for key in row}
    extra = sorted(present - set(SUMMARY_FIELDS) - set(METRIC_FIELDS))
    write_csv(path, SUMMARY_FIELDS + [key for key in METRIC_FIELDS if key in present] + extra, rows)


def read_summary(path: Path) -> list[dict]:
    """Rows of a ``summary.csv`` (empty if there is none)."""
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def merged_rows(jobs: list[BatchJob], own: dict[int, dict], output_dir: Path, rank: Rank) -> list[dict]:
    """Rows of every job: this process's, the other ranks' summary parts, then what is on disk."""
    others: dict[tuple[str, str], dict] = {}
    for other in range(rank.world_size):
        if other != rank.rank:
            for row in read_summary(output_dir / f"summary.part{other}of{rank.world_size}.csv"):
                others[(row.get("name"), row.get("seed"))] = row
    rows = []
    for job in jobs:
        if job.index in own:
            rows.append(own[job.index])
            continue
        row = others.get((job.case.name, str(job.seed)))
        if row is None or row.get("status") == "pending":
            row = summary_row(job, output_dir, "done" if read_finished(job.run_dir(output_dir)) else "pending")
        rows.append(row)
    return rows
