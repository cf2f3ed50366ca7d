"""Gaussian windows and resampling of images and kernels, on tensors.

The one home of the Gaussian profile (SSIM window, initial kernel, shock-filter
smoothing) and of the bilinear resizing used between scales and by ``synth``. Plain
torch: data-preparation commands import it without the training stack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def odd_size(value: float) -> int:
    """Nearest odd integer to ``value`` (ties go up)."""
    return 2 * math.floor((value - 1) / 2 + 0.5) + 1


def gaussian_profile(size: int, sigma: float, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """``(size,)`` samples of ``exp(-t² / 2σ²)`` at ``t = i - (size - 1) / 2`` (pixels), not normalized.

    Computed in ``dtype`` on ``device``: callers that must reproduce a window exactly
    choose both, since the rounding differs between them.
    """
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    return torch.exp(-(coords**2) / (2 * sigma**2))


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """``(size,)`` Gaussian of std ``sigma`` pixels, normalized to sum 1 in ``dtype``."""
    profile = gaussian_profile(size, sigma, dtype, device)
    return profile / profile.sum()


def gaussian_kernel(size: tuple[int, int], device=None) -> torch.Tensor:
    """``(kh, kw)`` float32 Gaussian with σ equal to the half-width along each axis, summing to 1."""
    rows, cols = (gaussian_profile(side, max((side - 1) / 2, 0.5), torch.float32, device) for side in size)
    kernel = torch.outer(rows, cols)
    return kernel / kernel.sum()


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of ``(B, C, H, W)`` to ``size``, anti-aliased when shrinking.

    Returns float32, or ``x`` itself when it already has that size.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def magnify(x: torch.Tensor, factor: tuple[float, float], size: tuple[int, int], padding: str = "border") -> torch.Tensor:
    """Bilinear magnification of ``(B, C, h, w)`` by ``factor`` (per axis, ``>= 1``) about
    its centre, sampled on a ``size`` grid with the same centre; returns float32.

    Unlike :func:`resize_image`, the scale is ``factor`` whatever the two sizes are: a
    feature ``t`` pixels from the centre lands ``factor · t`` pixels from the new centre.
    The new grid may be larger than the magnified input (``padding``: ``border`` repeats
    the edge, ``zeros`` is zero outside, as for a kernel) or smaller (cropped). No
    anti-aliasing: meant for enlarging.
    """
    axes = []
    for out_size, in_size, scale in zip(size, x.shape[-2:], factor):
        offsets = torch.arange(out_size, dtype=torch.float32, device=x.device) - (out_size - 1) / 2
        # grid_sample's normalized coordinate (align_corners=False) of the source point
        # offsets / scale pixels from the input's centre.
        axes.append(2 * offsets / (scale * in_size))
    rows, cols = torch.meshgrid(*axes, indexing="ij")
    grid = torch.stack((cols, rows), dim=-1).expand(x.shape[0], *size, 2)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode=padding, align_corners=False)


def resize_kernel(k: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of a ``(kh, kw)`` kernel to ``size``, kept non-negative and summing to 1."""
    resized = resize_image(k[None, None], size)[0, 0].clamp_min(0)
    return resized / resized.sum()
