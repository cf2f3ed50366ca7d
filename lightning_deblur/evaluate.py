"""``python -m lightning_deblur evaluate``: quality of many results against a synthetic dataset.

Synopsis::

    python -m lightning_deblur evaluate --manifest data/manifest.csv \\
        --results original=runs/orig improved=runs/impr \\
        [--true_kernel_results runs/nonblind] [--output_dir eval] \\
        [--border 15] [--max_shift 5] [--step 0.25] [--failure_db 1.0]

``--results`` takes one or more ``METHOD=PATH`` entries: space separated as above, as a
list (``--results '[original=runs/o, improved=runs/i]'``), appended one at a time
(``--results+ original=runs/o --results+ improved=runs/i``), or a single string. Without
``METHOD=`` the folder's name is the method's name.

Results layout (what ``batch`` writes; easy to make by hand): each method has a root
folder with one folder per job, ``<root>/<input name>/seed<k>/``, holding

- ``metrics.json``: its presence marks a finished run (only ``wall_time_s`` is read);
- ``deblurred.png``: the ``H × W`` result (8/16 bit, grey or RGB);
- ``kernel.npy``: the estimated kernel.

Input names are the manifest's ``name`` column. Plain ``fit`` logs
(``<root>/<input name>/version_<k>/``) are read too, ``k`` standing for the seed, when
an input folder has no ``seed<k>`` folders. Folders without ``metrics.json`` are skipped
as unfinished (with a warning); anything else in the root (``summary.csv``, folders of
inputs not in the manifest) is ignored. ``--true_kernel_results`` has the same layout
but needs only ``deblurred.png`` (a non-blind deconvolution with the true kernel): each
run is compared with the true-kernel result of its own seed if there is one, else with
the lowest seed's.

Every figure is recomputed from the files, never copied from ``metrics.json``, on the
luminance (BT.601 Y) of colour images, as the jobs see them:

- ``aligned_psnr``, ``aligned_ssim``: Levin et al.'s comparison (``--border`` px cropped,
  best shift within ``±--max_shift`` px on a ``--step`` px grid; see
  :mod:`lightning_deblur.metrics`), ``shift_y``/``shift_x`` the shift found;
- ``aligned_isnr``: ``aligned_psnr`` of the result minus that of the blurred input
  (:func:`~lightning_deblur.metrics.aligned_isnr`); ``input_aligned_psnr`` is the latter;
- ``psnr``, ``isnr``, ``input_psnr``: the same without alignment, pixel for pixel;
- ``kernel_error``: :func:`~lightning_deblur.metrics.kernel_error` against the manifest's
  true kernel (empty without a ``kernel`` column);
- ``error_ratio``: Levin's ``‖x̂ − x‖ / ‖x̂_k − x‖`` (not squared) against the true-kernel
  result ``x̂_k`` of the same input (empty without one);
- ``failed``: ``aligned_isnr < --failure_db``;
- ``verdict``, ``gradient_sparsity``: :func:`~lightning_deblur.verdict.judge` on the run's
  files (the no-reference verdict, and the result's gradient sparsity over the input's).

Written to ``--output_dir`` (atomically):

- ``runs.csv``: one row per method, input and seed (:data:`RUN_FIELDS`);
- ``summary.json`` and ``summary.md``: per method, the mean, median and standard deviation
  of the aligned ISNR over all runs, the mean over inputs of the per-input standard
  deviation across seeds (inputs with one run count as 0) and of the per-input median, the
  failure rate, the means of aligned PSNR and SSIM, plain PSNR, kernel error and error
  ratio (over the runs that have one), the mean wall time and the run count; and the mean
  aligned ISNR of every input under every method; and, for the inputs with several runs
  of a method, what keeping one run per input by the lowest gradient sparsity gives (no
  reference needed) against keeping the best by ISNR (an oracle). Standard deviations are population ones
  (``ddof = 0``), as in ``benchmarks/reduced_protocol/compare_methods.py``. Non-finite values are ``null``
  in JSON and ``—`` in Markdown.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lightning_deblur.errors import InputError
from lightning_deblur.function_cli import function_parser, options_of
from lightning_deblur.imagefiles import atomic_write, finite_or_null, read_csv, read_grey, read_kernel, write_csv
from lightning_deblur.manifest import ManifestRow, read_manifest
from lightning_deblur.metrics import (
    SSIM_WINDOW,
    align_to_reference,
    aligned_isnr,
    aligned_psnr,
    error_ratio,
    kernel_error,
    psnr_per_image,
    ssim_per_image,
)
from lightning_deblur.verdict import judge

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

SEED_PREFIXES = ("seed", "version_")
"""Run folder names under an input folder, by preference: ``seed<k>``, else ``version_<k>``."""

_BATCH = 16
"""Runs aligned together (one input, so one reference)."""


@dataclass
class FoundRun:
    """One finished run found in a results folder."""

    method: str
    input: str
    seed: int
    folder: Path
    figures: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Arguments and discovery
# --------------------------------------------------------------------------------------


def parse_results(results: str | list[str]) -> dict[str, Path]:
    """``["original=runs/o", "runs/i"]`` -> ``{"original": Path("runs/o"), "i": Path("runs/i")}``.

    ``METHOD=`` is recognized when the text before the first ``=`` holds no path
    separator, so a path such as ``runs/lr=0.01`` stays a path.
    """
    entries = [results] if isinstance(results, str) else list(results)
    if not entries:
        raise InputError("no --results given; pass e.g. --results original=runs/orig improved=runs/impr")
    methods: dict[str, Path] = {}
    for entry in entries:
        entry = str(entry).strip()
        name, sep, path = entry.partition("=")
        if not sep or not name or "/" in name or "\\" in name:
            name, path = Path(entry).name, entry
        if not path:
            raise InputError(f"--results entry '{entry}' has no folder; write METHOD=PATH")
        if name in methods:
            raise InputError(f"method '{name}' is given twice in --results; give every METHOD=PATH a distinct name")
        methods[name] = Path(path)
    return methods


def seed_folders(input_dir: Path) -> list[tuple[int, Path]]:
    """``(seed, folder)`` of the job folders of one input, by seed (see :data:`SEED_PREFIXES`)."""
    for prefix in SEED_PREFIXES:
        found = [
            (int(child.name[len(prefix) :]), child)
            for child in input_dir.iterdir()
            if child.is_dir() and child.name.startswith(prefix) and child.name[len(prefix) :].isdigit()
        ]
        if found:
            return sorted(found)
    return []


def find_jobs(method: str, root: Path, names: list[str], option: str = "--results") -> list[FoundRun]:
    """Finished jobs of one method, in manifest order then by seed.

    Raises:
        InputError: the root is missing, or holds no finished job of any manifest input.
    """
    if not root.is_dir():
        raise InputError(f"results folder '{root}' of method '{method}' not found; check the path given to {option}")
    jobs: list[FoundRun] = []
    unfinished: list[Path] = []
    for name in names:
        input_dir = root / name
        if not input_dir.is_dir():
            continue
        for seed, folder in seed_folders(input_dir):
            if (folder / "metrics.json").is_file():
                jobs.append(FoundRun(method, name, seed, folder))
            else:
                unfinished.append(folder)
    if unfinished:
        _warn(f"{len(unfinished)} unfinished run(s) of '{method}' skipped (no metrics.json), e.g. {unfinished[0]}")
    if not jobs:
        raise InputError(
            f"no finished runs of the manifest's inputs in '{root}' (method '{method}'); {option} wants folders "
            "<root>/<input name>/seed<k>/ with metrics.json, deblurred.png and kernel.npy, as `batch` writes them"
        )
    return jobs


def find_true_kernel_results(root: Path, names: list[str]) -> dict[str, list[tuple[int, Path]]]:
    """``{input: [(seed, deblurred.png), …]}`` of a true-kernel results folder."""
    if not root.is_dir():
        raise InputError(
            f"true-kernel results folder '{root}' not found; check the path given to --true_kernel_results"
        )
    found: dict[str, list[tuple[int, Path]]] = {}
    for name in names:
        if (root / name).is_dir():
            images = [
                (seed, f / "deblurred.png") for seed, f in seed_folders(root / name) if (f / "deblurred.png").is_file()
            ]
            if images:
                found[name] = images
    if not found:
        raise InputError(
            f"no results of the manifest's inputs in '{root}'; --true_kernel_results wants folders "
            "<root>/<input name>/seed<k>/deblurred.png"
        )
    return found


def pick_seed(candidates: list[tuple[int, Path]], seed: int) -> tuple[int, Path]:
    """The candidate of the same seed if there is one, else the lowest seed's."""
    return next(((s, p) for s, p in candidates if s == seed), candidates[0])


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def check_alignment_options(border: int, max_shift: float, step: float) -> None:
    """The aligned figures' settings, checked before any file is read."""
    if border < 0 or max_shift < 0 or not step > 0:
        raise InputError("--border and --max_shift must not be negative and --step must be positive")
    if border < max_shift:
        raise InputError(
            f"--border {border} is smaller than --max_shift {max_shift:g}; use --border {math.ceil(max_shift)} or more"
        )


