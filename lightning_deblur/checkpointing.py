"""Periodic checkpoints of a job, so a killed job resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint


class JobCheckpoint(ModelCheckpoint):
    """Writes ``<run folder>/checkpoints/last.ckpt`` every ``every_n_steps`` steps.

    Resume a killed job with ``fit --config <run>/config.yaml --ckpt_path
    <run>/checkpoints/last.ckpt``: it continues in the same run folder and ends with the
    same result as an uninterrupted run (same machine, same seed). Lightning writes
    checkpoints to a temporary file and renames it, so a kill never leaves a broken one.

    Args:
        every_n_steps: interval in steps; 0 writes no checkpoints.
    """

    def __init__(self, every_n_steps: int = 500) -> None:
        super().__init__(
            filename="last",
            save_top_k=1 if every_n_steps else 0,
            every_n_train_steps=every_n_steps or None,
            save_on_train_epoch_end=False,
            enable_version_counter=False,
        )
        self.every_n_steps = every_n_steps

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        # A finished job needs no checkpoint; it only costs disk space in large batches.
        if pl_module.stopped_early and self.every_n_steps and self.dirpath:
            # Told to stop before the plan's end (--timer.duration): keep where it got to,
            # not the last periodic checkpoint, so a resume loses nothing.
            trainer.save_checkpoint(Path(self.dirpath) / "last.ckpt")
            return
        finished = pl_module.failure is None and trainer.global_step >= pl_module.plan.total_steps
        if finished and self.dirpath and trainer.is_global_zero:
            checkpoint = Path(self.dirpath) / "last.ckpt"
            checkpoint.unlink(missing_ok=True)
            if Path(self.dirpath).is_dir() and not any(Path(self.dirpath).iterdir()):
                Path(self.dirpath).rmdir()


def run_folder_of_checkpoint(path: str | Path) -> Path | None:
    """``<run>/checkpoints/last.ckpt`` -> ``<run>``; ``None`` for other layouts."""
    path = Path(path)
    return path.parent.parent if path.parent.name == "checkpoints" else None
