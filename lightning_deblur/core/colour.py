"""Colour conversions, the one home of the luminance weights.

Full-range BT.601 YCbCr (the JPEG convention, as used by Pillow's and OpenCV's YCbCr):
Y in [0, 1], Cb and Cr centred on 0.5. Jobs deblur the luminance Y and keep or rebuild
the chroma.

Every conversion takes either layout the project uses and returns the same kind:

- numpy arrays in the layout of image files, ``(H, W, 3)`` RGB (``(H, W)`` for grey),
  float64 in [0, 1] (:mod:`lightning_deblur.core.imagefiles`);
- torch tensors in the layout of the nets, ``(B, 3, H, W)`` RGB (``(B, 1, H, W)`` for
  grey), any float dtype, on any device.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from lightning_deblur.core.physics import pad_to_support

RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float64
)
"""Rows give Y, Cb and Cr (before the 0.5 chroma offset) as weights of R, G and B."""

YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)

Pixels = TypeVar("Pixels", np.ndarray, torch.Tensor)


def rgb_to_ycbcr(rgb: Pixels) -> Pixels:
    """RGB in [0, 1] -> YCbCr: ``(H, W, 3)`` array or ``(B, 3, H, W)`` tensor, same shape."""
    if isinstance(rgb, torch.Tensor):
        matrix = torch.as_tensor(RGB_TO_YCBCR, dtype=rgb.dtype, device=rgb.device)
        ycbcr = torch.einsum("ij,bjhw->bihw", matrix, rgb)
        return ycbcr + _chroma_offset(rgb)
    ycbcr = rgb @ RGB_TO_YCBCR.T
    ycbcr[..., 1:] += 0.5
    return ycbcr


def ycbcr_to_rgb(ycbcr: Pixels) -> Pixels:
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1] (same shape and kind)."""
    if isinstance(ycbcr, torch.Tensor):
        matrix = torch.as_tensor(YCBCR_TO_RGB, dtype=ycbcr.dtype, device=ycbcr.device)
        return torch.einsum("ij,bjhw->bihw", matrix, ycbcr - _chroma_offset(ycbcr)).clamp(0, 1)
    shifted = ycbcr.copy()
    shifted[..., 1:] -= 0.5
    return np.clip(shifted @ YCBCR_TO_RGB.T, 0.0, 1.0)


def _chroma_offset(like: torch.Tensor) -> torch.Tensor:
    """``(1, 3, 1, 1)`` offsets ``(0, 0.5, 0.5)`` of Y, Cb and Cr, in ``like``'s dtype and device."""
    return torch.tensor([0.0, 0.5, 0.5], dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def luminance(pixels: Pixels) -> Pixels:
    """The Y channel of RGB images; grey images are returned unchanged.

    ``(H, W, 3)`` array -> ``(H, W)``; ``(B, 3, H, W)`` tensor -> ``(B, 1, H, W)``.
    """
    if isinstance(pixels, torch.Tensor):
        return pixels if pixels.shape[1] == 1 else rgb_to_ycbcr(pixels)[:, :1]
    return pixels if pixels.ndim == 2 else rgb_to_ycbcr(pixels)[..., 0]


def replace_luminance(rgb: np.ndarray, new_luminance: np.ndarray) -> np.ndarray:
    """Keep the chroma (Cb, Cr) of ``(H, W, 3)`` ``rgb`` and put ``(H, W)`` ``new_luminance`` as its Y."""
    ycbcr = rgb_to_ycbcr(rgb)
    ycbcr[..., 0] = new_luminance
    return ycbcr_to_rgb(ycbcr)


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
