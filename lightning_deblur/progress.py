"""The progress bar of a job: iteration, loss, and PSNR when a sharp reference is known."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class JobProgressBar(TQDMProgressBar):
    """A tqdm bar over the job's iterations.

    Updating it reads the logged loss back to the host, so on an accelerator it
    refreshes only every ``refresh_rate`` steps.

    Args:
        refresh_rate: steps between refreshes; ``None`` picks 1 on CPU (where reading a
            value costs nothing) and 25 on accelerators.
    """

    def __init__(self, refresh_rate: int | None = None) -> None:
        super().__init__(refresh_rate=1 if refresh_rate is None else refresh_rate)
        self._automatic_rate = refresh_rate is None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self._automatic_rate:
            self._refresh_rate = 1 if pl_module.device.type == "cpu" and trainer.strategy.root_device.type == "cpu" else 25

    def on_train_epoch_start(self, trainer: Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(self.description(trainer.lightning_module))

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        # The scale changes between steps; the description is plain Python state, no sync.
        if pl_module.step_in_scale == 0 and self._train_progress_bar is not None and not self.is_disabled:
            self.train_progress_bar.set_description(self.description(pl_module))

    @staticmethod
    def description(pl_module: LightningModule) -> str:
        plan = getattr(pl_module, "plan", [])
        if plan and plan[pl_module.scale_index].finishing:
            tiles = pl_module.tile_count
            index = pl_module.scale_index - pl_module.blind_scale_count
            return f"non-blind finishing, tile {index + 1}/{tiles}" if tiles > 1 else "non-blind finishing"
        if len(plan) > 1:
            return f"deblurring, scale {pl_module.scale_index + 1}/{len(plan)}"
        return "deblurring"

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        """Loss and PSNR of the latest step, read back from the device only here."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        for name in ("loss", "psnr"):
            value = getattr(pl_module, f"latest_{name}", None)
            if value is not None:
                metrics[name] = f"{value.item():.4g}" if name == "loss" else f"{value.item():.2f}"
        return metrics
