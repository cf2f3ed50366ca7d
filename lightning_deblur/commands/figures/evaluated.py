"""Figures of ``evaluate``'s ``runs.csv``: ISNR histograms per method, the spread over seeds
on one input, every run of every input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lightning_deblur.commands.evaluate_tables import FAILURE_ISNR_DB, read_runs_csv
from lightning_deblur.commands.figures.style import LABELS, new_figure, save_figure
from lightning_deblur.core.errors import InputError


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
    axes.set_title(title or f"{LABELS.get(metric, metric)} per input (runs: {counts}; bars: means)", wrap=True)
    axes.legend(fontsize="small")
    return save_figure(figure, output)
