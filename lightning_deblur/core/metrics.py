"""Image-quality figures of a result against its sharp reference.

All image functions take ``(B, C, H, W)`` tensors in [0, 1] and return one value per
image ``(B,)`` in float32, on the device of the inputs; :func:`psnr` (one value for the
whole batch) and :func:`ssim_map` (a value per pixel) serve the training loss and logs.

Plain figures (:func:`psnr_per_image`, :func:`ssim_per_image`, :func:`isnr_per_image`)
compare pixel for pixel; the shift-aligned ones, the way Levin et al. do, are in
:mod:`lightning_deblur.core.alignment`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lightning_deblur.core.resample import gaussian_window


SSIM_WINDOW = 11
"""Side of the SSIM window, pixels."""

SSIM_SIGMA = 1.5
"""Std of the SSIM window's Gaussian, pixels."""

SSIM_C1 = 0.01**2

SSIM_C2 = 0.03**2
"""SSIM's stabilizing constants ``(0.01·L)²`` and ``(0.03·L)²`` for a data range ``L = 1``."""

SsimPadding = Literal["zeros", "reflect"]


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for a peak of 1: ``−10·log10(mse)``, the MSE floored at 1e-20 (200 dB)."""
    return -10 * torch.log10(mse.clamp_min(1e-20))


def psnr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (peak 1) over the whole tensor, in float32: a scalar tensor.

    The cheap form for the training loop (one float32 reduction on the device, no host
    sync); result files use :func:`psnr_per_image`, which sums in float64.
    """
    return psnr_from_mse(F.mse_loss(estimate.float(), reference.float()))


def psnr_per_image(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (peak 1) of each image of the batch: ``(B,)`` float32, the MSE summed in float64."""
    mse = (estimate.double() - reference.double()).pow(2).flatten(1).mean(dim=1)
    return psnr_from_mse(mse).float()


def ssim_window(device=None) -> torch.Tensor:
    """The 1-D SSIM window: :data:`SSIM_WINDOW` taps of a Gaussian of std :data:`SSIM_SIGMA`,
    normalized in float64, returned in float32."""
    return gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(device=device, dtype=torch.float32)


def ssim_map(
    a: torch.Tensor, b: torch.Tensor, padding: SsimPadding, window: torch.Tensor | None = None
) -> torch.Tensor:
    """Local SSIM of two image batches at every pixel, computed in float32.

    Gaussian window (:func:`ssim_window`: 11 taps, σ = 1.5), ``C1 = 0.01²``,
    ``C2 = 0.03²`` (data in [0, 1]). The 2-D window is the outer product of the 1-D one,
    so it is applied as two 1-D passes (rows, then columns); the map has the images'
    size, the window reaching past the border into the padding:

    - ``"zeros"``: the image continues as black. Cheap (the convolution pads) and
      differentiable; near the border the local means are pulled towards 0, which
      lowers the SSIM of bright borders a little. The training loss uses it.
    - ``"reflect"``: the image is mirrored at its border (without repeating the edge
      pixel), the convention of torchmetrics and scikit-image, so border pixels are
      judged on image content only. The reported quality figure uses it.

    Where the images are 0 within half a window of the border, both give the same map.

    Args:
        a, b: ``(B, C, H, W)`` images in [0, 1]; ``"reflect"`` needs ``H, W > 5``.
        padding: ``"zeros"`` or ``"reflect"`` (see above).
        window: optional precomputed 1-D window from :func:`ssim_window`.

    Returns:
        ``(B, C, H, W)`` float32, values in [-1, 1].
    """
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = a.float(), b.float()
        if window is None:
            window = ssim_window(device=a.device)
        batch, channels, height, width = a.shape
        # Filter the five local statistics in one grouped convolution pass.
        stats = torch.stack([a, b, a * a, b * b, a * b], dim=2).reshape(batch, channels * 5, height, width)
        groups = channels * 5
        pad = window.numel() // 2
        if padding == "reflect":
            stats = F.pad(stats, (pad, pad, pad, pad), mode="reflect")
            row_pad, col_pad = (0, 0), (0, 0)
        elif padding == "zeros":
            row_pad, col_pad = (0, pad), (pad, 0)
        else:
            raise ValueError(f"SSIM padding must be 'zeros' or 'reflect', got {padding!r}")
        filtered = F.conv2d(stats, window.view(1, 1, 1, -1).expand(groups, 1, 1, -1), padding=row_pad, groups=groups)
        filtered = F.conv2d(filtered, window.view(1, 1, -1, 1).expand(groups, 1, -1, 1), padding=col_pad, groups=groups)
        mu_a, mu_b, aa, bb, ab = filtered.reshape(batch, channels, 5, height, width).unbind(dim=2)
        var_a = aa - mu_a * mu_a
        var_b = bb - mu_b * mu_b
        cov = ab - mu_a * mu_b
        numerator = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
        denominator = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
        return numerator / denominator


def ssim_per_image(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM of each image of the batch: the mean of :func:`ssim_map` with ``"reflect"`` padding.

    Reflect padding because this is a reported figure: it should judge the image's own
    pixels, and agree (to float32 rounding, about 1e-5) with the common implementations
    (torchmetrics, scikit-image), not with the training loss's cheaper zero padding.

    Returns:
        ``(B,)`` float32.
    """
    return ssim_map(estimate, reference, "reflect").flatten(1).mean(dim=1)


def isnr_per_image(estimate: torch.Tensor, observation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Improvement in SNR, dB: ``PSNR(estimate, reference) − PSNR(observation, reference)``."""
    return psnr_per_image(estimate, reference) - psnr_per_image(observation, reference)
