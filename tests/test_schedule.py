"""The loss and learning-rate schedules switch exactly at their thresholds."""

from __future__ import annotations

import pytest
from lightning.pytorch import Callback, Trainer

from lightning_deblur.job.data import BlurredImage
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec
from lightning_deblur.job.deblur_job import DeblurJob
from lightning_deblur.job.multiscale import RefitSpec
from lightning_deblur.core.planning import ScalesSpec
from lightning_deblur.core.schedule import LearningRateSchedule, LossSchedule, weight_at


def test_weight_at_is_piecewise_constant_and_zero_before_the_first_threshold():
    schedule = {5: 0.3, 10: 0.0}
    assert [weight_at(schedule, step) for step in (0, 4, 5, 9, 10, 100)] == [0, 0, 0.3, 0.3, 0, 0]


def test_original_loss_switches_from_mse_to_ssim_at_iteration_1000():
    schedule = LossSchedule({"mse": {0: 1.0, 1000: 0.0}, "ssim": {1000: 1.0}}, coarse_weights=None)
    assert schedule.weights_at(999) == {"mse": 1.0, "ssim": 0.0}
    assert schedule.weights_at(1000) == {"mse": 0.0, "ssim": 1.0}


def test_learning_rate_halves_at_each_milestone():
    schedule = LearningRateSchedule()
    assert [schedule.factor_at(s) for s in (0, 1999, 2000, 2999, 3000, 4000, 4999)] == [1, 1, 0.5, 0.5, 0.25, 0.125, 0.125]


def test_unknown_loss_term_is_refused():
    with pytest.raises(InputError, match="unknown loss term 'l1'"):
        LossSchedule({"l1": {0: 1.0}})


class RecordStep(Callback):
    """Records for each step which terms it computed and the learning rates it used (read
    before the step: the scheduler moves them on right after it)."""

    def __init__(self):
        self.terms, self.lrs = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.terms.append({name for name, weight in pl_module.loss_weights.items() if weight})


def test_a_run_switches_loss_and_learning_rate_exactly_at_the_thresholds(blurred_case):
    record = RecordStep()
    job = DeblurJob(
        image_net=ImageNetSpec(channels=8, skip_channels=4),
        kernel_net=KernelNetSpec(hidden=32),
        iterations=12,
        scales=ScalesSpec(count=1),
        refit=RefitSpec(initial_kernel="none"),
        lr_schedule=LearningRateSchedule([4, 9], 0.5),
        schedule=LossSchedule({"mse": {0: 1.0, 7: 0.0}, "ssim": {7: 1.0}}),
    )
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=1,
        callbacks=[record],
    )
    trainer.fit(job, datamodule=BlurredImage(str(blurred_case["image"]), 5))
    assert record.terms == [{"mse"}] * 7 + [{"ssim"}] * 5
    assert [lr[0] for lr in record.lrs] == [0.01] * 4 + [0.005] * 5 + [0.0025] * 3
    assert [lr[1] for lr in record.lrs] == pytest.approx([1e-4] * 4 + [5e-5] * 5 + [2.5e-5] * 3)
    assert trainer.global_step == 12


def test_coarse_scales_can_have_their_own_learning_rate_milestones():
    schedule = LearningRateSchedule([100, 300], 0.5, coarse_milestones=[])
    assert [schedule.factor_at(s, finest=True) for s in (99, 100, 300)] == [1, 0.5, 0.25]
    assert [schedule.factor_at(s, finest=False) for s in (99, 100, 300)] == [1, 1, 1]
    # Without coarse milestones every scale follows the same ones (the papers' configs).
    assert LearningRateSchedule([100]).factor_at(150, finest=False) == 0.5
