"""Schedules over the steps of a stage: the loss terms' weights and the learning rate
(an LR scheduler); both are hyperparameters of the job.

Both count the 0-based step within the current stage: the weights from
:attr:`DeblurJob.step_in_scale`, read by the job before each step, the learning rate from
the scheduler's own step count.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.losses import LOSS_TERMS, LossTerm

PiecewiseWeights = dict[str, dict[int, float]]


def weight_at(breakpoints: dict[int, float], step: int) -> float:
    """Value of a piecewise-constant schedule: the value at the last breakpoint ≤ ``step``, else 0."""
    current = 0.0
    for start in sorted(breakpoints):
        if start > step:
            break
        current = breakpoints[start]
    return float(current)


IMPROVED_WEIGHTS = {"mse": {0: 1.0, 2000: 0.0}, "ssim": {2000: 1.0}, "tv": {2000: 0.01}, "kernel_l2": {0: 0.1, 2000: 0.0}}
"""The improved method at the finest scale: MSE then 1 − SSIM at 2000; TV from 2000; kernel ℓ2 until 2000."""

IMPROVED_COARSE_WEIGHTS = {"mse": {0: 1.0}, "kernel_l2": {0: 0.1}}
"""The improved method at coarse scales: the early regime (MSE + kernel ℓ2) throughout."""


@dataclass
class LossSchedule:
    """The weight of every loss term, from piecewise schedules keyed on the step within the scale.

    Each term maps iteration thresholds to the weight that holds from that iteration
    on (0 before the first threshold). The original method is
    ``{"mse": {0: 1, 1000: 0}, "ssim": {1000: 1}}``: MSE for iterations 0–999, then
    1 − SSIM. Terms listed in ``linear`` change linearly between their thresholds
    instead of in steps (e.g. a TV weight decaying from strong to normal).

    Args:
        weights: term name (one of ``mse``, ``ssim``, ``tv``, ``kernel_l2``) ->
            ``{first_iteration: weight}``, at the finest scale.
        coarse_weights: the same for the coarse scales; ``None`` uses ``weights``.
        linear: terms whose weights are interpolated linearly between thresholds.
    """

    weights: PiecewiseWeights = field(default_factory=lambda: IMPROVED_WEIGHTS)
    coarse_weights: PiecewiseWeights | None = field(default_factory=lambda: IMPROVED_COARSE_WEIGHTS)
    linear: list[LossTerm] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.weights = validate_weights(self.weights)
        self.coarse_weights = None if self.coarse_weights is None else validate_weights(self.coarse_weights)
        unknown = set(self.linear) - set(self.weights) - set(self.coarse_weights or {})
        if unknown:
            raise InputError(f"schedule.linear lists terms without a schedule: {', '.join(sorted(unknown))}")
        self.linear = sorted(set(self.linear))

    def weights_at(self, step: int, finest: bool = True) -> dict[str, float]:
        """Weight of every term at 0-based iteration ``step`` of a (finest or coarse) scale."""
        table = self.weights if finest or self.coarse_weights is None else self.coarse_weights
        return {
            name: (linear_weight_at if name in self.linear else weight_at)(breakpoints, step)
            for name, breakpoints in table.items()
        }


def linear_weight_at(breakpoints: dict[int, float], step: int) -> float:
    """Piecewise-linear schedule: interpolated between thresholds, constant after the last,
    0 before the first (as in :func:`weight_at`)."""
    points = sorted(breakpoints.items())
    if step < points[0][0]:
        return 0.0
    for (start, begin), (end, finish) in zip(points, points[1:]):
        if step < end:
            return float(begin + (finish - begin) * (step - start) / (end - start))
    return float(points[-1][1])


def validate_weights(weights: PiecewiseWeights) -> PiecewiseWeights:
    """Check term names and thresholds; return the schedule with int keys and float values."""
    cleaned: PiecewiseWeights = {}
    for name, breakpoints in weights.items():
        if name not in LOSS_TERMS:
            raise InputError(f"unknown loss term '{name}' in the schedule; the terms are {', '.join(LOSS_TERMS)}")
        cleaned[name] = {int(step): float(value) for step, value in breakpoints.items()}
        if any(step < 0 for step in cleaned[name]):
            raise InputError(f"loss term '{name}' has a negative iteration threshold in the schedule")
    return cleaned


@dataclass
class LearningRateSchedule:
    """Multiplies every parameter group's learning rate by ``gamma`` at each milestone.

    The learning rate at iteration ``i`` of a stage is ``lr · gamma^m`` with ``m`` the
    number of milestones ≤ ``i``: with milestones 2000, 3000, 4000 and gamma 0.5,
    iteration 2000 is the first at half the rate, as in the original method. The job
    applies it as a per-step ``LambdaLR`` (:meth:`scheduler`), which Lightning steps and
    ``LearningRateMonitor`` logs (as ``lr/image`` and ``lr/kernel``).

    Args:
        milestones: iterations (within the stage) at which the rate is multiplied.
        gamma: the factor applied at each milestone.
        coarse_milestones: the milestones of the coarse scales; ``None`` uses
            ``milestones`` (the papers' schedules: their milestones lie beyond the coarse
            scales' 500 iterations, so the coarse scales keep the full rate).
    """

    milestones: list[int] = field(default_factory=lambda: [2000, 3000, 4000])
    gamma: float = 0.5
    coarse_milestones: list[int] | None = None

    def __post_init__(self) -> None:
        self.milestones = sorted(self.milestones)
        self.coarse_milestones = None if self.coarse_milestones is None else sorted(self.coarse_milestones)

    def factor_at(self, step: int, finest: bool = True) -> float:
        """Factor of the initial rate at 0-based iteration ``step`` of a (finest or coarse) stage."""
        milestones = self.milestones if finest or self.coarse_milestones is None else self.coarse_milestones
        return self.gamma ** bisect_right(milestones, step)

    def scheduler(self, optimizer: torch.optim.Optimizer, finest: bool) -> dict:
        """Lightning's scheduler configuration for a stage's ``optimizer``, stepped after
        every optimization step.

        ``LambdaLR`` sets each group's rate to its initial rate times
        ``factor_at(its step count)``: the same product, bit for bit, as multiplying the
        rate by hand. Its step count starts at 0 with the optimizer, and the job makes a
        new optimizer at every stage, so it counts steps within the stage.
        """
        factor = partial(self.factor_at, finest=finest)
        return {"scheduler": LambdaLR(optimizer, factor), "interval": "step", "name": "lr"}
