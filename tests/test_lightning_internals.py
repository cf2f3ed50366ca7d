"""Each use of Lightning's private API (lightning_deblur/job/lightning_internals.py) against
the installed Lightning: an upgrade that moves one fails here, by name."""

from __future__ import annotations

import logging
import warnings

import pytest
from conftest import run_fit
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_deblur.commands.fit import DeblurCLI, main
from lightning_deblur.job import lightning_internals as internals


def test_the_step_limit_is_the_trainers_max_steps():
    trainer = Trainer(max_steps=7, logger=False, enable_checkpointing=False)
    assert internals.step_limit(trainer) == 7 == trainer.max_steps
    internals.set_step_limit(trainer, 3)
    assert trainer.max_steps == 3 and internals.step_limit(trainer) == 3


def test_a_module_knows_whether_a_trainer_holds_it():
    module = LightningModule()
    assert internals.attached_trainer(module) is None
    trainer = Trainer(logger=False, enable_checkpointing=False)
    module.trainer = trainer
    assert internals.attached_trainer(module) is trainer


def test_a_recorded_sigterm_is_taken_over():
    trainer = Trainer(logger=False, enable_checkpointing=False)
    trainer._signal_connector.received_sigterm = True  # as Lightning's own handler records it
    assert trainer.received_sigterm
    internals.take_over_sigterm(trainer)
    assert not trainer.received_sigterm


def test_the_training_bar_is_none_until_made_then_the_tqdm_bar():
    bar = TQDMProgressBar()
    assert internals.train_bar(bar) is None
    made = bar.init_train_tqdm()
    bar.train_progress_bar = made
    assert internals.train_bar(bar) is made


def test_the_command_line_lists_fit_and_our_commands(capsys):
    assert issubclass(DeblurCLI, internals.LightningCLIWithCommands)
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for name in ("fit", "batch", "synth", "evaluate", "figures"):
        assert f"\n    {name} " in listed
    assert "validate" not in listed and "predict" not in listed


def test_a_job_leaves_out_lightnings_notices_that_ask_nothing_of_its_user(blurred_case, tmp_path, caplog):
    """The LitLogger advertisement and torch's LeafSpec deprecation (about Lightning's own
    code) would be in every job's stderr; Lightning's other lines still come through, and
    the filters end with the job."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        run_fit(tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5")
        after_the_job = Trainer(logger=TensorBoardLogger(tmp_path / "bare"), enable_progress_bar=False)
    logged = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("GPU available") for line in logged)
    assert sum("litlogger" in line for line in logged) == 1  # only the bare Trainer's, after the job
    assert not any("LeafSpec" in str(warning.message) for warning in caught)
    assert after_the_job.loggers