def _check_sizes(size: tuple[int, int], border: int, name: str) -> None:
    if min(size) - 2 * border < SSIM_WINDOW:
        raise InputError(
            f"input '{name}' is {size[0]}×{size[1]}: a {border} px border leaves less than the {SSIM_WINDOW}×"
            f"{SSIM_WINDOW} SSIM window; use a smaller --border (and --max_shift)"
        )


def _recorded(folder: Path) -> dict:
    """What the job recorded of itself in its metrics.json (its wall time, the start it
    continued from), or ``{}`` with a warning when the file cannot be read."""
    try:
        return dict(json.loads((folder / "metrics.json").read_text()))
    except (ValueError, OSError, TypeError):
        _warn(f"cannot read {folder / 'metrics.json'}; its wall time and chosen start are left empty")
        return {}


def measure_input(
    case: ManifestRow,
    jobs: list[FoundRun],
    true_kernel: list[tuple[int, Path]] | None,
    border: int,
    max_shift: float,
    step: float,
    failure_db: float,
) -> None:
    """Fill ``job.figures`` of every job of one manifest input (batched by :data:`_BATCH`)."""
    name = case.name
    if not case.sharp:
        raise InputError(f"manifest input '{name}' has no sharp reference; evaluate needs the manifest's sharp column")
    sharp = read_grey(Path(case.sharp), "the manifest's sharp column")
    observation = read_grey(Path(case.image), "the manifest's image column")
    size = tuple(sharp.shape[-2:])
    if tuple(observation.shape[-2:]) != size:
        raise InputError(
            f"manifest input '{name}': blurred image and sharp reference differ in size; remake the dataset"
        )
    _check_sizes(size, border, name)
    options = {"border": border, "max_shift": max_shift, "step": step}
    input_aligned = float(aligned_psnr(observation, sharp, **options)[0])
    input_plain = float(psnr_per_image(observation, sharp)[0])
    truth = read_kernel(case.kernel, "the manifest's kernel column") if case.kernel else None
    for start in range(0, len(jobs), _BATCH):
        chunk = jobs[start : start + _BATCH]
        estimates = []
        for job in chunk:
            estimate = read_grey(job.folder / "deblurred.png", "--results")
            if tuple(estimate.shape[-2:]) != size:
                raise InputError(
                    f"{job.folder / 'deblurred.png'} is {estimate.shape[-2]}×{estimate.shape[-1]} but input '{name}' is "
                    f"{size[0]}×{size[1]}; the results folder does not belong to this manifest"
                )
            estimates.append(estimate)
        batch = torch.cat(estimates)
        reference = sharp.expand_as(batch)
        pair = align_to_reference(batch, reference, **options)
        aligned = psnr_per_image(pair.estimate, pair.reference)
        ssim = ssim_per_image(pair.estimate, pair.reference)
        plain = psnr_per_image(batch, reference)
        isnr = aligned_isnr(batch, observation.expand_as(batch), reference, **options)
        ratios = [math.nan] * len(chunk)
        tk_seeds: list[int | None] = [None] * len(chunk)
        if true_kernel:
            picks = [pick_seed(true_kernel, job.seed) for job in chunk]
            tk_seeds = [seed for seed, _ in picks]
            with_truth = torch.cat([read_grey(path, "--true_kernel_results") for _, path in picks])
            if tuple(with_truth.shape[-2:]) != size:
                raise InputError(
                    f"true-kernel results of input '{name}' are not {size[0]}×{size[1]}; check --true_kernel_results"
                )
            ratios = error_ratio(batch, with_truth, reference, **options).tolist()
        for index, job in enumerate(chunk):
            kernel_err = math.nan
            estimate_kernel = read_kernel(job.folder / "kernel.npy", "--results")
            # Recomputed from the files, so runs made before verdicts existed get one too.
            verdict = judge(observation, batch[index], torch.from_numpy(estimate_kernel))
            if truth is not None:
                kernel_err = float(
                    kernel_error(torch.from_numpy(estimate_kernel), torch.from_numpy(truth), max_shift, step)[0]
                )
            recorded = _recorded(job.folder)
            job.figures = {
                "aligned_isnr": float(isnr[index]),
                "aligned_psnr": float(aligned[index]),
                "aligned_ssim": float(ssim[index]),
                "psnr": float(plain[index]),
                "isnr": float(plain[index]) - input_plain,
                "input_aligned_psnr": input_aligned,
                "input_psnr": input_plain,
                "kernel_error": kernel_err,
                "error_ratio": float(ratios[index]),
                "true_kernel_seed": tk_seeds[index],
                "wall_time_s": float(recorded.get("wall_time_s", math.nan)),
                "chosen_start": recorded.get("chosen_start"),
                "restarts": recorded.get("restarts"),
                "failed": float(isnr[index]) < failure_db,
                "verdict": verdict.label,
                "gradient_sparsity": verdict.gradient_sparsity,
                "shift_y": float(pair.shift[index, 0]),
                "shift_x": float(pair.shift[index, 1]),
            }


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


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
        f"No-reference verdict (`lightning_deblur.verdict`) against the measured failures (ISNR < {failure_db:g} dB):",
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
        "(`lightning_deblur.verdict`, no reference) against the highest aligned ISNR (an oracle):",
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
    ``chosen_start`` and ``restarts`` as int (``None`` where empty), ``failed`` as bool."""
    rows = read_csv(
        path,
        ("method", "input"),
        f"'{path}' not found; make it with `python -m lightning_deblur evaluate`",
        f"'{path}' is not a runs.csv of `evaluate` (no method and input columns, or no rows)",
    )
    text_columns = {"method", "input", "run_dir"}
    for row in rows:
        for key, value in row.items():
            if key in text_columns or key is None:
                continue
            if key in ("seed", "chosen_start", "restarts"):
                row[key] = int(value) if value else None
            elif key == "failed":
                row[key] = value == "1"
            else:
                try:
                    row[key] = float(value) if value != "" else math.nan
                except ValueError:
                    pass
    return rows


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def evaluate(
    manifest: str,
    results: list[str] | str,
    output_dir: str = "eval",
    true_kernel_results: str | None = None,
    border: int = 15,
    max_shift: float = 5.0,
    step: float = 0.25,
    failure_db: float = FAILURE_ISNR_DB,
) -> dict:
    """Measure every finished run against the manifest; write runs.csv, summary.json, summary.md.

    Args:
        manifest: the dataset's ``manifest.csv`` (from ``synth`` or by hand; needs the
            ``sharp`` column, and ``kernel`` for the kernel error).
        results: ``METHOD=PATH`` entries, one per method: space separated
            (``--results a=runs/a b=runs/b``), a list (``'[a=runs/a, b=runs/b]'``),
            repeated ``--results+ a=runs/a``, or one string; without ``METHOD=`` the
            folder's name is the method's.
        output_dir: where the tables go.
        true_kernel_results: results of a non-blind deconvolution with the true kernels,
            same layout; gives the error ratio.
        border: pixels cropped from each side for the aligned figures.
        max_shift: largest shift searched by the aligned figures, pixels.
        step: spacing of the shifts searched, pixels.
        failure_db: a run fails when its aligned ISNR is below this (dB).

    Returns:
        The summary (as in ``summary.json``, with NaN where it has ``null``).
    """
    check_alignment_options(border, max_shift, step)
    cases = read_manifest(manifest)
    names = [case.name for case in cases]
    methods = parse_results(results)
    jobs = [job for method, root in methods.items() for job in find_jobs(method, root, names)]
    true_kernel = find_true_kernel_results(Path(true_kernel_results), names) if true_kernel_results else {}
    for method in methods:
        missing = [n for n in names if not any(j.method == method and j.input == n for j in jobs)]
        if missing:
            _warn(f"method '{method}' has no finished runs of {len(missing)} input(s): {', '.join(missing[:5])}")
    with torch.no_grad():
        for case in cases:
            mine = [job for job in jobs if job.input == case.name]
            if mine:
                measure_input(case, mine, true_kernel.get(case.name), border, max_shift, step, failure_db)
    order = {name: index for index, name in enumerate(names)}
    method_order = {name: index for index, name in enumerate(methods)}
    jobs.sort(key=lambda job: (method_order[job.method], order[job.input], job.seed))
    summary = summarize(jobs, list(methods), names, failure_db)
    summary["settings"] = {
        "manifest": str(manifest),
        "results": {method: str(root) for method, root in methods.items()},
        "true_kernel_results": true_kernel_results,
        "border": border,
        "max_shift": max_shift,
        "step": step,
        "failure_db": failure_db,
    }
    out = Path(output_dir)
    write_runs_csv(out / "runs.csv", jobs)
    # Not imagefiles.write_json: that sorts keys, and methods and inputs keep their given order here.
    payload = json.dumps(finite_or_null(summary), indent=2, allow_nan=False) + "\n"
    atomic_write(out / "summary.json", lambda temporary: temporary.write_text(payload))
    text = markdown(summary)
    atomic_write(out / "summary.md", lambda temporary: temporary.write_text(text))
    return summary


def spread_list_option(argv: list[str], option: str) -> list[str]:
    """``--results a=x b=y`` -> ``--results '["a=x", "b=y"]'`` (jsonargparse takes one value per option)."""
    out: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        out.append(token)
        index += 1
        if token == option:
            values = []
            while index < len(argv) and not argv[index].startswith("-"):
                values.append(argv[index])
                index += 1
            out.append(json.dumps(values) if len(values) > 1 else (values[0] if values else ""))
            if not values:
                out.pop()
    return out


def command(argv: list[str]) -> None:
    """``python -m lightning_deblur evaluate …``."""
    parser = function_parser(
        evaluate,
        prog="python -m lightning_deblur evaluate",
        description="Measure results folders against a manifest; write runs.csv, summary.json and summary.md.",
    )
    options = options_of(parser.parse_args(spread_list_option(argv, "--results")))
    summary = evaluate(**options)
    out = Path(options["output_dir"])
    for method, s in summary["methods"].items():
        print(
            f"{method}: {s['runs']} runs, mean ISNR {s['isnr_mean']:.2f} dB (median {s['isnr_median']:.2f}), "
            f"failures {s['failure_rate']:.0%}"
        )
    print(f"wrote {out / 'runs.csv'}, {out / 'summary.json'} and {out / 'summary.md'}")
