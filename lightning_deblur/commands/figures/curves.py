"""Curves over iterations: a TensorBoard scalar per run, and a ``curve.csv`` column's median and
quartiles per method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_deblur.commands.evaluate import parse_results
from lightning_deblur.commands.figures.style import LABELS, new_figure, save_figure
from lightning_deblur.core.errors import InputError


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
    from lightning_deblur.core.curve_table import CURVE_COLUMNS, read_curve

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
