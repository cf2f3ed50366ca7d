"""``python -m lightning_deblur figures KIND …``: PNG figures of evaluations and experiments.

Kinds (``figures KIND --help`` lists every option; each accepts ``--config file.yaml``)::

    figures histogram --runs eval/runs.csv [--methods '[original, improved]']
                      [--metric aligned_isnr] [--bins 20] [--output isnr_histogram.png]
    figures seeds     --runs eval/runs.csv --input NAME [--methods …]
                      [--metric aligned_psnr] [--output seeds.png]
    figures inputs    --runs eval/runs.csv [--methods …] [--metric aligned_isnr]
                      [--output inputs.png]
    figures fit_speed (--manifest data/manifest.csv [--input NAME] | --sharp s.png --blurred b.png)
                      [--iterations 2000] [--channels 128] [--skip_channels 16] [--levels 5]
                      [--lr 0.01] [--seed 0] [--device auto] [--output fit_speed.png]
    figures curves    --logs runs/orig/img/seed0 runs/impr/img/seed0 [--labels '[original, improved]']
                      [--tag psnr] [--output psnr_curves.png]
    figures curve_bands --results original=runs/orig improved=runs/impr
                      [--column aligned_psnr] [--output curve_bands.png]
    figures gallery   --runs logs/a/version_0 logs/b/version_0 [--true_kernels '[k.npy, none]']
                      [--labels '[a, b]'] [--output gallery.png]

- ``histogram``: histograms of one column of ``evaluate``'s ``runs.csv`` (default the
  aligned ISNR) per method, on common bins, each method's mean marked: overlaid for up to
  three methods, one panel per method over a shared axis for more.
- ``seeds``: the spread over seeds on one input: per method a box plot with every run as
  a point (slightly jittered), default the aligned PSNR, with the blurred input's aligned
  PSNR as a dashed line (ISNR: the 0 dB line).
- ``inputs``: every run of every input at once, the inputs along the axis and the
  methods side by side within each, a point per run and a bar at each method's mean over
  the seeds; for the ISNR, the failure threshold (1 dB) as a dashed line. It shows where
  a method fails and how far its seeds spread, input by input.
- ``fit_speed``: the image net alone fitted to a sharp image and to its blurred version
  (:mod:`lightning_deblur.fit_experiment`), RMSE per iteration on a log scale; the curves
  are also written as CSV next to the PNG (``iteration,rmse_sharp,rmse_blurred``). From a
  manifest it takes the row named ``--input`` (default the first): its ``sharp`` and its
  ``image`` (the blurred, noisy observation).
- ``curves``: a scalar (default ``psnr``, logged when a job has a sharp reference) over
  iterations from TensorBoard logs; each ``--logs`` entry is a run folder, an event file,
  or a folder searched for run folders (each run folder found is one curve).
- ``curve_bands``: a column of the runs' ``curve.csv`` (default the aligned PSNR) over
  iterations, median and quartiles over every run of each method.
- ``gallery``: finished runs side by side, a row each: blurred input, deblurred result,
  estimated kernel, true kernel and sharp reference (the last two where known), with the
  PSNR and aligned ISNR of ``metrics.json`` in the titles.

List options (``--methods``, ``--logs``, ``--labels``, ``gallery``'s ``--runs`` and
``--true_kernels``) take space-separated values, a list (``'[a, b]'``) or repeated
``--logs+ x``. Every PNG is written atomically and its path printed. matplotlib is
needed (``pip install 'lightning-deblur[plots]'``); it is imported only when a figure is
drawn, without pyplot (no display, no global state).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lightning_deblur.errors import InputError
from lightning_deblur.evaluate import FAILURE_ISNR_DB, parse_results, read_runs_csv, spread_list_option
from lightning_deblur.function_cli import function_parser, options_of
from lightning_deblur.imagefiles import atomic_write, read_grey, read_image, read_kernel, write_csv

DPI = 150

LABELS = {
    "aligned_isnr": "ISNR, aligned (dB)",
    "aligned_psnr": "PSNR, aligned (dB)",
    "aligned_ssim": "SSIM, aligned",
    "psnr": "PSNR (dB)",
    "isnr": "ISNR (dB)",
    "kernel_error": "kernel error",
    "error_ratio": "error ratio",
    "wall_time_s": "wall time (s)",
}


def new_figure(width: float = 6.4, height: float = 4.0):
    """A matplotlib ``Figure`` (no pyplot); :class:`InputError` when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("matplotlib is needed for figures: pip install 'lightning-deblur[plots]'") from None
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure, output: str | Path) -> Path:
    """Write ``figure`` as a PNG atomically; return its path."""
    return atomic_write(output, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))


