"""Each use of Lightning's private API (lightning_deblur/job/lightning_internals.py) against
the installed Lightning: an upgrade that moves one fails here, by name."""

from __future__ import annotations

import pytest
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

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
