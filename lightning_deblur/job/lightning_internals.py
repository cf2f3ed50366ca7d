"""Every use of Lightning's private API, in one place (Lightning 2.4 to 2.6; pinned in
pyproject.toml). Each function says which attribute it reaches and why no public one
serves; tests/test_lightning_internals.py checks each against the installed Lightning,
so an upgrade that moves one fails there, by name, rather than somewhere in a job.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.cli import LightningCLI


def step_limit(trainer: Trainer) -> int:
    """The fit's ``max_steps`` (-1: none). ``Trainer.max_steps`` reads it too, but has no
    setter; this is the value :func:`set_step_limit` writes."""
    return trainer.fit_loop.epoch_loop.max_steps


def set_step_limit(trainer: Trainer, steps: int) -> None:
    """Stop the fit after ``steps`` steps. A job's step count is known only once its input
    is planned, and grows when it restarts, after the Trainer was built with its own."""
    trainer.fit_loop.epoch_loop.max_steps = steps


def attached_trainer(module: LightningModule) -> Trainer | None:
    """The Trainer ``module`` is attached to, or ``None`` (``LightningModule.trainer``
    raises instead when there is none)."""
    return module._trainer


def take_over_sigterm(trainer: Trainer) -> None:
    """Tell Lightning that a SIGTERM it recorded is handled: its signal connector would
    otherwise raise ``SIGTERMException`` at the next step, skipping the results a job
    writes when it stops."""
    trainer._signal_connector.received_sigterm = False


def train_bar(bar: TQDMProgressBar):
    """The tqdm bar of the training loop, or ``None`` before it is made (the public
    ``train_progress_bar`` raises then)."""
    return bar._train_progress_bar


LITLOGGER_ADVERT = ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging")
"""``(logger, opening words)`` of the advertisement for Lightning's cloud logger that the
logger of its private ``rank_zero`` module prints in every job (Lightning 2.6)."""

LEAFSPEC_DEPRECATION = ("lightning.pytorch.utilities._pytree", "`isinstance(treespec, LeafSpec)` is deprecated")
"""``(module, opening words)`` of torch's FutureWarning (newer torch) about the ``LeafSpec``
Lightning's private ``_pytree`` module makes in every job."""


@contextlib.contextmanager
def lightning_notices_muted():
    """Leave :data:`LITLOGGER_ADVERT` and :data:`LEAFSPEC_DEPRECATION` out of a job's output
    while the context lasts. They ask nothing of the job's user, no setting turns either
    off, and a batch of thousands of jobs would carry them in every ``stderr.log``.
    Everything else Lightning and torch say still passes, and the filters go with the
    context, so a Python caller's own logging and warnings are as they were."""
    logger_name, advert = LITLOGGER_ADVERT
    warning_module, deprecation = LEAFSPEC_DEPRECATION
    logger = logging.getLogger(logger_name)

    def not_the_advert(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(advert)

    logger.addFilter(not_the_advert)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=re.escape(deprecation), module=re.escape(warning_module))
            yield
    finally:
        logger.removeFilter(not_the_advert)


class LightningCLIWithCommands(LightningCLI):
    """LightningCLI whose subcommands are ``fit`` only, beside commands of our own.

    Lightning adds one subcommand per Trainer method in ``_add_subcommands``, with help
    taken from the Trainer's docstrings; there is no public hook for other commands.
    Subclasses give :meth:`fit_help` and :meth:`other_commands`.
    """

    def fit_help(self) -> str:
        raise NotImplementedError

    def other_commands(self) -> dict[str, str]:
        """Name -> one-line help of each command listed beside ``fit``."""
        raise NotImplementedError

    def _add_subcommands(self, parser, **kwargs) -> None:
        from jsonargparse import ArgumentParser

        self._subcommand_parsers = {}
        subcommands = parser.add_subcommands(title="commands", description=None, metavar="COMMAND", help=None)
        fit = self._prepare_subcommand_parser(self.trainer_class, "fit", **kwargs.get("fit", {}))
        self._subcommand_parsers["fit"] = fit
        subcommands.add_subcommand("fit", fit, help=self.fit_help())
        for name, summary in self.other_commands().items():
            # The other commands parse their own options; these parsers only list them in --help.
            subcommands.add_subcommand(name, ArgumentParser(description=summary, add_help=False), help=summary)
