"""Callbacks that change the loss and the learning rates at iteration thresholds.

Both key on :attr:`DeblurJob.step_in_scale`, the 0-based step within the current scale,
and act in ``on_train_batch_start``, so the step that follows already uses the new
setting.
"""

from __future__ import annotations

from bisect import bisect_right

from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_deblur.errors import InputError
from lightning_deblur.losses import LOSS_TERMS, LossTerm

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


class LossSchedule(Callback):
    """Sets the weight of every loss term from piecewise schedules keyed on the step within the scale.

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

    def __init__(
        self,
        weights: PiecewiseWeights = IMPROVED_WEIGHTS,
        coarse_weights: PiecewiseWeights | None = IMPROVED_COARSE_WEIGHTS,
        linear: list[LossTerm] = [],  # noqa: B006
    ) -> None:
        self.weights = validate_weights(weights)
        self.coarse_weights = None if coarse_weights is None else validate_weights(coarse_weights)
        unknown = set(linear) - set(self.weights) - set(self.coarse_weights or {})
        if unknown:
            raise InputError(f"schedule.linear lists terms without a schedule: {', '.join(sorted(unknown))}")
        self.linear = set(linear)

    def weights_at(self, step: int, finest: bool = True) -> dict[str, float]:
        """Weight of every term at 0-based iteration ``step`` of a (finest or coarse) scale."""
        table = self.weights if finest or self.coarse_weights is None else self.coarse_weights
        return {
            name: (linear_weight_at if name in self.linear else weight_at)(breakpoints, step)
            for name, breakpoints in table.items()
        }

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        pl_module.loss_weights = self.weights_at(pl_module.step_in_scale, pl_module.is_finest_scale)


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


class LearningRateSchedule(Callback):
    """Multiplies every parameter group's ``base_lr`` by ``gamma`` at each milestone.

    The learning rate at iteration ``i`` of a scale is ``base_lr · gamma^m`` with ``m``
    the number of milestones ≤ ``i``: with milestones 2000, 3000, 4000 and gamma 0.5,
    iteration 2000 is the first at half the rate, as in the original method.

    Args:
        milestones: iterations (within the scale) at which the rate is multiplied.
        gamma: the factor applied at each milestone.
        coarse_milestones: the milestones of the coarse scales; ``None`` uses
            ``milestones`` (the papers' schedules: their milestones lie beyond the coarse
            scales' 500 iterations, so the coarse scales keep the full rate).
    """

    def __init__(
        self,
        milestones: list[int] = [2000, 3000, 4000],  # noqa: B006
        gamma: float = 0.5,
        coarse_milestones: list[int] | None = None,
    ) -> None:
        self.milestones = sorted(milestones)
        self.gamma = gamma
        self.coarse_milestones = None if coarse_milestones is None else sorted(coarse_milestones)

    def factor_at(self, step: int, finest: bool = True) -> float:
        """Factor of the base rate at 0-based iteration ``step`` of a (finest or coarse) scale."""
        milestones = self.milestones if finest or self.coarse_milestones is None else self.coarse_milestones
        return self.gamma ** bisect_right(milestones, step)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        factor = self.factor_at(pl_module.step_in_scale, pl_module.is_finest_scale)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
        # A Python float becomes a device tensor when logged: do it only when it is written.
        if (trainer.global_step + 1) % trainer.log_every_n_steps == 0:
            for group in trainer.optimizers[0].param_groups:
                pl_module.log(f"lr/{group.get('name', 'group')}", group["lr"], batch_size=1)
