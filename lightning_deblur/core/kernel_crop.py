"""Where to estimate the kernel of a large image: a crop, given or chosen by its texture.

Blind estimation costs grow with the image area, and a kernel shared by the whole image
is determined as well by a few hundred pixels square of strong, varied edges. The
automatic choice scores every candidate window by the smaller eigenvalue of its
gradient structure tensor ``Σ [gx², gx·gy; gx·gy, gy²]``: the energy of the window's
weakest edge direction. A window with edges in one direction only (a striped
fence, a horizon) scores low, since it says nothing about the blur across those
edges. Clipped pixels (near 0 or 1, where the linear blur model breaks) add no edge
energy, and a window loses score in proportion to its share of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.tiles import Box

CLIPPED_LOW, CLIPPED_HIGH = 1.0 / 255, 254.0 / 255
"""Luminance at or beyond these values counts as clipped."""


@dataclass
class KernelCropSpec:
    """Where a blind job estimates the kernel.

    Attributes:
        size: side of the square crop, pixels. Images larger than this along a side are
            cropped there, at the most textured window; the whole image is then deblurred
            with the kernel found (``model.finish``). ``null`` never crops.
        box: ``[top, left, height, width]`` of a crop chosen by the user; overrides ``size``.
    """

    size: int | None = 512
    box: list[int] | None = None


def choose_crop(luminance: torch.Tensor, spec: KernelCropSpec) -> Box | None:
    """The crop a blind job estimates the kernel on, or ``None`` for the whole image.

    Args:
        luminance: ``(1, 1, H, W)`` observation in [0, 1].
        spec: the user's settings.

    Raises:
        InputError: a given box outside the image or a non-positive size.
    """
    height, width = luminance.shape[-2:]
    if spec.box is not None:
        if len(spec.box) != 4:
            raise InputError(f"model.kernel_crop.box must be [top, left, height, width], got {spec.box}")
        box = Box(*(int(v) for v in spec.box))
        if box.top < 0 or box.left < 0 or box.height < 1 or box.width < 1 or box.top + box.height > height or (
            box.left + box.width > width
        ):
            raise InputError(
                f"model.kernel_crop.box {box.as_list()} does not lie inside the {height}×{width} image; "
                "give [top, left, height, width] within it"
            )
        return None if box.size == (height, width) else box
    if spec.size is None:
        return None
    if spec.size < 1:
        raise InputError(f"model.kernel_crop.size must be positive (or null), got {spec.size}")
    if height <= spec.size and width <= spec.size:
        return None
    return most_textured_box(luminance, (min(spec.size, height), min(spec.size, width)))


def most_textured_box(luminance: torch.Tensor, size: tuple[int, int]) -> Box:
    """The ``size`` window of ``luminance`` (``(1, 1, H, W)``) with the strongest edges in
    every direction (module docstring); ties go to the first in row-major order.

    The score maps are pooled on a grid of ``cell`` pixels (1/32 of the window side) and
    windows are searched on that grid (positions past the bottom or right edge are moved
    back inside), so the search costs about the same for any image size.
    """
    image = luminance.double()[0, 0]
    height, width = image.shape
    clipped_mask = (image <= CLIPPED_LOW) | (image >= CLIPPED_HIGH)
    usable = (~clipped_mask).double()
    gx = torch.zeros_like(image)
    gy = torch.zeros_like(image)
    # Differences that touch a clipped pixel say nothing about the blur: left out.
    gx[:, :-1] = (image[:, 1:] - image[:, :-1]) * usable[:, 1:] * usable[:, :-1]
    gy[:-1, :] = (image[1:, :] - image[:-1, :]) * usable[1:, :] * usable[:-1, :]
    clipped = clipped_mask.double()
    maps = torch.stack([gx * gx, gy * gy, gx * gy, clipped])

    cell = max(1, min(size) // 32)
    pad_h, pad_w = -height % cell, -width % cell
    maps = F.pad(maps, (0, pad_w, 0, pad_h))
    pooled = maps.reshape(4, (height + pad_h) // cell, cell, (width + pad_w) // cell, cell).sum((2, 4))
    # Integral images: the sum over any run of cells is four lookups.
    integral = F.pad(pooled.cumsum(1).cumsum(2), (1, 0, 1, 0))

    def window_sums(top_cells: torch.Tensor, left_cells: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        top, left = top_cells[:, None], left_cells[None, :]
        return (
            integral[:, top + rows, left + cols] - integral[:, top, left + cols]
            - integral[:, top + rows, left] + integral[:, top, left]
        )  # fmt: skip

    rows_in_window, cols_in_window = max(1, size[0] // cell), max(1, size[1] // cell)
    top_cells = torch.arange(0, pooled.shape[1] - rows_in_window + 1)
    left_cells = torch.arange(0, pooled.shape[2] - cols_in_window + 1)
    xx, yy, xy, clip = window_sums(top_cells, left_cells, rows_in_window, cols_in_window)
    weakest = (xx + yy) / 2 - torch.sqrt(((xx - yy) / 2) ** 2 + xy**2)
    area = rows_in_window * cols_in_window * cell * cell
    score = weakest * (1 - clip / area)
    best = int(torch.argmax(score))
    top = min(int(top_cells[best // score.shape[1]]) * cell, height - size[0])
    left = min(int(left_cells[best % score.shape[1]]) * cell, width - size[1])
    return Box(top, left, size[0], size[1])
