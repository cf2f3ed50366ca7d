"""What ``evaluate`` writes: one row per evaluated run (``runs.csv``) and the summary per
method (``summary.json``, ``summary.md``: mean, median and spread of the aligned ISNR,
failures, the verdict's precision and recall, what keeping the sparsest run gives)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from lightning_deblur.core.imagefiles import read_csv, write_csv


FAILURE_ISNR_DB = 1.0
"""A run fails below this aligned ISNR, dB: the line of every failure count in the tables
and benchmarks (the issue's goal and docs/RESULTS.md use it); ``--failure_db`` moves it."""

RUN_FIELDS = [
    "method",
    "input",
    "seed",
    "aligned_isnr",
    "aligned_psnr",
    "aligned_ssim",
    "psnr",
    "isnr",
    "input_aligned_psnr",
    "input_psnr",
    "kernel_error",
    "error_ratio",
    "true_kernel_seed",
    "wall_time_s",
    "cpu",
    "cpu_threads",
    "cpu_features",
    "chosen_start",
    "restarts",
    "failed",
    "verdict",
    "gradient_sparsity",
    "shift_y",
    "shift_x",
    "run_dir",
]
"""Columns of ``runs.csv`` (empty cells: not available)."""


@dataclass
class FoundRun:
    """One finished run found in a results folder."""

    method: str
    input: str
    seed: int
    folder: Path
    recorded: dict = field(default_factory=dict)
    """What the job wrote of itself in its metrics.json (wall time, chosen start, software)."""
    figures: dict = field(default_factory=dict)


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _mean(values) -> float:
    values = _finite(values)
    return statistics.fmean(values) if values else math.nan


def summarize(jobs: list[FoundRun], methods: list[str], names: list[str], failure_db: float) -> dict:
    """Per-method statistics and the per-input mean aligned ISNR (see the module docstring)."""
    per_method: dict[str, dict] = {}
    per_input: dict[str, dict[str, float]] = {name: {} for name in names}
    for method in methods:
        mine = [job for job in jobs if job.method == method]
        isnr = [job.figures["aligned_isnr"] for job in mine]
        by_input: dict[str, list[float]] = {}
        for job in mine:
            by_input.setdefault(job.input, []).append(job.figures["aligned_isnr"])
        for name, values in by_input.items():
            per_input[name][method] = statistics.fmean(values)
        ratios = _finite(job.figures["error_ratio"] for job in mine)
        per_method[method] = {
            "runs": len(mine),
            "inputs": len(by_input),
            "isnr_mean": statistics.fmean(isnr),
            "isnr_median": statistics.median(isnr),
            "isnr_std": statistics.pstdev(isnr),
            "per_input_std_mean": mean_per_input_std(by_input),
            "per_input_median_mean": statistics.fmean(statistics.median(v) for v in by_input.values()),
            "failures": sum(job.figures["failed"] for job in mine),
            "failure_rate": sum(job.figures["failed"] for job in mine) / len(mine),
            "aligned_psnr_mean": _mean(job.figures["aligned_psnr"] for job in mine),
            "aligned_ssim_mean": _mean(job.figures["aligned_ssim"] for job in mine),
            "psnr_mean": _mean(job.figures["psnr"] for job in mine),
            "isnr_plain_mean": _mean(job.figures["isnr"] for job in mine),
            "kernel_error_mean": _mean(job.figures["kernel_error"] for job in mine),
            "error_ratio_mean": _mean(ratios),
            "error_ratio_median": statistics.median(ratios) if ratios else math.nan,
            "error_ratio_runs": len(ratios),
            "wall_time_s_mean": _mean(job.figures["wall_time_s"] for job in mine),
            **verdict_scores(mine),
            **pick_scores(mine, failure_db),
        }
    return {"methods": per_method, "per_input_isnr_mean": {n: v for n, v in per_input.items() if v}}


def mean_per_input_std(by_input: dict[str, list[float]]) -> float:
    """The mean over inputs of the population standard deviation of each input's values
    over its seeds (an input with one run counts as 0)."""
    return statistics.fmean(statistics.pstdev(values) for values in by_input.values())


def verdict_scores(jobs: list[FoundRun]) -> dict:
    """How the no-reference verdict agrees with the measured failures (ISNR below the
    threshold): runs it flags, and its precision (flagged runs that failed) and recall
    (failed runs it flagged); NaN where undefined."""
    flagged = [job for job in jobs if job.figures["verdict"] != "ok"]
    failed = [job for job in jobs if job.figures["failed"]]
    caught = [job for job in flagged if job.figures["failed"]]
    return {
        "verdict_flagged": len(flagged),
        "verdict_precision": len(caught) / len(flagged) if flagged else math.nan,
        "verdict_recall": len(caught) / len(failed) if failed else math.nan,
    }


def pick_scores(jobs: list[FoundRun], failure_db: float) -> dict:
    """Keeping one run per input, over the inputs with two runs or more: the run with the
    lowest gradient sparsity (what a user without the sharp image can do) against the run
    with the highest aligned ISNR (an oracle). Mean ISNR and failures of the kept runs,
    and how many inputs the pick chose the oracle's run for; NaN without such inputs."""
    by_input: dict[str, list[FoundRun]] = {}
    for job in jobs:
        by_input.setdefault(job.input, []).append(job)
    groups = [runs for runs in by_input.values() if len(runs) > 1]
    picked = [min(runs, key=lambda job: job.figures["gradient_sparsity"]) for runs in groups]
    best = [max(runs, key=lambda job: job.figures["aligned_isnr"]) for runs in groups]
    return {
        "pick_inputs": len(groups),
        "pick_isnr_mean": _mean(job.figures["aligned_isnr"] for job in picked),
        "pick_failures": sum(job.figures["aligned_isnr"] < failure_db for job in picked),
        "pick_is_best": sum(mine is top for mine, top in zip(picked, best)),
        "oracle_isnr_mean": _mean(job.figures["aligned_isnr"] for job in best),
        "oracle_failures": sum(job.figures["aligned_isnr"] < failure_db for job in best),
    }


def _cell(value: float | None, pattern: str = "{:.2f}") -> str:
    return "—" if value is None or not math.isfinite(value) else pattern.format(value)


def markdown(summary: dict) -> str:
    """``summary.md``: the per-method table and the input × method table of mean ISNR."""
    settings = summary["settings"]
    failure_db = settings["failure_db"]
    lines = [
        "# Evaluation",
        "",
        (
            f"Manifest `{settings['manifest']}`; aligned figures: {settings['border']} px border, shifts up to "
            f"{settings['max_shift']} px in {settings['step']} px steps; luminance. ISNR in dB; std is the "
            "population standard deviation."
        ),
        "",
        (
            "| method | runs | inputs | mean ISNR | median ISNR | std ISNR | mean per-input std | mean per-input "
            f"median | failures (ISNR < {failure_db:g} dB) | mean aligned PSNR | mean aligned SSIM | mean PSNR | "
            "mean kernel error | mean error ratio | mean s/run |"
        ),
        "|---|" + "---:|" * 14,
    ]
    for method, s in summary["methods"].items():
        lines.append(
            f"| {method} | {s['runs']} | {s['inputs']} | {_cell(s['isnr_mean'])} | {_cell(s['isnr_median'])} "
            f"| {_cell(s['isnr_std'])} | {_cell(s['per_input_std_mean'])} | {_cell(s['per_input_median_mean'])} "
            f"| {s['failures']} ({s['failure_rate']:.0%}) | {_cell(s['aligned_psnr_mean'])} "
            f"| {_cell(s['aligned_ssim_mean'], '{:.3f}')} | {_cell(s['psnr_mean'])} "
            f"| {_cell(s['kernel_error_mean'], '{:.4f}')} | {_cell(s['error_ratio_mean'])} "
            f"| {_cell(s['wall_time_s_mean'], '{:.1f}')} |"
        )
    lines += [
        "",
        f"No-reference verdict (`lightning_deblur.core.verdict`) against the measured failures (ISNR < {failure_db:g} dB):",
        "",
        "| method | runs flagged | precision | recall |",
        "|---|---:|---:|---:|",
    ]
    for method, s in summary["methods"].items():
        lines.append(
            f"| {method} | {s['verdict_flagged']} | {_cell(s['verdict_precision'], '{:.0%}')} "
            f"| {_cell(s['verdict_recall'], '{:.0%}')} |"
        )
    lines += [
        "",
        "One run kept per input (inputs with several runs of the method): the lowest gradient sparsity "
        "(`lightning_deblur.core.verdict`, no reference) against the highest aligned ISNR (an oracle):",
        "",
        "| method | inputs | picked: mean ISNR | picked: failures | picked the oracle's run | oracle: mean ISNR "
        "| oracle: failures |",
        "|---|" + "---:|" * 6,
    ]
    for method, s in summary["methods"].items():
        if s["pick_inputs"]:
            lines.append(
                f"| {method} | {s['pick_inputs']} | {_cell(s['pick_isnr_mean'])} | {s['pick_failures']} "
                f"| {s['pick_is_best']} | {_cell(s['oracle_isnr_mean'])} | {s['oracle_failures']} |"
            )
    methods = list(summary["methods"])
    lines += ["", "Mean aligned ISNR (dB) per input:", "", "| input | " + " | ".join(methods) + " |"]
    lines.append("|---|" + "---:|" * len(methods))
    for name, values in summary["per_input_isnr_mean"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(values.get(m)) for m in methods) + " |")
    return "\n".join(lines) + "\n"


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.8g}"
    return str(value)


