"""Loss terms of a deblurring job and the one place that sums them with their weights.

Every term returns a scalar tensor in float32. Data terms compare the re-blurred
estimate ``y_hat`` with the observation ``y`` (both ``(B, C, H, W)`` in [0, 1]);
regularizers look at the image ``x`` or the kernel ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from lightning_deblur.core.metrics import ssim_map


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV: mean absolute forward difference along H plus along W (float32).

    The mean (rather than the sum) keeps the weight independent of the image size.
    """
    x = x.float()
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


KERNEL_L2_REDUCTIONS = ("mean", "sum")
"""Forms of the kernel ℓ2 term: ``sum`` is ``‖k‖²`` as the improved method's paper writes
it; ``mean`` is ``‖k‖² / (kh·kw)``, normalized per element like the MSE and TV terms."""


def kernel_l2(k: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared ℓ2 norm of the kernel (float32): ``sum`` or ``mean`` of ``k²``.

    For a kernel summing to 1 it is lowest when spread out (sum: ``1/(kh·kw)`` for a
    uniform kernel, 1 for a delta; the mean divides both by ``kh·kw``), so it works
    against the no-blur solution. The two forms differ by the factor ``kh·kw`` (49 at
    7×7, 729 at 27×27): which one the published weight 0.1 was meant for is measured
    in docs/RESULTS.md (full-fidelity bank).

    Args:
        k: kernel ``(kh, kw)`` (or any shape), non-negative, sums to 1.
        reduction: ``"mean"`` or ``"sum"``.
    """
    squared = k.float().pow(2)
    return squared.sum() if reduction == "sum" else squared.mean()


@dataclass
class LossInputs:
    """What the loss terms may look at during one step.

    Attributes:
        y_hat: re-blurred estimate ``(B, C, H, W)``, float32.
        y: observation ``(B, C, H, W)``, float32.
        x: image estimate on the full support ``(B, C, H+kh-1, W+kw-1)``.
        k: kernel estimate ``(kh, kw)``.
        ssim_window: 1-D Gaussian window of the SSIM term (``None``: :func:`~lightning_deblur.core.metrics.ssim_window`).
        kernel_l2_reduction: form of the kernel ℓ2 term (:data:`KERNEL_L2_REDUCTIONS`).
    """

    y_hat: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    k: torch.Tensor
    ssim_window: torch.Tensor | None = None
    kernel_l2_reduction: str = "mean"


def _mse_term(inputs: LossInputs) -> torch.Tensor:
    return F.mse_loss(inputs.y_hat.float(), inputs.y.float())


def ssim(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM of two image batches over every pixel and image, computed in float32.

    :func:`~lightning_deblur.core.metrics.ssim_map` with zero padding: cheap in the training
    loop and what the published method optimizes. It therefore differs a little near
    the border from the reported ``ssim`` figure, which pads by reflection.

    Args:
        a, b: ``(B, C, H, W)`` images in [0, 1].
        window: optional precomputed 1-D window from :func:`~lightning_deblur.core.metrics.ssim_window`.

    Returns:
        Scalar tensor: mean SSIM in [-1, 1].
    """
    return ssim_map(a, b, "zeros", window).mean()


def _ssim_term(inputs: LossInputs) -> torch.Tensor:
    return 1 - ssim(inputs.y_hat, inputs.y, inputs.ssim_window)


def _tv_term(inputs: LossInputs) -> torch.Tensor:
    return total_variation(inputs.x)


def _kernel_l2_term(inputs: LossInputs) -> torch.Tensor:
    return kernel_l2(inputs.k, inputs.kernel_l2_reduction)


LOSS_TERMS = {
    "mse": _mse_term,
    "ssim": _ssim_term,
    "tv": _tv_term,
    "kernel_l2": _kernel_l2_term,
}
"""Every loss term a schedule can weight: ``mse`` and ``ssim`` (1 − SSIM) are data terms,
``tv`` regularizes the image and ``kernel_l2`` the kernel."""

LossTerm = Literal["mse", "ssim", "tv", "kernel_l2"]
"""The names of :data:`LOSS_TERMS`, as a type: the command line shows them as choices."""
assert set(get_args(LossTerm)) == set(LOSS_TERMS)  # one list of names, checked on import

DATA_TERMS = frozenset({"mse", "ssim"})
"""The terms that compare the re-blurred estimate with the observation."""


def weighted_loss(inputs: LossInputs, weights: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum the terms with non-zero weight.

    Terms with zero weight are not computed at all (SSIM is the costliest term).

    Returns:
        ``(total, terms)``: the weighted sum (scalar float32 tensor) and each computed
        term unweighted, for logging.
    """
    terms = {name: LOSS_TERMS[name](inputs) for name, weight in weights.items() if weight != 0}
    if not terms:
        raise ValueError("the loss schedule gives every term zero weight at this iteration")
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms


__all__ = [
    "DATA_TERMS",
    "KERNEL_L2_REDUCTIONS",
    "LOSS_TERMS",
    "LossInputs",
    "LossTerm",
    "kernel_l2",
    "ssim",
    "total_variation",
    "weighted_loss",
]
