"""Colour conversions on tensors, for the colour stage of a job.

Full-range BT.601 YCbCr, the same matrices as the numpy conversions in
:mod:`lightning_deblur.io` (Y in [0, 1], Cb and Cr centred on 0.5).
"""

from __future__ import annotations

import torch

from lightning_deblur.io import RGB_TO_YCBCR, YCBCR_TO_RGB
from lightning_deblur.physics import pad_to_support


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> YCbCr ``(B, 3, H, W)``."""
    matrix = torch.as_tensor(RGB_TO_YCBCR, dtype=rgb.dtype, device=rgb.device)
    ycbcr = torch.einsum("ij,bjhw->bihw", matrix, rgb)
    offset = torch.tensor([0.0, 0.5, 0.5], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return ycbcr + offset


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    matrix = torch.as_tensor(YCBCR_TO_RGB, dtype=ycbcr.dtype, device=ycbcr.device)
    offset = torch.tensor([0.0, 0.5, 0.5], dtype=ycbcr.dtype, device=ycbcr.device).view(1, 3, 1, 1)
    return torch.einsum("ij,bjhw->bihw", matrix, ycbcr - offset).clamp(0, 1)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` unchanged; ``(B, 3, H, W)`` RGB -> its Y channel ``(B, 1, H, W)``."""
    return images if images.shape[1] == 1 else rgb_to_ycbcr(images)[:, :1]


def colour_support(luminance_support: torch.Tensor, observed_rgb: torch.Tensor) -> torch.Tensor:
    """A colour starting estimate on the support: the deblurred luminance with the
    observation's chroma, the chroma padded out to the support by edge replication.

    Args:
        luminance_support: ``(1, 1, H+kh-1, W+kw-1)`` luminance estimate.
        observed_rgb: ``(1, 3, H, W)`` blurred RGB observation.

    Returns:
        ``(1, 3, H+kh-1, W+kw-1)`` RGB in [0, 1].
    """
    kernel_size = (
        luminance_support.shape[-2] - observed_rgb.shape[-2] + 1,
        luminance_support.shape[-1] - observed_rgb.shape[-1] + 1,
    )
    chroma = pad_to_support(rgb_to_ycbcr(observed_rgb.float())[:, 1:], kernel_size)
    return ycbcr_to_rgb(torch.cat([luminance_support.float(), chroma], dim=1))
