"""The command line: ``python -m lightning_deblur fit --config configs/….yaml …``.

A LightningCLI over :class:`DeblurJob` and :class:`BlurredImage`, with the job's
callbacks always present and configurable under their own keys (``schedule``,
``lr_schedule``, ``image_logging``, ``progress_bar``, ``outputs``). User mistakes are
reported as one line on stderr with exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from lightning_deblur.checkpointing import JobCheckpoint, run_folder_of_checkpoint
from lightning_deblur.curves import QualityCurve
from lightning_deblur.data import BlurredImage, load_observation
from lightning_deblur.divergence import DivergenceGuard
from lightning_deblur.errors import InputError
from lightning_deblur.image_logging import ImageLogging
from lightning_deblur.job import DeblurJob, ImageNetSpec, blind_region_words, check_tile_size, checked_plan
from lightning_deblur.kernel_crop import KernelCropSpec, choose_crop
from lightning_deblur.multiscale import ScalesSpec
from lightning_deblur.outputs import ResultWriter
from lightning_deblur.precision import default_precision
from lightning_deblur.progress import JobProgressBar
from lightning_deblur.schedule import LearningRateSchedule, LossSchedule
from lightning_deblur.tiles import finishing_layout

TRAINER_DEFAULTS = {
    "max_epochs": 1,
    "devices": 1,
    # Checkpoints come from the job's own JobCheckpoint callback (key "checkpoint").
    "enable_checkpointing": True,
    "log_every_n_steps": 10,
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        # name None: the CLI names the run after the input image.
        "init_args": {"save_dir": "logs", "name": None, "default_hp_metric": False},
    },
}


class DeblurCLI(LightningCLI):
    """LightningCLI with the deblurring job's callbacks and input checks."""

    def __init__(self, args=None, run: bool = True) -> None:
        super().__init__(
            DeblurJob,
            BlurredImage,
            args=args,
            run=run,
            seed_everything_default=0,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            # The job builds its own optimizer (two parameter groups) and schedules.
            auto_configure_optimizers=False,
            parser_kwargs={"fit": {"description": "Deblur one image (blind deconvolution with deep priors)."}},
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(LossSchedule, "schedule")
        parser.add_lightning_class_args(LearningRateSchedule, "lr_schedule")
        parser.add_lightning_class_args(ImageLogging, "image_logging")
        parser.add_lightning_class_args(JobProgressBar, "progress_bar")
        # Before the result writer: metrics.json, written last, marks a complete run folder.
        parser.add_lightning_class_args(QualityCurve, "curve")
        parser.add_lightning_class_args(ResultWriter, "outputs")
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_lightning_class_args(JobCheckpoint, "checkpoint")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # Check the inputs before anything else happens (seeding, logging, folders).
        subcommand = self.config.get("subcommand")
        check_inputs(self.config[subcommand] if subcommand else self.config)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        name_run_after_image(config)
        resume_in_the_checkpoints_run_folder(config)
        if config.trainer.get("precision") is None:
            config.trainer.precision = default_precision(
                config.trainer.get("accelerator"), config.model.image_net.channels
            )
        if config.trainer.get("enable_progress_bar") is False:
            # Our bar is always among the callbacks; Lightning refuses that combination,
            # so "no progress bar" becomes a bar that never draws.
            config.trainer.enable_progress_bar = None
            config.progress_bar.refresh_rate = 0


def check_inputs(config) -> None:
    """Read the input files and check the sizes before anything is created on disk."""
    data = config.data
    observation = load_observation(data.image, data.kernel_size, data.sharp, data.get("kernel"))
    model = config.model
    if model.get("kernel_mode") == "fixed" and observation.kernel is None:
        raise InputError("non-blind mode (model.kernel_mode: fixed) needs the kernel: pass --data.kernel k.npy")
    image_spec = ImageNetSpec(**vars(model.image_net))
    blind = model.get("kernel_mode") != "fixed"
    crop = choose_crop(observation.y, KernelCropSpec(**vars(model.kernel_crop))) if blind else None
    checked_plan(
        observation.size if crop is None else crop.size,
        observation.kernel_size,
        image_spec,
        ScalesSpec(**vars(model.scales)),
        model.iterations,
        *blind_region_words(crop),
    )
    if model.finish.tile_size is not None:
        boxes, _ = finishing_layout(observation.size, observation.kernel_size, model.finish.tile_size, model.finish.overlap)
        check_tile_size(boxes[0].size, observation.kernel_size, image_spec)


def name_run_after_image(config) -> None:
    """Give a TensorBoard logger without a name the input image's file stem."""
    logger = config.trainer.get("logger")
    if isinstance(logger, list) or not hasattr(logger, "init_args"):
        return
    if "TensorBoardLogger" in str(logger.class_path) and logger.init_args.get("name") is None:
        image = str(config.data.image)
        logger.init_args.name = Path(image.split(":", 1)[-1] if image.startswith("example:") else image).stem


JOB_FAILED = 3
"""Exit code of a job stopped by the divergence guard (its last good estimate is kept)."""

COMMANDS = {
    "synth": "lightning_deblur.synth",
    "batch": "lightning_deblur.batch",
    "evaluate": "lightning_deblur.evaluate",
    "figures": "lightning_deblur.figures",
}
"""Subcommands of our own, beside LightningCLI's ``fit``: name -> module with ``command(argv)``.

Imported only when called, so ``fit`` does not pay for them (matplotlib, for one)."""


def resume_in_the_checkpoints_run_folder(config) -> None:
    """When resuming from ``<run>/checkpoints/*.ckpt``, log and write results into ``<run>``."""
    checkpoint = config.get("ckpt_path")
    if not checkpoint:
        return
    if not Path(checkpoint).is_file():
        raise InputError(f"checkpoint '{checkpoint}' not found; pass a run's checkpoints/last.ckpt to --ckpt_path")
    run = run_folder_of_checkpoint(checkpoint)
    logger = config.trainer.get("logger")
    if run is None or not hasattr(logger, "init_args") or "TensorBoardLogger" not in str(logger.class_path):
        return
    logger.init_args.save_dir = str(run.parent.parent)
    logger.init_args.name = run.parent.name
    logger.init_args.version = run.name


def main(args: list[str] | None = None) -> None:
    """Entry point of ``python -m lightning_deblur``; ``args`` lets tests run it in-process."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv and argv[0] in COMMANDS:
            importlib.import_module(COMMANDS[argv[0]]).command(argv[1:])
        else:
            # From the command line LightningCLI reads sys.argv itself (given both, it warns).
            cli = DeblurCLI(args=None if args is None else argv)
            failure = getattr(cli.model, "failure", None)
            if failure:
                print(f"error: the job failed: {failure}", file=sys.stderr)
                raise SystemExit(JOB_FAILED)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
