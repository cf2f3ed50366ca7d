"""The Python API: deblur one image from a script or a notebook.

    from lightning_deblur import deblur
    result = deblur("photo.png", kernel_size=27, config="improved", seed=0)
    result.image, result.kernel, result.metrics["verdict"], result.folder

It runs exactly the job ``python -m lightning_deblur fit`` runs (the same configuration
files, options and run folder), in this process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.package_files import source_checkout

CONFIGS = (source_checkout() or Path.cwd()) / "configs"
"""The shipped configurations: the project's ``configs/`` folder (an installed package
looks in the working directory's)."""

SHIPPED_CONFIGS = ("improved", "fast", "selfdeblur", "nonblind")


@dataclass
class DeblurResult:
    """What a job leaves, read back into memory.

    Attributes:
        image: float32 in [0, 1], the input's shape (``(H, W)`` or ``(H, W, 3)``).
        kernel: float32 ``(kh, kw)``, non-negative, sums to 1, physical orientation (the
            blur is the true convolution of the sharp image with it).
        metrics: the run's ``metrics.json`` (``status``, ``verdict``, timings, ...).
        folder: the run folder, with ``deblurred.png``, ``kernel.npy``, TensorBoard events
            and the resolved ``config.yaml`` that reproduces the run.
    """

    image: np.ndarray
    kernel: np.ndarray
    metrics: dict
    folder: Path


def deblur(
    image: str | Path | np.ndarray,
    kernel_size: int | tuple[int, int] | str,
    config: str | Path = "improved",
    seed: int = 0,
    options: dict | None = None,
) -> DeblurResult:
    """Deblur one image: estimate the sharp image and the blur kernel.

    Args:
        image: an image file (PNG, TIFF, JPEG; grey or RGB, 8 or 16 bits), or an array
            ``(H, W)`` or ``(H, W, 3)`` of uint8, uint16, or floats in [0, 1] (kept as a
            16-bit PNG under the run root's ``inputs/``, named by its content).
        kernel_size: odd side of the kernel's support, pixels (an upper bound on the
            blur's extent), ``(kh, kw)``, or ``"auto"``: the job finds it (bounded by
            ``options={"data.max_kernel_size": 41}`` where given).
        config: a shipped configuration (``improved``, ``fast``, ``selfdeblur``,
            ``nonblind``) or the path of a YAML file.
        seed: the random seed (inputs and initial weights of the nets).
        options: further ``fit`` options by dotted name, e.g. ``{"model.iterations":
            200, "trainer.precision": "32-true"}`` (values as YAML would give them).

    Returns:
        the result, also written to the run folder as ``fit`` writes it.

    Raises:
        InputError: an input or option the job cannot run with (the message names it and
            the fix), or a job that failed or stopped before its end (its files are kept).
    """
    from lightning_deblur.commands.fit import DEFAULT_SAVE_DIR, DeblurCLI, parse_error_line
    from lightning_deblur.job.outputs import result_pixels

    options = dict(options or {})
    root = options.get("trainer.default_root_dir") or options.get("trainer.logger.init_args.save_dir") or DEFAULT_SAVE_DIR
    image_path = image if isinstance(image, (str, Path)) else store_array(np.asarray(image), Path(root) / "inputs")
    if isinstance(kernel_size, (tuple, list)):
        kernel_size = json.dumps(list(kernel_size))
    arguments = [
        "fit", "--config", str(config_path(config)), "--seed_everything", str(seed),
        "--data.image", str(image_path), "--data.kernel_size", str(kernel_size),
    ]  # fmt: skip
    for name, value in options.items():
        arguments += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    try:
        cli = DeblurCLI(args=arguments)
    except argparse.ArgumentError as error:
        raise InputError(parse_error_line(str(error))) from None
    job = cli.model
    folder = job.run_folder()
    metrics = json.loads((folder / "metrics.json").read_text())
    if metrics["status"] != "done":
        raise InputError(f"the job did not finish ({metrics['status']}): {metrics.get('error', '')}; its files are in {folder}")
    estimate, _ = job.estimate()
    pixels = result_pixels(job.observation, estimate).astype(np.float32)
    return DeblurResult(pixels, np.load(folder / "kernel.npy"), metrics, folder)


def config_path(config: str | Path) -> Path:
    """The YAML file of a shipped configuration's name, or ``config`` itself as a path."""
    if str(config) in SHIPPED_CONFIGS:
        return CONFIGS / f"{config}.yaml"
    path = Path(config)
    if not path.is_file():
        raise InputError(f"config '{config}' is neither a shipped one ({', '.join(SHIPPED_CONFIGS)}) nor a YAML file")
    return path


def store_array(pixels: np.ndarray, folder: Path) -> Path:
    """Write an image array as a PNG named by its content under ``folder``; its path.

    uint8 stays 8-bit; uint16 and floats in [0, 1] become 16-bit (floats rounded to
    1/65535, far below the noise of any photograph).
    """
    from lightning_deblur.core.imagefiles import write_image

    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise InputError(f"an image array must be (H, W) or (H, W, 3), got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        values, bit_depth = pixels / 255.0, 8
    elif pixels.dtype == np.uint16:
        values, bit_depth = pixels / 65535.0, 16
    elif np.issubdtype(pixels.dtype, np.floating):
        if not np.all(np.isfinite(pixels)) or pixels.min() < 0 or pixels.max() > 1:
            raise InputError("a float image array must hold finite values in [0, 1]; scale it (e.g. pixels / 255)")
        values, bit_depth = pixels.astype(np.float64), 16
    else:
        raise InputError(f"an image array must be uint8, uint16 or float in [0, 1], got {pixels.dtype}")
    digest = hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode() + pixels.dtype.str.encode()).hexdigest()[:12]
    return write_image(folder / f"array-{digest}.png", values, bit_depth)
