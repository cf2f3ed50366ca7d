"""Image-quality figures of a result against its sharp reference.

All functions take ``(B, C, H, W)`` tensors in [0, 1] and return one value per image
``(B,)`` in float32, on the device of the inputs.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def psnr_per_image(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (peak 1) of each image of the batch."""
    mse = (estimate.double() - reference.double()).pow(2).flatten(1).mean(dim=1)
    return (-10 * torch.log10(mse.clamp_min(1e-20))).float()


def ssim_per_image(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM of each image (Gaussian 11×11, σ 1.5, data range 1), as torchmetrics computes it."""
    return structural_similarity_index_measure(
        estimate.float(), reference.float(), data_range=1.0, reduction="none"
    ).float()


def isnr_per_image(estimate: torch.Tensor, observation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Improvement in SNR, dB: ``PSNR(estimate, reference) − PSNR(observation, reference)``."""
    return psnr_per_image(estimate, reference) - psnr_per_image(observation, reference)
