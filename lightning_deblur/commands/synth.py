"""``python -m lightning_deblur synth``: a synthetic blurred dataset with exact references.

Every sharp image is cut (or resized) to the requested size, blurred by every kernel
with the project's forward model (valid true convolution, so the sharp reference is the
central crop of the blurred support, pixel for pixel), and given Gaussian noise of a
fixed level. Everything random comes from one seed, so the same command writes the same
files. The manifest (``manifest.csv``, :mod:`lightning_deblur.core.manifest`) is what ``batch`` and
``evaluate`` read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_deblur.core.colour import luminance
from lightning_deblur.core.errors import InputError
from lightning_deblur.commands.function_cli import function_parser, options_of
from lightning_deblur.core.imagefiles import read_image, read_kernel, write_image, write_kernel_npy
from lightning_deblur.core.manifest import IMAGE_SUFFIXES, ManifestRow, write_manifest
from lightning_deblur.core.physics import blur_valid
from lightning_deblur.core.resample import odd_size, resize_image, resize_kernel

KERNEL_SUFFIXES = IMAGE_SUFFIXES | {".npy"}


def _expand(paths: list[str], suffixes: set[str], what: str) -> list[Path]:
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{what} '{entry}' does not exist; give existing files or folders")
    if not files:
        raise InputError(f"no {what} files found in {', '.join(paths)}")
    return files


def textured_corner(pixels: np.ndarray, height: int, width: int, stride: int = 8) -> tuple[int, int]:
    """Top-left corner of the ``height × width`` window with the largest mean gradient energy."""
    grey = luminance(pixels)
    gy, gx = np.gradient(grey)
    energy = gx**2 + gy**2
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best, corner = -1.0, (0, 0)
    for top in range(0, grey.shape[0] - height + 1, stride):
        for left in range(0, grey.shape[1] - width + 1, stride):
            total = (
                integral[top + height, left + width] - integral[top, left + width]
                - integral[top + height, left] + integral[top, left]
            )  # fmt: skip
            if total > best:
                best, corner = total, (top, left)
    return corner


def _support(pixels: np.ndarray, size: int, kernel: tuple[int, int], mode: str, rng: np.random.Generator) -> np.ndarray:
    """The sharp support ``(size+kh-1, size+kw-1[, 3])`` cut or resized from ``pixels``."""
    height, width = size + kernel[0] - 1, size + kernel[1] - 1
    if mode == "resize":
        tensor = torch.from_numpy(np.atleast_3d(pixels).transpose(2, 0, 1).copy())[None]
        resized = resize_image(tensor.double(), (height, width))[0].double().numpy().transpose(1, 2, 0)
        return np.clip(resized[..., 0] if pixels.ndim == 2 else resized, 0, 1)
    if pixels.shape[0] < height or pixels.shape[1] < width:
        raise InputError(
            f"image {pixels.shape[0]}×{pixels.shape[1]} is smaller than the {height}×{width} support; "
            "use a smaller --size or --mode resize"
        )
    if mode == "center":
        top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    elif mode == "textured":
        top, left = textured_corner(pixels, height, width)
    elif mode == "random":
        top = int(rng.integers(0, pixels.shape[0] - height + 1))
        left = int(rng.integers(0, pixels.shape[1] - width + 1))
    else:
        raise InputError(f"unknown --mode '{mode}'; use center, textured, random or resize")
    return pixels[top : top + height, left : left + width]


def synthesize(
    images: str | list[str],
    kernels: str | list[str],
    output_dir: str,
    size: int = 96,
    mode: str = "textured",
    colour: bool = False,
    noise_std: float = 0.01,
    seed: int = 0,
    frame: int = 4,
    pairs: str = "all",
    kernel_scale: float = 1.0,
) -> list[ManifestRow]:
    """Write the dataset and its manifest; return the manifest rows.

    Args:
        images: a sharp image file or folder, or a list of them.
        kernels: a kernel file (``.npy`` or image, normalized to sum 1) or folder, or a list.
        output_dir: where ``blurred/``, ``sharp/``, ``kernels/`` and ``manifest.csv`` go.
        size: side of the blurred (and sharp) images, pixels.
        mode: ``textured`` (most textured window), ``center``, ``random`` crop, or
            ``resize`` the whole image.
        colour: keep RGB (otherwise the luminance).
        noise_std: std of the added Gaussian noise, on the [0, 1] scale (0.01 = 1 %).
        seed: seed of the noise and of random crops.
        frame: pixels dropped from every edge of each source first (Kodak frames).
        pairs: ``all`` (every image with every kernel) or ``diagonal`` (i-th with i-th).
        kernel_scale: resize every kernel by this factor first (bilinear, odd size,
            renormalized), e.g. 0.5 to keep the blur-to-image ratio of larger images.
    """
    image_files = _expand([images] if isinstance(images, str) else images, IMAGE_SUFFIXES, "image")
    kernel_files = _expand([kernels] if isinstance(kernels, str) else kernels, KERNEL_SUFFIXES, "kernel")
    if pairs == "all":
        combos = [(i, k) for i in range(len(image_files)) for k in range(len(kernel_files))]
    elif pairs == "diagonal":
        combos = [(i, i % len(kernel_files)) for i in range(len(image_files))]
    else:
        raise InputError(f"unknown --pairs '{pairs}'; use all or diagonal")
    out = Path(output_dir)
    rng = np.random.default_rng(seed)
    loaded_kernels = [scale_kernel(read_kernel(path, "--kernels"), kernel_scale) for path in kernel_files]
    rows: list[ManifestRow] = []
    for image_index, kernel_index in combos:
        source = read_image(image_files[image_index], "--images").pixels
        if frame:
            source = source[frame:-frame, frame:-frame]
        pixels = source if colour else luminance(source)
        kernel = loaded_kernels[kernel_index]
        support = _support(pixels, size, kernel.shape, mode, rng)
        planes = np.atleast_3d(support).transpose(2, 0, 1)[None]
        blurred = blur_valid(torch.from_numpy(planes.copy()), torch.from_numpy(kernel))[0].double().numpy()
        blurred = blurred.transpose(1, 2, 0)
        blurred = blurred[..., 0] if not colour else blurred
        noisy = np.clip(blurred + rng.normal(0.0, noise_std, blurred.shape), 0, 1)
        top, left = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
        sharp = support[top : top + size, left : left + size]
        name = f"{image_files[image_index].stem}_{kernel_files[kernel_index].stem}"
        write_image(out / "blurred" / f"{name}.png", noisy)
        write_image(out / "sharp" / f"{name}.png", sharp)
        kernel_path = out / "kernels" / f"{kernel_files[kernel_index].stem}.npy"
        write_kernel_npy(kernel_path, kernel)
        rows.append(
            ManifestRow(
                name=name,
                image=f"blurred/{name}.png",
                kernel_size=(kernel.shape[0], kernel.shape[1]),
                sharp=f"sharp/{name}.png",
                kernel=f"kernels/{kernel_path.name}",
                noise_std=noise_std,
                source_image=str(image_files[image_index]),
                source_kernel=str(kernel_files[kernel_index]),
            )
        )
    write_manifest(out / "manifest.csv", rows)
    return rows


def scale_kernel(kernel: np.ndarray, factor: float) -> np.ndarray:
    """Kernel resized by ``factor`` to the nearest odd size (at least 3), summing to 1."""
    if factor == 1.0:
        return kernel
    size = tuple(max(3, odd_size(side * factor)) for side in kernel.shape)
    return resize_kernel(torch.from_numpy(kernel).double(), size).double().numpy()


def command(argv: list[str]) -> None:
    """``python -m lightning_deblur synth …``."""
    parser = function_parser(
        synthesize,
        prog="python -m lightning_deblur synth",
        description="Make a synthetic blurred dataset (blurred, sharp, kernels, manifest.csv).",
    )
    options = options_of(parser.parse_args(argv))
    rows = synthesize(**options)
    print(f"wrote {len(rows)} cases and {Path(options['output_dir']) / 'manifest.csv'}")
