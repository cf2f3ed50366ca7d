"""Overlapping tiles for deblurring an image too large for one image net, and their blending.

A tile is a box of the blurred observation; its image net estimates the sharp tile on
the tile's own support (``kh-1`` more rows and ``kw-1`` more columns), so every tile is
an ordinary non-blind job with the valid-convolution model and no boundary condition.
Neighbouring tiles overlap; in the overlap the estimates are mixed with weights that
ramp linearly from the inside of one tile to the inside of the other, so no seam
appears where one tile's net ends and the next one's begins. The weights of all tiles
are normalized to sum to 1 at every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.memory import available_bytes, step_bytes
from lightning_deblur.core.physics import support_size


@dataclass
class FinishSpec:
    """The non-blind finishing stage: the colour stage of RGB inputs, the whole image after
    a kernel estimated on a crop, and all of a non-blind job (``kernel_mode: fixed``).

    Attributes:
        iterations: steps per tile after a blind job (a non-blind job runs
            ``model.iterations`` per tile instead); 0 skips the stage where it is
            optional. ``null``: ``model.iterations`` after a kernel from a crop (the tiles
            start from the blurred image, as a non-blind job does), a fifth of it (1000 of
            5000) for the colour stage, which starts from the deblurred luminance.
        tile_size: side of the square tiles, pixels; ``null`` chooses the largest tile
            whose step fits in the device's free memory (one tile when the image fits).
        overlap: pixels shared by neighbouring tiles; ``null`` is twice the kernel's
            larger side, at least 16 and at most half the tile.
    """

    iterations: int | None = None
    tile_size: int | None = None
    overlap: int | None = None


@dataclass(frozen=True)
class Box:
    """A rectangle of the observation, in pixels: rows ``top:top+height``, columns ``left:left+width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    def columns(self) -> slice:
        return slice(self.left, self.left + self.width)

    def support_slices(self, kernel_size: tuple[int, int]) -> tuple[slice, slice]:
        """Rows and columns of this box's support inside the whole image's support.

        The support of the whole ``H × W`` observation is ``(H+kh-1) × (W+kw-1)``, and a
        box's support starts at the same index there as the box does in the observation.
        """
        return (
            slice(self.top, self.top + self.height + kernel_size[0] - 1),
            slice(self.left, self.left + self.width + kernel_size[1] - 1),
        )

    def as_list(self) -> list[int]:
        return [self.top, self.left, self.height, self.width]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """First indices of tiles of ``tile`` pixels covering ``0..length`` with at least
    ``overlap`` pixels shared by neighbours; the last tile ends flush with the edge."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def tile_boxes(image_size: tuple[int, int], tile_size: int, overlap: int) -> list[Box]:
    """Row-major tiles of at most ``tile_size × tile_size`` covering an ``H × W`` image.

    Raises:
        InputError: the overlap is negative or not smaller than the tile.
    """
    if overlap < 0 or overlap >= tile_size:
        raise InputError(
            f"model.finish.overlap must be at least 0 and smaller than the tile size ({tile_size}), got {overlap}"
        )
    height, width = image_size
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    return [
        Box(top, left, tile_h, tile_w)
        for top in tile_starts(height, tile_h, overlap)
        for left in tile_starts(width, tile_w, overlap)
    ]


def finishing_layout(
    image_size: tuple[int, int], kernel_size: tuple[int, int], tile_size: int, overlap: int | None
) -> tuple[list[Box], int]:
    """The tiles of the finishing stage and their overlap.

    Args:
        image_size: ``(H, W)`` of the observation.
        kernel_size: ``(kh, kw)``.
        tile_size: side of the square tiles.
        overlap: pixels shared by neighbours; ``None``: twice the kernel's larger side,
            at least 16 and at most half a tile (tiles then meet well inside each other's
            valid region).

    Raises:
        InputError: a non-positive tile size, or an overlap not smaller than the tile.
    """
    if tile_size < 1:
        raise InputError(f"model.finish.tile_size must be positive (or null for automatic), got {tile_size}")
    if overlap is None:
        overlap = min(max(16, 2 * max(kernel_size)), tile_size // 2)
    return tile_boxes(image_size, tile_size, overlap), overlap


def _axis_ramp(length: int, start: int, total: int, overlap: int, device=None) -> torch.Tensor:
    """Weights along one axis of a tile: 1 inside, a linear ramp over ``overlap`` pixels on
    each side that has a neighbour (no ramp at the image's own edges)."""
    weights = torch.ones(length, device=device)
    if overlap == 0:
        return weights
    steps = torch.arange(1, length + 1, dtype=torch.float32, device=device)
    if start > 0:  # a neighbour before this tile
        weights = torch.minimum(weights, steps / (overlap + 1))
    if start + length < total:  # a neighbour after it
        weights = torch.minimum(weights, steps.flip(0) / (overlap + 1))
    return weights


def blend_weights(box: Box, image_size: tuple[int, int], overlap: int, device=None) -> torch.Tensor:
    """``(height, width)`` un-normalized blending weights of one tile, all positive."""
    rows = _axis_ramp(box.height, box.top, image_size[0], overlap, device)
    columns = _axis_ramp(box.width, box.left, image_size[1], overlap, device)
    return torch.outer(rows, columns)


def add_tile(
    weighted_sum: torch.Tensor, weight_sum: torch.Tensor, estimate: torch.Tensor, box: Box, overlap: int
) -> None:
    """Accumulate one tile's estimate in place.

    Args:
        weighted_sum: ``(1, C, H, W)`` running sum of weighted estimates.
        weight_sum: ``(1, 1, H, W)`` running sum of weights.
        estimate: ``(1, C, height, width)`` the tile's estimate of the sharp box.
        box: where the tile lies.
        overlap: the overlap the tiles were laid out with.
    """
    weights = blend_weights(box, tuple(weight_sum.shape[-2:]), overlap, weight_sum.device)
    weighted_sum[..., box.rows(), box.columns()] += estimate.to(weighted_sum.dtype) * weights
    weight_sum[..., box.rows(), box.columns()] += weights


def blended(weighted_sum: torch.Tensor, weight_sum: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """The normalized blend, with ``fallback`` (e.g. the observation) where no tile has landed yet."""
    covered = weight_sum > 0
    return torch.where(covered, weighted_sum / weight_sum.clamp_min(1e-12), fallback.to(weighted_sum.dtype))


MEMORY_HEADROOM = 0.8
"""Share of the free memory a tile's step may use under automatic tile sizes."""


def largest_fitting_tile(
    image_spec,
    image_size: tuple[int, int],
    kernel_size: tuple[int, int],
    device: torch.device,
    channels: int,
    bytes_per_value: int,
    smallest: int,
) -> int:
    """The side of the largest square tile whose step fits in the free memory of ``device``.

    Returns the image's larger side (one tile) when the whole image fits or the free
    memory is unknown; never less than ``smallest``.
    """
    free = available_bytes(device)
    whole = max(image_size)
    if free is None:
        return whole
    budget = free * MEMORY_HEADROOM

    def fits(side: int) -> bool:
        tile = (min(side, image_size[0]), min(side, image_size[1]))
        return step_bytes(image_spec, support_size(tile, kernel_size), channels, bytes_per_value) <= budget

    if fits(whole):
        return whole
    low, high = smallest, whole  # fits(low) is assumed: the memory check refuses the job otherwise
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low
