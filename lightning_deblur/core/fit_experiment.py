"""How fast the image generator alone fits a sharp image and its blurred version.

The experiment behind the improved method's observation that a deep image prior
reproduces a blurred image faster than the sharp one (so a joint fit drifts towards the
blurred solution, the "no-blur" trap). The image net G_x (:class:`~lightning_deblur.core.generators.ImageNetSpec`)
gets a fixed input, uniform noise in ``[0, noise_scale)`` of the target's size (no
per-step perturbation), and Adam minimizes the MSE between its output and the target;
the RMSE of every iteration is recorded (the value before that iteration's update). The
two fits start from the same weights and the same input (one seed), so only the target
differs. Colour targets are fitted on their luminance, as jobs are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.fitting import fit_generator
from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.nets import SkipNet


@dataclass
class FitCurves:
    """RMSE per iteration of the two fits (``(iterations,)`` float64 arrays)."""

    sharp: np.ndarray
    blurred: np.ndarray


def fit_rmse(
    target: torch.Tensor,
    spec: ImageNetSpec,
    iterations: int,
    lr: float = 0.01,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """RMSE per iteration of fitting ``G_x(z)`` to ``target`` (``(1, 1, H, W)`` in [0, 1]).

    The net and ``z`` come from ``torch.manual_seed(seed)``, so calls with the same seed
    and target size start alike. RMSE values stay on the device until the end.
    """
    if iterations < 1:
        raise InputError(f"--iterations must be positive, got {iterations}")
    height, width = target.shape[-2:]
    smallest = SkipNet.min_input_size(spec.levels)
    if min(height, width) < smallest:
        raise InputError(
            f"the {height}×{width} image is smaller than the {smallest}×{smallest} the image net's {spec.levels} "
            "levels need; use a larger image or fewer --levels"
        )
    torch.manual_seed(seed)
    net = spec.build(output_channels=1).to(device)
    noise = torch.rand(1, spec.input_channels, height, width, device=device) * spec.noise_scale
    target = target.to(device=device, dtype=torch.float32)
    # The last update would not change any recorded RMSE, so the fit stops before it.
    report = fit_generator(net, noise, target, tolerance=None, lr=lr, max_iterations=iterations - 1)
    return report.history.double().cpu().numpy()


def fit_sharp_and_blurred(
    sharp: torch.Tensor,
    blurred: torch.Tensor,
    spec: ImageNetSpec,
    iterations: int,
    lr: float = 0.01,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> FitCurves:
    """:func:`fit_rmse` of the same net (same seed) to the sharp and to the blurred image."""
    if sharp.shape != blurred.shape:
        raise InputError(
            f"the sharp image is {sharp.shape[-2]}×{sharp.shape[-1]} but the blurred one {blurred.shape[-2]}×"
            f"{blurred.shape[-1]}; give images of one size (as `synth` writes them)"
        )
    return FitCurves(
        sharp=fit_rmse(sharp, spec, iterations, lr, seed, device),
        blurred=fit_rmse(blurred, spec, iterations, lr, seed, device),
    )
