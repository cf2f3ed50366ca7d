"""The fit-speed figure: the image net alone fitted to a sharp image and to its blurred version."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_deblur.commands.figures.style import new_figure, save_figure
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import read_grey, write_csv


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

    from lightning_deblur.core.fit_experiment import fit_sharp_and_blurred
    from lightning_deblur.core.generators import ImageNetSpec

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
        from lightning_deblur.core.manifest import read_manifest

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
