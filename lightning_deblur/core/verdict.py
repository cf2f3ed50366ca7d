"""A no-reference verdict on a finished blind job: did it find a blur, or fail?

Without a sharp reference a user cannot tell a failed run from a good one. Two failure
kinds leave a signature in what the job itself returns (the input ``y``, the estimate
``x`` and the kernel ``k``):

- **no-blur**: the trivial solution ``x ≈ y, k ≈ δ``: the kernel's mass sits in one
  pixel (peak near 1) and the estimate is hardly sharper than the input.
- **kernel-at-border**: the kernel fills its whole support up to the border (its
  outermost rows/columns as strong as its peak): held spread by a too strong prior, or
  the kernel size given is too small for the blur.

The thresholds were calibrated on the full-fidelity bank (docs/RESULTS.md, "A
no-reference verdict"), where their precision and recall against the true aligned
ISNR are measured; over-sharpened failures (ringing) are not caught by either.

A wrong kernel with neither signature is not judged here, but runs of one input can be
ranked: :func:`gradient_sparsity` (lower: sparser edges) picks the better of an input's
runs far more often than chance on the bank (docs/RESULTS.md, "Choosing among finished
runs"). It has no threshold of its own: its level depends on the image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from lightning_deblur.core.centring import border_ratio

NO_BLUR = "no-blur"
"""The label of a result stuck in the no-blur solution (x ≈ y, k ≈ δ)."""

NO_BLUR_PEAK = 0.6
"""Kernel peak (of a kernel summing to 1) from which a kernel counts as a near-delta."""

NO_BLUR_SHARPNESS = 2.0
"""Sharpness gain below which a near-delta kernel's estimate counts as not deblurred."""

BORDER_RATIO = 0.75
"""Border-to-peak ratio of the kernel from which it counts as filling its support."""

SPARSITY_POOL = 3
"""Side in pixels of the box average taken before :func:`gradient_sparsity`: it keeps the
noise a deblurred result amplifies out of the measure. Chosen among 1–4 on the
full-fidelity bank's seeds 0–1 (96×96 inputs with 1 % noise), checked on its held-out
seeds 2–3 (docs/RESULTS.md, "Choosing among finished runs")."""


@dataclass
class Verdict:
    """What :func:`judge` found.

    Attributes:
        label: ``ok``, ``no-blur`` or ``kernel-at-border``.
        kernel_peak: largest kernel value (1 for a delta; ``1/(kh·kw)`` for uniform).
        sharpness_gain: mean squared gradient of the estimate over that of the input
            (1: no sharper; a deblurred image is several times sharper).
        kernel_border: largest kernel value on the outermost rows/columns over the peak.
        gradient_sparsity: :func:`gradient_sparsity` of the estimate over that of the
            input (below 1: sparser edges than the input). Only comparable between runs
            of the same input; NaN in records made before it existed.
    """

    label: str
    kernel_peak: float
    sharpness_gain: float
    kernel_border: float
    gradient_sparsity: float = math.nan

    @property
    def failed(self) -> bool:
        return self.label != "ok"

    def as_metrics(self) -> dict:
        """``metrics.json`` entries: ``verdict`` and ``verdict_signals``."""
        signals = {key: round(value, 4) for key, value in asdict(self).items() if key != "label"}
        return {"verdict": self.label, "verdict_signals": signals}

    def sentence(self) -> str:
        """One line for the job's summary."""
        why = {
            "ok": "a blur was found",
            NO_BLUR: "the kernel is a near-delta and the image no sharper than the input (the no-blur solution)",
            "kernel-at-border": "the kernel fills its support up to the border (kernel size too small?)",
        }[self.label]
        return (
            f"verdict {self.label}: {why} (kernel peak {self.kernel_peak:.2f}, sharpness ×{self.sharpness_gain:.1f}, "
            f"border/peak {self.kernel_border:.2f}, gradient sparsity ×{self.gradient_sparsity:.3f})"
        )


def gradient_energy(image: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference along H plus along W, float64.

    Args:
        image: ``(..., H, W)`` in [0, 1].
    """
    image = image.double()
    return (image.diff(dim=-2) ** 2).mean() + (image.diff(dim=-1) ** 2).mean()


def gradient_sparsity(image: torch.Tensor) -> float:
    """ℓ1 over ℓ2 norm of the forward differences (along H and W together) of the image
    box-averaged over ``SPARSITY_POOL``² pixels; float64. Krishnan et al.'s normalized
    sparsity: blur and ringing spread the gradients (higher), a sharp image has few strong
    edges (lower). Scale-free: multiplying the image changes nothing.

    Args:
        image: ``(..., H, W)`` in [0, 1], H and W at least ``2 * SPARSITY_POOL``.
    """
    image = image.detach().double().cpu()
    pooled = F.avg_pool2d(image.reshape(-1, 1, *image.shape[-2:]), SPARSITY_POOL)
    gradients = torch.cat([pooled.diff(dim=-2).flatten(), pooled.diff(dim=-1).flatten()])
    return float(gradients.abs().sum() / gradients.norm().clamp_min(1e-12))


def relative_gradient_sparsity(estimate: torch.Tensor, observation: torch.Tensor) -> float:
    """:func:`gradient_sparsity` of the estimate over that of the observation (1: as
    sparse as the input; lower: sparser edges). Both ``(..., H, W)`` in [0, 1]."""
    return gradient_sparsity(estimate) / max(gradient_sparsity(observation), 1e-12)


def judge(observation: torch.Tensor, estimate: torch.Tensor, kernel: torch.Tensor) -> Verdict:
    """The verdict on one blind result.

    Args:
        observation: blurred input ``(..., H, W)`` in [0, 1] (grey or luminance).
        estimate: deblurred result of the same shape, in [0, 1].
        kernel: estimated kernel ``(kh, kw)``, non-negative, sums to 1.
    """
    kernel = kernel.detach().double().cpu()
    peak = float(kernel.max() / kernel.sum())
    sharpness = float(gradient_energy(estimate.detach().cpu()) / gradient_energy(observation.detach().cpu()).clamp_min(1e-12))
    border = border_ratio(kernel)
    sparsity = relative_gradient_sparsity(estimate, observation)
    if peak >= NO_BLUR_PEAK and sharpness < NO_BLUR_SHARPNESS:
        label = NO_BLUR
    elif border >= BORDER_RATIO:
        label = "kernel-at-border"
    else:
        label = "ok"
    return Verdict(label, peak, sharpness, border, sparsity)
