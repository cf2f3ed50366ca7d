"""Fitting a generator net to a fixed target: Adam on the mean squared error.

The one fitting loop of the project: the scale transitions re-fit both generators to
the upsampled estimates with it (stopping at an RMSE tolerance), and the fit-speed
experiment records how fast the image net reproduces a sharp and a blurred image (a
fixed number of steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_deblur.core.generators import make_adam


@dataclass
class FitReport:
    """Outcome of fitting a generator to a target.

    Attributes:
        iterations: Adam updates taken.
        rmse: RMSE of the last evaluation (the one that stopped the fit), target units.
        converged: whether that RMSE reached the tolerance.
        history: ``(iterations + 1,)`` float32 RMSE of every evaluation, on the target's
            device; entry ``i`` is the RMSE after ``i`` updates.
    """

    iterations: int
    rmse: float
    converged: bool
    history: torch.Tensor


def fit_generator(
    net: torch.nn.Module,
    net_input: torch.Tensor,
    target: torch.Tensor,
    tolerance: float | None,
    lr: float,
    max_iterations: int,
    fused: bool = False,
) -> FitReport:
    """Adam on ``‖net(net_input) − target‖²`` (mean) until the RMSE is at most ``tolerance``.

    Each step evaluates the RMSE first and updates only if the fit goes on, so at most
    ``max_iterations`` updates are made and ``max_iterations + 1`` RMSEs measured. Runs
    in float32 with gradients on, whatever the surrounding context.

    Args:
        net: the generator; its parameters are updated in place.
        net_input: its fixed input (no per-step perturbation).
        target: what its output should become, same shape as the output.
        tolerance: stop at the first RMSE at most this (target units); ``None``: run all
            ``max_iterations`` updates. Checking reads the RMSE on the host (a device
            sync per step), so ``None`` keeps a fit on the device until it ends.
        lr: Adam's learning rate.
        max_iterations: largest number of updates.
        fused: PyTorch's fused Adam (see :func:`lightning_deblur.core.generators.make_adam`).
    """
    optimizer = make_adam(net.parameters(), fused, lr=lr)
    target = target.detach().float()
    history = torch.empty(max_iterations + 1, device=target.device)
    with torch.enable_grad(), torch.autocast(device_type=target.device.type, enabled=False):
        for step in range(max_iterations + 1):
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(net(net_input).float(), target)
            history[step] = loss.detach().sqrt()
            if tolerance is not None or step == max_iterations:
                rmse = math.sqrt(loss.item())  # a host sync, only where the fit may stop
                converged = tolerance is not None and rmse <= tolerance
                if converged or step == max_iterations:
                    return FitReport(step, rmse, converged, history[: step + 1])
            loss.backward()
            optimizer.step()
    raise AssertionError("unreachable: the last step returns")  # pragma: no cover
