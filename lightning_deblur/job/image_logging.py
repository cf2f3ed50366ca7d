"""TensorBoard pictures of a job: the input, and the current image and kernel every N steps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_deblur.core.imagefiles import kernel_preview

PREVIEW_MAX_SIDE = 1024
"""Longer side of the images written to TensorBoard, pixels; larger estimates are shrunk
(a multi-megapixel photo every few hundred steps would bloat the event file)."""


def preview(image: torch.Tensor, max_side: int = PREVIEW_MAX_SIDE) -> torch.Tensor:
    """``(1, C, H, W)`` -> ``(C, h, w)`` in [0, 1] on the CPU, shrunk (anti-aliased) so that
    its longer side is at most ``max_side``."""
    image = image.float().clamp(0, 1)
    longer = max(image.shape[-2:])
    if longer > max_side:
        size = tuple(max(1, round(side * max_side / longer)) for side in image.shape[-2:])
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    return image[0].cpu()


def tensorboard_writer(trainer: Trainer):
    """The ``SummaryWriter`` of the trainer's TensorBoard logger, or ``None`` without one."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class ImageLogging(Callback):
    """Writes the estimate and the kernel to TensorBoard every ``every_n_steps`` steps.

    In the finishing stage the estimate is the whole image as blended so far. Images
    larger than :data:`PREVIEW_MAX_SIDE` are shrunk for the log.

    Reading the pictures back to the host is a device sync, so it happens only at
    these intervals (and once at the start and the end).

    Args:
        every_n_steps: interval in steps; 0 turns the pictures off.
    """

    def __init__(self, every_n_steps: int = 100) -> None:
        self.every_n_steps = every_n_steps

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or not self.every_n_steps:
            return
        writer.add_image("input/blurred", preview(pl_module.y), 0)
        if pl_module.sharp is not None:
            writer.add_image("input/sharp", preview(pl_module.sharp), 0)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step  # already counts the step that just ended
        if self.every_n_steps and step % self.every_n_steps == 0:
            self.log_estimate(trainer, pl_module, "estimate", step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_steps:
            self.log_estimate(trainer, pl_module, "estimate", trainer.global_step)

    @staticmethod
    def log_estimate(trainer: Trainer, pl_module: LightningModule, prefix: str, step: int) -> None:
        """Write the current image crop and kernel preview under ``prefix/``."""
        writer = tensorboard_writer(trainer)
        if writer is None or pl_module.latest_x is None:
            return
        image, _ = pl_module.estimate()
        writer.add_image(f"{prefix}/image", preview(image), step)
        ImageLogging.log_kernel(trainer, pl_module, prefix, step)

    @staticmethod
    def log_kernel(trainer: Trainer, pl_module: LightningModule, prefix: str, step: int) -> None:
        """Write the current kernel, scaled to its maximum and enlarged, as ``prefix/kernel``."""
        writer = tensorboard_writer(trainer)
        if writer is None or pl_module.latest_k is None:
            return
        preview = kernel_preview(pl_module.latest_k.cpu().numpy().astype(np.float64))
        writer.add_image(f"{prefix}/kernel", torch.from_numpy(preview)[None], step)