# --------------------------------------------------------------------------------------
# From evaluate's runs.csv
# --------------------------------------------------------------------------------------


def _values_by_method(
    rows: list[dict], metric: str, methods: list[str] | str | None, path: str
) -> dict[str, list[float]]:
    if metric not in rows[0]:
        numeric = [key for key, value in rows[0].items() if isinstance(value, float)]
        raise InputError(f"'{path}' has no column '{metric}'; choose --metric among {', '.join(numeric)}")
    present = list(dict.fromkeys(row["method"] for row in rows))
    chosen = present if not methods else [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in chosen if m not in present]
    if unknown:
        raise InputError(f"method(s) {', '.join(unknown)} not in '{path}'; it has {', '.join(present)}")
    return {m: [row[metric] for row in rows if row["method"] == m and math.isfinite(row[metric])] for m in chosen}


OVERLAID_METHODS = 3
"""Up to this many methods share one histogram's axes; more get a panel each."""


def histogram(
    runs: str,
    output: str = "isnr_histogram.png",
    methods: list[str] | str | None = None,
    metric: str = "aligned_isnr",
    bins: int = 20,
    title: str | None = None,
) -> Path:
    """Histograms of ``metric`` over all runs, one per method, on common bins: overlaid for
    up to :data:`OVERLAID_METHODS` methods, else one panel per method over a shared axis
    (overlaid, a dozen methods would hide each other). Each method's mean is marked.

    Args:
        runs: ``runs.csv`` written by ``evaluate``.
        output: the PNG to write.
        methods: methods to show, in this order (default: all, in the file's order).
        metric: a numeric column of ``runs.csv``.
        bins: number of bins spanning all methods' values.
        title: figure title (default: the run counts).
    """
    values = _values_by_method(read_runs_csv(runs), metric, methods, runs)
    everything = [v for vs in values.values() for v in vs]
    if not everything:
        raise InputError(f"no finite '{metric}' values for {', '.join(values)} in '{runs}'")
    low, high = min(everything), max(everything)
    edges = np.linspace(low, high if high > low else low + 1.0, max(bins, 1) + 1)
    shown = {method: data for method, data in values.items() if data}
    panels = 1 if len(shown) <= OVERLAID_METHODS else len(shown)
    figure = new_figure(6.4, 4.0 if panels == 1 else 0.75 * panels + 1.0)
    grid = figure.subplots(panels, 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for index, (method, data) in enumerate(shown.items()):
        axes, colour = grid[0 if panels == 1 else index], f"C{index % 10}"
        mean = float(np.mean(data))
        label = f"{method} (n={len(data)}, mean {mean:.2f})"
        axes.hist(data, bins=edges, alpha=0.45 if panels == 1 else 0.8, color=colour, edgecolor=colour, label=label)
        axes.axvline(mean, color=colour if panels == 1 else "black", linestyle="--", linewidth=1.2)
        if panels > 1:
            axes.text(0.01, 0.85, label, transform=axes.transAxes, va="top", fontsize="small")
        axes.yaxis.get_major_locator().set_params(integer=True)
    grid[-1].set_xlabel(LABELS.get(metric, metric))
    heading = title or f"{LABELS.get(metric, metric)} over {len(everything)} runs"
    if panels == 1:
        grid[0].set_ylabel("runs")
        grid[0].set_title(heading)
        grid[0].legend()
    else:
        figure.supylabel("runs")
        figure.suptitle(heading + " (dashed: each method's mean)")
    return save_figure(figure, output)


def seeds(
    runs: str,
    input: str,
    output: str = "seeds.png",
    methods: list[str] | str | None = None,
    metric: str = "aligned_psnr",
    title: str | None = None,
) -> Path:
    """Distribution of ``metric`` over the seeds of one input: box plot and points per method.

    Args:
        runs: ``runs.csv`` written by ``evaluate``.
        input: the input's name (the manifest's ``name``).
        output: the PNG to write.
        methods: methods to show (default: all that ran the input).
        metric: a numeric column of ``runs.csv``.
        title: figure title (default: the input's name).
    """
    rows = read_runs_csv(runs)
    names = list(dict.fromkeys(row["input"] for row in rows))
    mine = [row for row in rows if row["input"] == input]
    if not mine:
        shown = ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
        raise InputError(f"input '{input}' is not in '{runs}'; it has {shown}")
    values = {m: v for m, v in _values_by_method(mine, metric, methods, runs).items() if v}
    if not values:
        raise InputError(f"no finite '{metric}' values of input '{input}' in '{runs}'")
    figure = new_figure(max(4.0, 1.6 * len(values) + 2.0), 4.0)
    axes = figure.add_subplot()
    positions = np.arange(1, len(values) + 1)
    axes.boxplot(list(values.values()), positions=positions, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for index, (position, data) in enumerate(zip(positions, values.values())):
        jitter = rng.uniform(-0.12, 0.12, len(data)) if len(data) > 1 else np.zeros(1)
        axes.scatter(position + jitter, data, s=18, color=f"C{index}", alpha=0.8, zorder=3)
    axes.set_xticks(positions, [f"{m}\n(n={len(v)})" for m, v in values.items()])
    baseline = {"aligned_psnr": "input_aligned_psnr", "psnr": "input_psnr"}.get(metric)
    if baseline and math.isfinite(mine[0].get(baseline, math.nan)):
        axes.axhline(mine[0][baseline], color="grey", linestyle="--", linewidth=1, label="blurred input")
        axes.legend()
    elif metric in ("aligned_isnr", "isnr"):
        axes.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    axes.set_ylabel(LABELS.get(metric, metric))
    axes.set_title(title or f"{input}: {LABELS.get(metric, metric)} over seeds")
    return save_figure(figure, output)


def inputs(
    runs: str,
    output: str = "inputs.png",
    methods: list[str] | str | None = None,
    metric: str = "aligned_isnr",
    title: str | None = None,
) -> Path:
    """Every run of every input: per input, each method's runs as points and their mean as a bar.

    Args:
        runs: ``runs.csv`` written by ``evaluate`` (or any CSV with its ``method``, ``input``
            and ``metric`` columns).
        output: the PNG to write.
        methods: methods to show, side by side in this order (default: all, in the file's order).
        metric: a numeric column of ``runs.csv``.
        title: figure title (default: the run counts).
    """
    rows = read_runs_csv(runs)
    values = _values_by_method(rows, metric, methods, runs)
    if not any(values.values()):
        raise InputError(f"no finite '{metric}' values for {', '.join(values)} in '{runs}'")
    by_run: dict[tuple[str, str], list[float]] = {}  # (method, input) → its finite values
    for row in rows:
        if row["method"] in values and math.isfinite(row[metric]):
            by_run.setdefault((row["method"], row["input"]), []).append(row[metric])
    names = list(dict.fromkeys(row["input"] for row in rows if row["method"] in values))
    figure = new_figure(max(6.4, 0.35 * len(names) * len(values) + 2.0), 4.2)
    axes = figure.add_subplot()
    width = 0.8 / len(values)
    for index, method in enumerate(values):
        colour = f"C{index % 10}"
        offset = (index - (len(values) - 1) / 2) * width
        label = method  # on the method's first group drawn, wherever that is
        for position, name in enumerate(names):
            data = by_run.get((method, name))
            if not data:
                continue
            x = position + offset
            axes.scatter(np.full(len(data), x), data, s=16, color=colour, alpha=0.75, zorder=3, label=label)
            axes.hlines(float(np.mean(data)), x - 0.4 * width, x + 0.4 * width, color=colour, linewidth=2)
            label = None
    if metric in ("aligned_isnr", "isnr"):
        axes.axhline(FAILURE_ISNR_DB, color="grey", linestyle="--", linewidth=1, label=f"failure ({FAILURE_ISNR_DB:g} dB)")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize="small")
    axes.set_ylabel(LABELS.get(metric, metric))
    counts = ", ".join(f"{method} {len(data)}" for method, data in values.items())
    axes.set_title(title or f"{LABELS.get(metric, metric)} per input (runs: {counts}; bars: means)")
    axes.legend(fontsize="small")
    return save_figure(figure, output)


# --------------------------------------------------------------------------------------
# The fitting experiment
# --------------------------------------------------------------------------------------


def fit_speed(
    output: str = "fit_speed.png",
    manifest: str | None = None,
    input: str | None = None,
    sharp: str | None = None,
    blurred: str | None = None,
    iterations: int = 2000,
    channels: int = 128,
    skip_channels: int = 16,
    levels: int = 5,
    lr: float = 0.01,
    seed: int = 0,
    device: str = "auto",
) -> tuple[Path, Path]:
    """Fit the image net alone to a sharp image and to its blurred version; plot the RMSE.

    Args:
        output: the PNG to write; the curves go to the same name with ``.csv``.
        manifest: take the images from this manifest's row ``input`` (or its first row).
        input: the manifest row's name.
        sharp: the sharp image (instead of a manifest).
        blurred: the blurred image, same size (instead of a manifest).
        iterations: Adam steps of each fit.
        channels: width of the image net's convolutions (the method uses 128).
        skip_channels: width of its skip branches.
        levels: its depth; images need at least ``2**levels + 1`` pixels per side.
        lr: Adam's learning rate.
        seed: seed of the net's weights and input noise (the same for both fits).
        device: ``auto`` (a GPU if there is one), ``cpu``, ``cuda``, ``cuda:1`` …
    """
    import torch

    from lightning_deblur.fit_experiment import fit_sharp_and_blurred
    from lightning_deblur.generators import ImageNetSpec

    sharp_path, blurred_path, label = _fit_targets(manifest, input, sharp, blurred)
    new_figure()  # fail on a missing matplotlib before the (long) fits
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = ImageNetSpec(channels=channels, skip_channels=skip_channels, levels=levels)
    sharp_image, blurred_image = read_grey(sharp_path, "--sharp").float(), read_grey(blurred_path, "--blurred").float()
    curves = fit_sharp_and_blurred(sharp_image, blurred_image, spec, iterations, lr, seed, device)
    table = Path(output).with_suffix(".csv")
    rows = (
        {"iteration": index, "rmse_sharp": f"{a:.8g}", "rmse_blurred": f"{b:.8g}"}
        for index, (a, b) in enumerate(zip(curves.sharp, curves.blurred))
    )
    write_csv(table, ["iteration", "rmse_sharp", "rmse_blurred"], rows)

    figure = new_figure()
    axes = figure.add_subplot()
    steps = np.arange(1, iterations + 1)
    axes.semilogy(steps, curves.sharp, label="sharp image", color="C0")
    axes.semilogy(steps, curves.blurred, label="blurred image", color="C1")
    axes.set_xlabel("iteration")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel("RMSE")
    axes.set_title(
        f"Image net fitted alone: {label}\n({channels} channels, {levels} levels, Adam lr {lr:g}, seed {seed})"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return save_figure(figure, output), table


def _fit_targets(manifest, input, sharp, blurred) -> tuple[Path, Path, str]:
    if manifest:
        if sharp or blurred:
            raise InputError("give either --manifest (with --input) or --sharp and --blurred, not both")
        from lightning_deblur.manifest import read_manifest

        rows = read_manifest(manifest)
        row = rows[0] if input is None else next((r for r in rows if r.name == input), None)
        if row is None:
            raise InputError(f"input '{input}' is not in manifest '{manifest}'; use one of its names")
        if not row.sharp:
            raise InputError(f"manifest row '{row.name}' has no sharp image; fit_speed needs the sharp column")
        return Path(row.sharp), Path(row.image), row.name
    if not (sharp and blurred):
        raise InputError("fit_speed needs --manifest data/manifest.csv, or both --sharp and --blurred image files")
    return Path(sharp), Path(blurred), Path(sharp).stem


# --------------------------------------------------------------------------------------
# TensorBoard logs
# --------------------------------------------------------------------------------------


def _event_folders(entry: Path) -> list[Path]:
    """Run folders (or event files) a ``--logs`` entry stands for."""
    if entry.is_file():
        return [entry]
    if not entry.is_dir():
        raise InputError(f"log folder '{entry}' not found; give --logs run folders or event files")
    if any(entry.glob("events.out.tfevents.*")):
        return [entry]
    found = sorted({path.parent for path in entry.rglob("events.out.tfevents.*")})
    if not found:
        raise InputError(f"no TensorBoard event files under '{entry}'; give --logs the folder of a run")
    return found


def read_scalar(path: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of a scalar tag in a run folder or event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags().get("scalars", [])
    if tag not in tags:
        raise InputError(
            f"no scalar '{tag}' in the logs of '{path}' (it has {', '.join(sorted(tags)) or 'none'}); "
            "psnr is logged only for jobs given --data.sharp; pick another --tag"
        )
    events = accumulator.Scalars(tag)
    return np.array([e.step for e in events]), np.array([e.value for e in events])


def curves(
    logs: list[str] | str,
    output: str = "psnr_curves.png",
    tag: str = "psnr",
    labels: list[str] | str | None = None,
    title: str | None = None,
) -> Path:
    """A TensorBoard scalar over iterations, one curve per run.

    Args:
        logs: run folders, event files, or folders holding run folders.
        output: the PNG to write.
        tag: the scalar's tag (``psnr``, ``loss``, ``loss/mse`` …).
        labels: one label per run found (default: the run folders' paths).
        title: figure title.
    """
    entries = [logs] if isinstance(logs, str) else list(logs)
    if not entries:
        raise InputError("no --logs given; pass run folders, e.g. --logs logs/kodim05_blurred/version_0")
    folders = [folder for entry in entries for folder in _event_folders(Path(entry))]
    names = [labels] if isinstance(labels, str) else list(labels or [])
    if names and len(names) != len(folders):
        raise InputError(
            f"{len(names)} --labels for {len(folders)} runs ({', '.join(map(str, folders))}); give one label per run"
        )
    figure = new_figure()
    axes = figure.add_subplot()
    for index, folder in enumerate(folders):
        steps, values = read_scalar(folder, tag)
        axes.plot(steps, values, label=names[index] if names else str(folder), linewidth=1.2)
    axes.set_xlabel("iteration")
    axes.set_ylabel("PSNR (dB)" if tag == "psnr" else tag)
    axes.set_title(title or f"{tag} over iterations")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return save_figure(figure, output)


def curve_bands(
    results: list[str] | str,
    output: str = "curve_bands.png",
    column: str = "aligned_psnr",
    title: str | None = None,
) -> Path:
    """A column of the runs' ``curve.csv`` over iterations: median and quartiles per method.

    Every run folder under a method's folder (``<input>/seed<k>/curve.csv``, as ``batch``
    writes them) contributes one value per recorded step; the band spans the 25th to the
    75th percentile over the runs that recorded that step. Dotted lines mark where the
    first run of each method changed scale (coarse-scale values compare with the sharp
    reference resized to that scale).

    Args:
        results: ``METHOD=PATH`` entries, as for ``evaluate``.
        output: the PNG to write.
        column: a column of ``curve.csv`` (``aligned_psnr``, ``psnr``, ``loss``, ``kernel_peak`` …).
        title: figure title (default: the column's name).
    """
    from lightning_deblur.curves import CURVE_COLUMNS, read_curve

    if column not in CURVE_COLUMNS:
        raise InputError(f"unknown curve column '{column}'; choose one of {', '.join(CURVE_COLUMNS)}")
    figure = new_figure()
    axes = figure.add_subplot()
    for colour, (method, root) in zip((f"C{i}" for i in range(99)), parse_results(results).items()):
        files = sorted(root.glob("*/*/curve.csv"))
        if not files:
            raise InputError(f"no curve.csv under '{root}' (method {method}); run the jobs with --curve.every_n_steps N")
        by_step: dict[float, list[float]] = {}
        for file in files:
            for row in read_curve(file):
                if row[column] is not None:
                    by_step.setdefault(row["step"], []).append(row[column])
        steps = np.array(sorted(by_step))
        quartiles = np.array([np.percentile(by_step[step], [25, 50, 75]) for step in steps])
        axes.fill_between(steps, quartiles[:, 0], quartiles[:, 2], color=colour, alpha=0.25, linewidth=0)
        axes.plot(steps, quartiles[:, 1], color=colour, linewidth=1.4, label=f"{method} (median, n={len(files)})")
        first = read_curve(files[0])
        for before, after in zip(first, first[1:]):
            if after["scale"] != before["scale"]:
                axes.axvline(before["step"], color=colour, linestyle=":", linewidth=0.9)
    axes.set_xlabel("iteration (all scales)")
    axes.set_ylabel(LABELS.get(column, column))
    axes.set_title(title or f"{LABELS.get(column, column)}: median and quartiles over runs")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return save_figure(figure, output)


# --------------------------------------------------------------------------------------
# Finished runs side by side
# --------------------------------------------------------------------------------------


def _run_files(folder: Path) -> tuple[dict, dict]:
    """``(metrics, config)`` of a finished run folder; :class:`InputError` when it is not one."""
    import json

    import yaml

    if not folder.is_dir():
        raise InputError(f"run folder '{folder}' not found; give --runs folders of finished fit runs")
    missing = [name for name in ("deblurred.png", "kernel.npy", "metrics.json") if not (folder / name).is_file()]
    if missing:
        raise InputError(f"run folder '{folder}' has no {', '.join(missing)}; give --runs folders of finished fit runs")
    metrics = json.loads((folder / "metrics.json").read_text())
    config_file = folder / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    return metrics, config or {}


def _reference(path: str | None, option: str, folder: Path) -> Path | None:
    """The file a run's config (or ``option``) names, resolved; ``None`` for ``none``/empty."""
    from lightning_deblur.data import resolve_path

    if not path or str(path).lower() == "none":
        return None
    resolved = resolve_path(str(path))
    if not resolved.is_file():
        # config.yaml keeps paths as the job was given them, so relative ones only hold
        # from the folder the job ran in.
        raise InputError(f"'{resolved}' ({option} of run '{folder}') not found; run figures from where the job ran")
    return resolved


def _pad_to(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``kernel`` centred in zeros of ``shape`` (each side at least the kernel's)."""
    top, left = (shape[0] - kernel.shape[0]) // 2, (shape[1] - kernel.shape[1]) // 2
    padded = np.zeros(shape)
    padded[top : top + kernel.shape[0], left : left + kernel.shape[1]] = kernel
    return padded


def _gallery_titles(metrics: dict) -> tuple[str, str]:
    """Titles of the blurred and the deblurred panel, with the figures ``metrics`` holds."""

    def figure(key: str, template: str) -> str:
        value = metrics.get(key)
        return template.format(value) if isinstance(value, (int, float)) and math.isfinite(value) else ""

    blurred = "blurred input" + figure("input_psnr", "\nPSNR {:.2f} dB")
    blurred += figure("input_aligned_psnr", ", aligned {:.2f} dB")
    deblurred = "deblurred" + (" (job failed)" if metrics.get("status") == "failed" else "")
    # The aligned figures beside the plain ones: blind results may come out shifted by a
    # pixel or two, which the plain PSNR punishes as if it were blur.
    deblurred += figure("psnr", "\nPSNR {:.2f} dB") + figure("aligned_psnr", ", aligned {:.2f} dB")
    deblurred += figure("aligned_isnr", "\naligned ISNR {:+.2f} dB")
    return blurred, deblurred


def gallery(
    runs: list[str] | str,
    output: str = "gallery.png",
    true_kernels: list[str] | str | None = None,
    labels: list[str] | str | None = None,
    title: str | None = None,
) -> Path:
    """Finished runs side by side: blurred | deblurred | kernel | true kernel | sharp, a row per run.

    Each run folder (as ``fit`` or ``batch`` writes it) gives the blurred input (the
    ``image`` of its ``metrics.json``), ``deblurred.png`` and ``kernel.npy``; the sharp
    reference is its ``config.yaml``'s ``data.sharp`` and the true kernel its
    ``data.kernel`` (or ``--true_kernels``), each shown only when known. Images are drawn
    at their own pixels, in colour when they are RGB; kernels are scaled to their peak,
    padded to a common size within a row (so their pixels compare) and enlarged by
    nearest neighbour. Titles carry the PSNR of the input and of the result and the
    shift-aligned ISNR, as ``metrics.json`` records them (only for jobs given a sharp
    reference).

    Args:
        runs: finished run folders, one row each, in this order.
        output: the PNG to write.
        true_kernels: one kernel file (``.npy`` or image) per run, ``none`` where unknown;
            default: each run's ``data.kernel``.
        labels: one row label per run (default: the run folders' paths).
        title: figure title.
    """
    folders = [Path(runs)] if isinstance(runs, str) else [Path(run) for run in runs]
    if not folders:
        raise InputError("no --runs given; pass finished run folders, e.g. --runs logs/kodim05_blurred/version_0")
    truths = [true_kernels] if isinstance(true_kernels, str) else list(true_kernels or [])
    names = [labels] if isinstance(labels, str) else list(labels or [])
    for option, given in (("--true_kernels", truths), ("--labels", names)):
        if given and len(given) != len(folders):
            raise InputError(f"{len(given)} {option} for {len(folders)} --runs; give one per run (none where unknown)")
    rows = []
    for index, folder in enumerate(folders):
        metrics, config = _run_files(folder)
        data = config.get("data") or {}
        sharp = _reference(data.get("sharp"), "data.sharp", folder)
        truth = _reference(truths[index] if truths else data.get("kernel"), "true kernel", folder)
        image = metrics.get("image")
        if not image or not Path(image).is_file():
            raise InputError(f"the input image '{image}' named by '{folder / 'metrics.json'}' is not there")
        rows.append({
            "label": names[index] if names else str(folder),
            "metrics": metrics,
            "blurred": read_image(image).pixels,
            "deblurred": read_image(folder / "deblurred.png").pixels,
            "kernel": read_kernel(folder / "kernel.npy", "kernel.npy"),
            "truth": read_kernel(truth, "--true_kernels") if truth else None,
            "sharp": read_image(sharp, "data.sharp").pixels if sharp else None,
        })  # fmt: skip
    columns = 3 + any(row["truth"] is not None for row in rows) + any(row["sharp"] is not None for row in rows)
    figure = new_figure(2.6 * columns, 2.9 * len(rows) + (0.3 if title else 0.0))
    grid = figure.subplots(len(rows), columns, squeeze=False)
    for axes_row, row in zip(grid, rows):
        blurred_title, deblurred_title = _gallery_titles(row["metrics"])
        panels = [(row["blurred"], blurred_title), (row["deblurred"], deblurred_title)]
        kernels = [k for k in (row["kernel"], row["truth"]) if k is not None]
        common = tuple(max(k.shape[axis] for k in kernels) for axis in (0, 1))
        kh, kw = row["kernel"].shape
        panels.append((_pad_to(row["kernel"] / row["kernel"].max(), common), f"estimated kernel\n{kh}×{kw}"))
        if row["truth"] is not None:
            th, tw = row["truth"].shape
            panels.append((_pad_to(row["truth"] / row["truth"].max(), common), f"true kernel\n{th}×{tw}"))
        if row["sharp"] is not None:
            panels.append((row["sharp"], "sharp reference"))
        for axes, (pixels, text) in zip(axes_row, panels):
            # Grey pixels need an explicit grey map and range, or matplotlib would colour
            # and stretch them; nearest keeps kernel pixels as blocks.
            axes.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            axes.set_title(text, fontsize="small")
        axes_row[0].set_ylabel(row["label"], fontsize="small")
        for axes in axes_row:
            axes.set_xticks([])
            axes.set_yticks([])
        for axes in axes_row[len(panels) :]:
            axes.set_axis_off()
    if title:
        figure.suptitle(title)
    return save_figure(figure, output)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------

KINDS = {
    "histogram": histogram,
    "seeds": seeds,
    "inputs": inputs,
    "fit_speed": fit_speed,
    "curves": curves,
    "curve_bands": curve_bands,
    "gallery": gallery,
}
"""``figures`` subcommands and the functions that draw them."""

_LIST_OPTIONS = ("--methods", "--logs", "--labels", "--results", "--runs", "--true_kernels")


def command(argv: list[str]) -> None:
    """``python -m lightning_deblur figures KIND …``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="python -m lightning_deblur figures",
        description=(
            "Draw a figure (PNG): histogram, seeds, inputs, fit_speed, curves, curve_bands or gallery; "
            "see `figures KIND --help`."
        ),
    )
    subcommands = parser.add_subcommands(dest="kind")
    for name, function in KINDS.items():
        subcommands.add_subcommand(name, function_parser(function), help=function.__doc__.split("\n")[0])
    for option in _LIST_OPTIONS:
        argv = spread_list_option(argv, option)
    config = parser.parse_args(argv)
    kind = config.kind
    options = options_of(config[kind])
    written = KINDS[kind](**options)
    for path in written if isinstance(written, tuple) else (written,):
        print(path)
