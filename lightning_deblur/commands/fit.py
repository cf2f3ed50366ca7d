"""The command line: ``python -m lightning_deblur fit --config configs/….yaml …``.

A LightningCLI over :class:`DeblurJob` and :class:`BlurredImage`, with the callbacks
always present and configurable under their own keys (``image_logging``,
``progress_bar``, ``outputs``, ``divergence``, ``lr_monitor``, ``timer``, …), and the
job's loss and learning-rate schedules under ``schedule`` and ``lr_schedule``. The inputs are decoded and the job
planned once, at parse time. User mistakes are reported as one line on stderr with exit
code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import re
import sys
from pathlib import Path

import torch
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import check_writable_folder
from lightning_deblur.core.planning import JobPlan, plan_job_from_options
from lightning_deblur.core.precision import DEFAULT_PRECISION, activation_bytes
from lightning_deblur.core.schedule import LearningRateSchedule, LossSchedule
from lightning_deblur.core.version import __version__
from lightning_deblur.job.checkpointing import JobCheckpoint, JobTimer, load_checkpoint_file, run_folder_of_checkpoint
from lightning_deblur.job.curves import QualityCurve
from lightning_deblur.job.data import BlurredImage, Observation, load_observation
from lightning_deblur.job.deblur_job import DeblurJob
from lightning_deblur.job.divergence import DivergenceGuard
from lightning_deblur.job.image_logging import ImageLogging
from lightning_deblur.job.lightning_internals import LightningCLIWithCommands, lightning_notices_muted
from lightning_deblur.job.outputs import ResultWriter
from lightning_deblur.job.progress import JobProgressBar

DEFAULT_SAVE_DIR = "logs"
"""Where run folders go (``<save_dir>/<image name>/version_<n>``) unless
``--trainer.default_root_dir`` or ``--trainer.logger.init_args.save_dir`` says otherwise."""

TRAINER_DEFAULTS = {
    # No epoch limit: the job's plan sets max_steps (JobStages.limit_steps_to_plan).
    "max_epochs": -1,
    "devices": 1,
    "precision": DEFAULT_PRECISION,
    # Checkpoints come from the job's own JobCheckpoint callback (key "checkpoint").
    "enable_checkpointing": True,
    "log_every_n_steps": 10,
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        # name None: the CLI names the run after the input image. The save_dir default
        # gives way to --trainer.default_root_dir when that is given.
        "init_args": {"save_dir": DEFAULT_SAVE_DIR, "name": None, "default_hp_metric": False},
    },
}


JOBLESS_TRAINER_OPTIONS = (
    "strategy", "num_nodes", "fast_dev_run", "max_epochs", "min_epochs", "min_steps",
    "limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches", "overfit_batches",
    "val_check_interval", "check_val_every_n_epoch", "num_sanity_val_steps", "enable_checkpointing",
    "accumulate_grad_batches", "inference_mode", "use_distributed_sampler", "barebones", "plugins",
    "sync_batchnorm", "reload_dataloaders_every_n_epochs", "enable_autolog_hparams", "model_registry",
)  # fmt: skip
"""Trainer options left out of ``fit --help``: a job runs the steps its plan gives (or
fewer, with ``--trainer.max_steps``) on one image, on one device, without validation, and
checkpoints itself; these would only break that. They still parse, so configs that set
them keep working."""

_REST_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?(?:([^`<]*?)\s*<[^>]*>|([^`]*))`")


def plain_text(text: str) -> str:
    """Docstring reST as a terminal shows it: ``x`` -> x, :class:`~a.B` -> B, :ref:`t <x>` -> t,
    and Python's None as the command line spells it, null."""

    def role(match: re.Match) -> str:
        label, target = match.group(1), match.group(2)
        return label if label is not None else target.rsplit(".", 1)[-1]

    return re.sub(r"\bNone\b", "null", _REST_ROLE.sub(role, text).replace("``", ""))


class CommandLineHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's formatter, with the reST markup of docstrings (ours and
    Lightning's) turned into plain text."""

    def add_argument(self, action) -> None:
        if not getattr(action, "hidden_from_help", False):
            super().add_argument(action)

    def _expand_help(self, action) -> str:
        return plain_text(super()._expand_help(action))

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def start_section(self, heading) -> None:
        # Group headings are the first lines of class docstrings ("…::" opens a reST block).
        super().start_section(heading and plain_text(heading).rstrip(":"))


def hide_options(parser, keys) -> None:
    """Leave the options ``keys`` (e.g. ``trainer.max_epochs``) out of ``--help``.

    They still parse and still go into ``config.yaml``: argparse's ``help=SUPPRESS``
    would also drop them from jsonargparse's dumps, so the mark is read by
    :class:`CommandLineHelpFormatter` alone."""
    for action in parser._actions:
        if action.dest in keys:
            action.hidden_from_help = True


class DeblurCLI(LightningCLIWithCommands):
    """LightningCLI with the deblurring job's callbacks and input checks."""

    def __init__(self, args=None, run: bool = True) -> None:
        with lightning_notices_muted():
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
                parser_kwargs={
                    "prog": program_name(),
                    "formatter_class": CommandLineHelpFormatter,
                    # Parse errors raise instead of printing usage; main() reports them in one line.
                    "exit_on_error": False,
                    "description": "Blind image deblurring with deep image priors. "
                    "`COMMAND --help` lists the options of a command.",
                    "fit": {
                        "description": "Deblur one image (blind deconvolution with deep priors). The image and "
                        "the method's options come first, the Trainer's last.",
                        "usage": f"{program_name()} fit --data.image IMAGE --data.kernel_size K [options]",
                    },
                },
            )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only ``fit``: a job has no held-out data, so validate/test/predict mean nothing.

        Maps the subcommand to the Trainer.fit arguments the CLI fills itself."""
        return {"fit": LightningCLI.subcommands()["fit"]}

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        # On the top-level parser only, so `fit --version` stays an unknown option.
        self.parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    def fit_help(self) -> str:
        return FIT_SUMMARY

    def other_commands(self) -> dict[str, str]:
        # They parse their own options (``main`` hands them their arguments before this
        # parser is built); here they are only listed by ``--help``.
        return {name: summary for name, (_, summary) in COMMANDS.items()}

    def add_core_arguments_to_parser(self, parser) -> None:
        # The image, then the method; the Trainer comes last (add_arguments_to_parser),
        # since most of its options are Lightning's plumbing rather than a job's settings.
        parser.add_lightning_class_args(self._datamodule_class, "data")
        parser.add_lightning_class_args(self._model_class, "model")

    def add_arguments_to_parser(self, parser) -> None:
        # The schedules are the job's hyperparameters, kept under keys of their own (the
        # configs' top-level `schedule` and `lr_schedule`), as in DeblurJob.from_config.
        parser.add_class_arguments(LossSchedule, "schedule")
        for key in ("weights", "coarse_weights", "linear"):
            parser.link_arguments(f"schedule.{key}", f"model.schedule.{key}", apply_on="parse")
        parser.add_class_arguments(LearningRateSchedule, "lr_schedule")
        for key in ("milestones", "gamma", "coarse_milestones"):
            parser.link_arguments(f"lr_schedule.{key}", f"model.lr_schedule.{key}", apply_on="parse")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        # The wall time of metrics.json (ResultWriter reads it), and the time budget of a fit.
        parser.add_lightning_class_args(JobTimer, "timer")
        parser.set_defaults({"timer.interval": "step"})  # a plain string: its enum default does not dump to YAML
        parser.add_lightning_class_args(ImageLogging, "image_logging")
        parser.add_lightning_class_args(JobProgressBar, "progress_bar")
        # Before the result writer: metrics.json, written last, marks a complete run folder.
        parser.add_lightning_class_args(QualityCurve, "curve")
        parser.add_lightning_class_args(ResultWriter, "outputs")
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_lightning_class_args(JobCheckpoint, "checkpoint")
        # As LightningCLI.add_core_arguments_to_parser adds it, only later in the help.
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{key}": value for key, value in self.trainer_defaults.items()})
        hide_options(parser, {f"trainer.{name}" for name in JOBLESS_TRAINER_OPTIONS})
        parser.groups["trainer"].title = (
            "Lightning Trainer (options a job has no use for are not listed; they are still accepted)"
        )

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        if config.get("ckpt_path"):
            # LightningCLI reads the checkpoint right after this (for its hyperparameters): a
            # missing or broken one is refused here, in one line naming it.
            load_checkpoint_file(config.ckpt_path, map_location="cpu")
        # Decode the inputs and plan the job now, once, before anything else happens
        # (seeding, the Trainer, folders): inputs the job cannot run on stop here, in one line.
        self.planned_device = planning_device(config.trainer.get("accelerator"))
        self.observation, self.plan = plan_from_config(config, self.planned_device)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        name_run_after_image(config)
        time_budget_on_the_timer(config)
        resume_in_the_checkpoints_run_folder(config)
        save_under_the_root_dir(config)
        if config.trainer.get("enable_progress_bar") is False:
            # Our bar is always among the callbacks; Lightning refuses that combination,
            # so "no progress bar" becomes a bar that never draws.
            config.trainer.enable_progress_bar = None
            config.progress_bar.refresh_rate = 0

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if not trainer.loggers:
            # --trainer.logger false: no learning rates to log (LearningRateMonitor would refuse to run).
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        return trainer

    def before_fit(self) -> None:
        """Hand the decoded inputs to the datamodule and the plan to the job (which stops
        the Trainer after the plan's last step, ``max_steps``, once the fit sets it up)."""
        # After every class is built (their own checks), before anything is written.
        check_writable_folder(*output_root(self.config[self.subcommand]))
        self.claim_run_folder()
        for callback in self.trainer.callbacks:
            if isinstance(callback, JobCheckpoint):
                callback.resuming = bool(self.config[self.subcommand].get("ckpt_path"))
        self.datamodule.observation = self.observation
        plan = self.plan
        if self.trainer.strategy.root_device != self.planned_device:
            # Only where the Trainer chose another device than the plan assumed (an
            # accelerator given as an object, say): the automatic tile size depends on it.
            plan = self.model.plan_on(self.observation, self.trainer)
        self.model.plan = plan

    def claim_run_folder(self) -> None:
        """Give a TensorBoard logger without a version its run folder now, made with an
        exclusive create (:func:`claim_version`), in place of the one Lightning would pick by
        listing the folder: two jobs starting at once never share one. The logger is built
        again from its options with that version; ``config.yaml`` keeps ``version: null``, so
        it repeats the run in a new folder."""
        logger, config = self.trainer.logger, self.config[self.subcommand]
        options = config.trainer.get("logger")
        if not isinstance(logger, TensorBoardLogger) or not hasattr(options, "init_args"):
            return
        if options.init_args.get("version") is not None:
            return
        version = claim_version(Path(logger.root_dir))
        self.trainer.logger = type(logger)(**{**options.init_args.as_dict(), "version": version})


def claim_version(root: Path) -> int:
    """The next free ``n`` of the run folders ``root/version_<n>``, its folder made by this
    call: ``mkdir`` without ``exist_ok`` fails when another process made it first, and the
    next number is tried."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.removeprefix("version_")) for p in root.glob("version_*") if p.name[8:].isdigit()]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (root / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1


def planning_device(accelerator) -> torch.device:
    """The device a one-device Trainer runs on for ``--trainer.accelerator``, known before
    the Trainer exists (the plan's automatic tile size fits its free memory)."""
    name = str(accelerator or "auto").lower()
    if name in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if name in ("auto", "gpu", "mps") and torch.backends.mps.is_available():
        return torch.device("mps", 0)
    return torch.device("cpu")


def plan_from_config(config, device: torch.device | None) -> tuple[Observation, JobPlan]:
    """Decode the job's inputs and plan it, on ``device``, from the parsed ``fit`` configuration.

    Raises:
        InputError: unreadable inputs, or inputs the job cannot run on (see
            :func:`~lightning_deblur.core.planning.plan_job`).
    """
    data = config.data
    observation = load_observation(data.image, data.kernel_size, data.sharp, data.get("kernel"), data.get("max_kernel_size"))
    plan = plan_job_from_options(observation, config.model, device, activation_bytes(config.trainer.precision))
    return observation, plan


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

JOB_STOPPED = 4
"""Exit code of a job told to stop before its plan's end (``--timer.duration``): its
estimate so far is written, its checkpoint resumes it, ``metrics.json`` says ``stopped``.
A job stopped by a signal exits with 128 + the signal's number instead (143 for SIGTERM,
130 for SIGINT), as a shell reports a process the signal ended; one stopped at
``--trainer.max_steps`` exits with 0, as any Lightning program does."""


def stopped_exit_code(job) -> int:
    """The exit code of a ``fit`` whose job stopped before its plan's end (see :data:`JOB_STOPPED`)."""
    if job.reached_step_limit:
        return 0
    return 128 + int(job.stop_signal) if job.stop_signal is not None else JOB_STOPPED

FIT_SUMMARY = "deblur one image: estimate the sharp image and the kernel"
"""The line ``fit`` gets in the top-level ``--help`` (Lightning's would describe Trainer.fit)."""

COMMANDS = {
    "batch": ("lightning_deblur.commands.batch", "deblur many images and seeds over devices, resumable"),
    "synth": ("lightning_deblur.commands.synth", "make a synthetic blurred dataset and its manifest"),
    "evaluate": ("lightning_deblur.commands.evaluate", "score results folders against a manifest (tables)"),
    "figures": ("lightning_deblur.commands.figures", "draw figures (PNG) of evaluated runs, fits and logs"),
}
"""Subcommands of our own, beside LightningCLI's ``fit``: name -> (module with
``command(argv)``, the line the top-level ``--help`` shows).

Imported only when called, so ``fit`` does not pay for them (matplotlib, for one)."""


def program_name() -> str:
    """The command as the user typed it: ``python -m lightning_deblur`` or the installed
    script's name (``lightning-deblur``)."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m lightning_deblur" if script in ("__main__.py", "-m", "") else script


def time_budget_on_the_timer(config) -> None:
    """``--trainer.max_time`` becomes ``--timer.duration``: Lightning ignores ``max_time``
    when a :class:`Timer` is among the callbacks, as the job's always is.

    Raises:
        InputError: both given, with different values.
    """
    max_time = config.trainer.get("max_time")
    if max_time is None:
        return
    duration = config.timer.get("duration")
    if duration is not None and duration != max_time:
        raise InputError(
            f"--trainer.max_time {max_time} and --timer.duration {duration} disagree; give one of them (the same limit)"
        )
    config.timer.duration, config.trainer.max_time = max_time, None


def output_root(config) -> tuple[str, str]:
    """The folder a ``fit`` writes its run folder into, and the option that sets it."""
    logger = config.trainer.get("logger")
    if hasattr(logger, "init_args") and logger.init_args.get("save_dir") is not None:
        return str(logger.init_args.save_dir), "--trainer.logger.init_args.save_dir"
    return str(config.trainer.get("default_root_dir") or "."), "--trainer.default_root_dir"


def save_under_the_root_dir(config) -> None:
    """With ``--trainer.default_root_dir D``, a TensorBoard logger left at the default
    save_dir writes its run folders under ``D``."""
    logger, root = config.trainer.get("logger"), config.trainer.get("default_root_dir")
    if root is None or isinstance(logger, list) or not hasattr(logger, "init_args"):
        return
    if logger.init_args.get("save_dir") == DEFAULT_SAVE_DIR:
        logger.init_args.save_dir = str(root)


def resume_in_the_checkpoints_run_folder(config) -> None:
    """When resuming from ``<run>/checkpoints/*.ckpt``, log and write results into ``<run>``."""
    checkpoint = config.get("ckpt_path")
    if not checkpoint:
        return
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
            importlib.import_module(COMMANDS[argv[0]][0]).command(argv[1:])
        else:
            # From the command line LightningCLI reads sys.argv itself (given both, it warns).
            cli = DeblurCLI(args=None if args is None else argv)
            failure = getattr(cli.model, "failure", None)
            if failure:
                print(f"error: the job failed: {failure}", file=sys.stderr)
                raise SystemExit(JOB_FAILED)
            if getattr(cli.model, "stopped_early", False):
                code = stopped_exit_code(cli.model)
                if code:
                    cause = "a signal" if cli.model.stop_signal is not None else "--timer.duration?"
                    print(
                        f"error: the job was told to stop after {cli.trainer.global_step} of "
                        f"{cli.model.plan.total_steps} steps ({cause}), before its plan's end; metrics.json says "
                        "how to resume it",
                        file=sys.stderr,
                    )
                    raise SystemExit(code)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Files are written atomically: the last checkpoint and results are still whole.
        print(f"error: {error}; free some space, then resume the job from its last checkpoint", file=sys.stderr)
        raise SystemExit(1) from None
    except argparse.ArgumentError as error:
        command = f"{program_name()} {argv[0]}" if argv and argv[0] == "fit" else program_name()
        print(f"error: {parse_error_line(str(error))}; see `{command} --help`", file=sys.stderr)
        raise SystemExit(2) from None


_LITERAL_ERROR = re.compile(r'Parser key "([^"]+)":\s*Expected a typing\.Literal\[(.*?)\]\. Got value: (.*)', re.S)


def parse_error_line(message: str) -> str:
    """jsonargparse's (often multi-line) parse error as one line; a value outside a
    ``Literal`` says which values are allowed."""
    message = " ".join(message.split()).rstrip(".")
    # Missing options are named by their key under the subcommand ("fit.data.image").
    message = re.sub(r"required: fit\.", "required: --", message)
    literal = _LITERAL_ERROR.fullmatch(message)
    if literal:
        key, choices, value = literal.groups()
        allowed = ", ".join(choice.strip(" '") for choice in choices.split(","))
        return f"--{key} {value} is not one of {allowed}"
    return message


def parse_fit_arguments(args: list[str]):
    """The configuration ``fit`` would run with for ``args`` (``["fit", …]``), parsed and
    type-checked but not acted on: no input file is read, nothing is created or run.

    For commands that start ``fit`` jobs (``batch``) and want to refuse bad options first.

    Returns:
        the ``fit`` namespace (``.as_dict()`` for plain dicts).

    Raises:
        argparse.ArgumentError: options that do not parse (one line: :func:`parse_error_line`).
    """

    class Parsed(Exception):
        def __init__(self, config):
            self.config = config

    class ParseOnly(DeblurCLI):
        # LightningCLI parses inside its constructor, then instantiates and runs; stopping
        # right after the parse also skips DeblurCLI's input checks, which read the files.
        def parse_arguments(self, parser, args) -> None:
            LightningCLI.parse_arguments(self, parser, args)
            raise Parsed(self.config)

    import warnings

    try:
        with warnings.catch_warnings():
            # The calling command's own arguments are in sys.argv; LightningCLI warns of both.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            ParseOnly(args=args)
    except Parsed as parsed:
        return parsed.config[parsed.config["subcommand"]]
    raise AssertionError("LightningCLI did not parse its arguments")  # pragma: no cover
