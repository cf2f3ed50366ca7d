"""``python -m lightning_deblur evaluate``: quality of many results against a synthetic dataset.

Synopsis::

    python -m lightning_deblur evaluate --manifest data/manifest.csv \
        --results original=runs/orig improved=runs/impr \
        [--true_kernel_results runs/nonblind] [--output_dir eval] \
        [--border 15] [--max_shift 5] [--step 0.25] [--failure_db 1.0]

``--results`` takes one or more ``METHOD=PATH`` entries: space separated as above, as a
list (``--results '[original=runs/o, improved=runs/i]'``), appended one at a time
(``--results+ original=runs/o --results+ improved=runs/i``), or a single string. Without
``METHOD=`` the folder's name is the method's name.

Results layout (what ``batch`` writes; easy to make by hand): each method has a root
folder with one folder per job, ``<root>/<input name>/seed<k>/``, holding

- ``metrics.json``: its presence marks a finished run, unless it says ``"status":
  "stopped"`` (stopped before its end, to be resumed); of its figures only ``wall_time_s``
  is read;
- ``deblurred.png``: the ``H × W`` result (8/16 bit, grey or RGB);
- ``kernel.npy``: the estimated kernel.

Input names are the manifest's ``name`` column. Plain ``fit`` logs
(``<root>/<input name>/version_<k>/``) are read too, ``k`` standing for the seed, when
an input folder has no ``seed<k>`` folders. Folders without ``metrics.json``, or with a
stopped one, are skipped as unfinished (with a warning); anything else in the root
(``summary.csv``, folders of inputs not in the manifest) is ignored. ``--true_kernel_results`` has the same layout
but needs only ``deblurred.png`` (a non-blind deconvolution with the true kernel): each
run is compared with the true-kernel result of its own seed if there is one, else with
the lowest seed's.

Every figure is recomputed from the files, never copied from ``metrics.json``, on the
luminance (BT.601 Y) of colour images, as the jobs see them:

- ``aligned_psnr``, ``aligned_ssim``: Levin et al.'s comparison (``--border`` px cropped,
  best shift within ``±--max_shift`` px on a ``--step`` px grid; see
  :mod:`lightning_deblur.core.metrics`), ``shift_y``/``shift_x`` the shift found;
- ``aligned_isnr``: ``aligned_psnr`` of the result minus that of the blurred input
  (:func:`~lightning_deblur.core.alignment.aligned_isnr`); ``input_aligned_psnr`` is the latter;
- ``psnr``, ``isnr``, ``input_psnr``: the same without alignment, pixel for pixel;
- ``kernel_error``: :func:`~lightning_deblur.core.alignment.kernel_error` against the manifest's
  true kernel (empty without a ``kernel`` column);
- ``error_ratio``: Levin's ``‖x̂ − x‖ / ‖x̂_k − x‖`` (not squared) against the true-kernel
  result ``x̂_k`` of the same input (empty without one);
- ``failed``: ``aligned_isnr < --failure_db``;
- ``verdict``, ``gradient_sparsity``: :func:`~lightning_deblur.core.verdict.judge` on the run's
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
import sys
from pathlib import Path

import torch

from lightning_deblur.commands.batch.summary import stopped_before_its_end
from lightning_deblur.commands.evaluate_tables import FAILURE_ISNR_DB, FoundRun, markdown, summarize, write_runs_csv
from lightning_deblur.commands.function_cli import function_parser, options_of
from lightning_deblur.core.alignment import (
    LEVIN_BORDER,
    LEVIN_MAX_SHIFT,
    LEVIN_STEP,
    align_to_reference,
    aligned_isnr,
    aligned_psnr,
    error_ratio,
    kernel_error,
)
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import atomic_write, finite_or_null, read_grey, read_kernel
from lightning_deblur.core.manifest import ManifestRow, read_manifest
from lightning_deblur.core.metrics import SSIM_WINDOW, psnr_per_image, ssim_per_image
from lightning_deblur.core.verdict import judge


SEED_PREFIXES = ("seed", "version_")
"""Run folder names under an input folder, by preference: ``seed<k>``, else ``version_<k>``."""

_BATCH = 16
"""Runs aligned together (one input, so one reference)."""


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
            recorded = _recorded(folder) if (folder / "metrics.json").is_file() else None
            if recorded is None or stopped_before_its_end(recorded):
                unfinished.append(folder)
            else:
                jobs.append(FoundRun(method, name, seed, folder, recorded))
    if unfinished:
        _warn(
            f"{len(unfinished)} unfinished run(s) of '{method}' skipped (no metrics.json, or one that says "
            f"stopped: resume it to its end), e.g. {unfinished[0]}"
        )
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
    continued from, the software and CPU it ran on), or ``{}`` with a warning when the
    file cannot be read."""
    try:
        return dict(json.loads((folder / "metrics.json").read_text()))
    except (ValueError, OSError, TypeError):
        _warn(f"cannot read {folder / 'metrics.json'}; its wall time, chosen start and CPU are left empty")
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
            recorded = job.recorded
            # The same seed takes another trajectory on another CPU or thread count.
            software = recorded.get("software") or {}
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
                "cpu": software.get("cpu"),
                "cpu_threads": software.get("cpu_threads"),
                "cpu_features": " ".join(software["cpu_features"]) if software.get("cpu_features") else None,
                "chosen_start": recorded.get("chosen_start"),
                "restarts": recorded.get("restarts"),
                "failed": float(isnr[index]) < failure_db,
                "verdict": verdict.label,
                "gradient_sparsity": verdict.gradient_sparsity,
                "shift_y": float(pair.shift[index, 0]),
                "shift_x": float(pair.shift[index, 1]),
            }


def evaluate(
    manifest: str,
    results: list[str] | str,
    output_dir: str = "eval",
    true_kernel_results: str | None = None,
    border: int = LEVIN_BORDER,
    max_shift: float = LEVIN_MAX_SHIFT,
    step: float = LEVIN_STEP,
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