def write_runs_csv(path: Path, jobs: list[FoundRun]) -> Path:
    """Write ``runs.csv`` (:data:`RUN_FIELDS`, one row per job), atomically."""
    rows = []
    for job in jobs:
        row = {"method": job.method, "input": job.input, "seed": job.seed, "run_dir": str(job.folder), **job.figures}
        rows.append({key: _csv_value(row.get(key)) for key in RUN_FIELDS})
    return write_csv(path, RUN_FIELDS, rows)


def read_runs_csv(path: str | Path) -> list[dict]:
    """Rows of a ``runs.csv``: numbers as floats (``nan`` where empty), ``seed``,
    ``cpu_threads``, ``chosen_start`` and ``restarts`` as int (``None`` where empty),
    ``failed`` as bool, ``cpu`` and ``cpu_features`` (space-separated) as text (``""`` where
    the run did not record it)."""
    rows = read_csv(
        path,
        ("method", "input"),
        f"'{path}' not found; make it with `python -m lightning_deblur evaluate`",
        f"'{path}' is not a runs.csv of `evaluate` (no method and input columns, or no rows)",
    )
    text_columns = {"method", "input", "run_dir", "cpu", "cpu_features"}
    for row in rows:
        for key, value in row.items():
            if key in text_columns or key is None:
                continue
            if key in ("seed", "cpu_threads", "chosen_start", "restarts"):
                row[key] = int(value) if value else None
            elif key == "failed":
                row[key] = value == "1"
            else:
                try:
                    row[key] = float(value) if value != "" else math.nan
                except ValueError:
                    pass
    return rows
