"""The gallery: finished runs side by side, a row each (blurred, result, kernels, sharp)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lightning_deblur.commands.figures.style import new_figure, save_figure
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import read_image, read_kernel


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
    from lightning_deblur.core.package_files import resolve_path

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
