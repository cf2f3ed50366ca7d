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

    @staticmethod
    def description(pl_module: LightningModule) -> str:
        return "deblurring"

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
