"""Stops and resumes: periodic checkpoints, written and read safely, and the stops that
end a job at a step boundary (a time budget, a signal) so that its checkpoint resumes it."""

from __future__ import annotations

import pickle
import signal
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec, OptimizerSpec
from lightning_deblur.core.imagefiles import atomic_write
from lightning_deblur.core.kernel_crop import KernelCropSpec
from lightning_deblur.core.kernel_support import KernelProbeSpec
from lightning_deblur.core.planning import JobPlan, Scale, ScalesSpec
from lightning_deblur.core.schedule import LearningRateSchedule
from lightning_deblur.core.shock_filter import ShockFilterSpec
from lightning_deblur.core.starts import StartRecord
from lightning_deblur.core.tiles import Box, FinishSpec
from lightning_deblur.job.lightning_internals import take_over_sigterm
from lightning_deblur.job.multiscale import RefitSpec

# Checkpoints are read with torch.load(weights_only=True), which unpickles only classes
# allowed by name: the settings classes a job records as hyperparameters, and those of the
# stage state it keeps (DeblurJob.on_save_checkpoint). Allowed here, beside the reader, so
# that any reader of a checkpoint has them, whether or not the job's module is loaded.
torch.serialization.add_safe_globals([
    ImageNetSpec, KernelNetSpec, OptimizerSpec, ScalesSpec, RefitSpec, ShockFilterSpec, KernelCropSpec, FinishSpec,
    LearningRateSchedule, KernelProbeSpec, JobPlan, Scale, Box, StartRecord,
])  # fmt: skip


class JobCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint files, written atomically in their own folder and read safely.

    Lightning's own writer stages the file through fsspec, whose temporary file may lie on
    another filesystem (then the final move is a copy, not a rename) and whose failure on a
    full disk can leave a truncated file behind. Here the temporary file sits beside the
    checkpoint and replaces it only once complete (:func:`~lightning_deblur.core.imagefiles.atomic_write`).

    Reading always uses ``torch.load(weights_only=True)``: torch 2.3-2.5 default to
    ``False``, under which a crafted checkpoint runs code. A file that does not load is
    an :class:`InputError` naming it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location)


def load_checkpoint_file(path, map_location: Any | None = None) -> dict[str, Any]:
    """The contents of a job's checkpoint file, loaded with ``weights_only=True``.

    Raises:
        InputError: no such file, or a file that is not a complete checkpoint (truncated,
            corrupt, or holding objects other than tensors and the job's own settings).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint '{path}' not found; pass a run's checkpoints/last.ckpt to --ckpt_path")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        # torch's messages run to paragraphs; their first sentence names the fault.
        reason = str(error).strip().split(". ")[0].splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise InputError(
            f"checkpoint '{path}' cannot be read ({reason}); it is truncated or not a job's checkpoint: "
            "start the job over without --ckpt_path"
        ) from None


class JobCheckpoint(ModelCheckpoint):
    """Writes ``<run folder>/checkpoints/last.ckpt`` every ``every_n_steps`` steps.

    Resume a killed job with ``fit --config <run>/config.yaml --ckpt_path
    <run>/checkpoints/last.ckpt``: it continues in the same run folder and ends with the
    same result as an uninterrupted run (same machine, same seed). Checkpoints are
    written by :class:`JobCheckpointIO` (atomically, beside their final name), so a kill
    or a full disk never leaves a broken one, and read with ``weights_only=True``.

    Args:
        every_n_steps: interval in steps; 0 writes no checkpoints.
    """

    def __init__(self, every_n_steps: int = 500) -> None:
        if every_n_steps < 0:
            raise InputError(
                f"--checkpoint.every_n_steps must be 0 (no checkpoints) or a positive number of steps, got {every_n_steps}"
            )
        super().__init__(
            filename="last",
            save_top_k=1 if every_n_steps else 0,
            every_n_train_steps=every_n_steps or None,
            save_on_train_epoch_end=False,
            enable_version_counter=False,
        )
        self.every_n_steps = every_n_steps
        # Whether this fit resumes a checkpoint (set by the command line before the fit).
        self.resuming = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        with warnings.catch_warnings():
            if self.resuming:
                # Lightning warns of a non-empty checkpoint folder: a resumed job writes into
                # its own run folder, whose checkpoints/ holds the checkpoint it resumes.
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            super().setup(trainer, pl_module, stage)
        # Before the fit restores a --ckpt_path (which Lightning does after the setup hooks).
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = JobCheckpointIO()

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        # A finished job needs no checkpoint; it only costs disk space in large batches.
        if pl_module.stopped_early and self.every_n_steps and self.dirpath:
            # Stopped before the plan's end (a time budget, a signal, --trainer.max_steps):
            # keep where it got to, not the last periodic checkpoint, so a resume loses nothing.
            trainer.save_checkpoint(Path(self.dirpath) / "last.ckpt", weights_only=False)  # the whole state
            return
        finished = pl_module.failure is None and trainer.global_step >= pl_module.plan.total_steps
        if finished and self.dirpath and trainer.is_global_zero:
            checkpoint = Path(self.dirpath) / "last.ckpt"
            checkpoint.unlink(missing_ok=True)
            if Path(self.dirpath).is_dir() and not any(Path(self.dirpath).iterdir()):
                Path(self.dirpath).rmdir()


class JobTimer(Timer):
    """Lightning's :class:`Timer`, with ``duration`` the time budget of this process.

    Lightning's Timer counts the time before a resumed checkpoint against ``duration``, so
    a job it stopped would stop again at once when resumed. Here that earlier time is kept
    apart (:attr:`elapsed_before`): the resumed process gets a whole ``duration`` of its
    own, and :meth:`job_time` (``metrics.json``'s wall time) still counts every process.
    """

    elapsed_before: float = 0.0
    """Seconds of training before the checkpoint this fit resumed from (0 for a new job)."""

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["time_elapsed"]["train"] = self.job_time()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Not Timer's own offset, which would count against this process's duration.
        self.elapsed_before = float(state_dict.get("time_elapsed", {}).get("train", 0.0))

    def job_time(self) -> float:
        """Seconds of training of the job, over this process and those before its checkpoint."""
        return self.elapsed_before + self.time_elapsed("train")


class StopOnSignal(Callback):
    """SIGTERM and SIGINT (Ctrl-C) end the fit at the next step boundary, as a time
    budget does (``trainer.should_stop``): the results so far are written with status
    ``stopped``, the checkpoint is saved at the step reached, and the command line exits
    with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT).

    Lightning's own SIGTERM handler raises ``SIGTERMException`` after the step, which skips
    every ``on_train_end`` hook (results, checkpoint) and exits with code 0; and Ctrl-C
    raises ``KeyboardInterrupt`` wherever the step is. So from the start of training (after
    Lightning has registered its handler) both signals are only noted here, and a second
    Ctrl-C interrupts at once. A SIGTERM Lightning noted during the set-up is taken over.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            return  # Python lets only the main thread handle signals
        self._previous = {signum: signal.signal(signum, self._note) for signum in self.SIGNALS}
        if trainer.received_sigterm:
            self.received = signal.SIGTERM
            take_over_sigterm(trainer)

    def _note(self, signum, frame) -> None:
        self.received = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.received is None:
            return
        pl_module.stop_signal = self.received
        trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


def run_folder_of_checkpoint(path: str | Path) -> Path | None:
    """``<run>/checkpoints/last.ckpt`` -> ``<run>``; ``None`` for other layouts."""
    path = Path(path)
    return path.parent.parent if path.parent.name == "checkpoints" else None
