"""The top-level command line: its commands, --version, and what `fit --help` shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONF
from test_configs import CONFIGS as FIT_CONFIGS  # every shipped config but the pool files

from lightning_deblur import __version__
from lightning_deblur.commands.fit import main, plain_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def typed_as_module(monkeypatch):
    """sys.argv as `python -m lightning_deblur` leaves it, so the program name is the typed one."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "lightning_deblur" / "__main__.py")])


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``main(args)`` in-process; returns the exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.slow
def test_top_level_help_lists_our_commands_under_the_typed_program_name(tmp_path):
    # A real subprocess: the program name comes from how Python was started.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "lightning_deblur", "--help"], capture_output=True, text=True, cwd=tmp_path,
        timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m lightning_deblur ")
    assert "__main__.py" not in done.stdout and "Lightning Trainer command line tool" not in done.stdout
    commands = done.stdout.split("\ncommands:\n", 1)[1].splitlines()
    listed = [line.split()[0] for line in commands if line.startswith("    ") and not line.startswith("     ")]
    assert listed == ["fit", "batch", "synth", "evaluate", "figures"]
    # One line each, with a description.
    assert all(len(line.split()) > 3 for line in commands if line.split() and line.split()[0] in listed)
    for hidden in ("validate", "test", "predict"):
        assert hidden not in done.stdout


def test_version(capsys, typed_as_module):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out == f"python -m lightning_deblur {__version__}\n"


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_lightning_commands_other_than_fit_are_refused_in_one_line(capsys, typed_as_module, command):
    code, _, err = run_main(capsys, command)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "fit" in err and "--help" in err


def test_fit_help_lists_the_image_before_the_trainer_and_shows_choices(capsys, typed_as_module):
    code, out, _ = run_main(capsys, "fit", "--help")
    assert code == 0
    assert out.startswith("usage: python -m lightning_deblur fit --data.image IMAGE")
    assert out.index("--data.image") < out.index("--model.") < out.index("--trainer.")
    for choices in (
        "--model.colour {full,luminance}",
        "--model.memory_format {auto,channels_last,contiguous}",
        "--model.kernel_mode {blind,fixed}",
        "--model.refit.initial_kernel {gaussian,none}",
        "--model.image_net.upsample_mode {bilinear,nearest}",
    ):
        assert choices in out
    assert "--trainer.accelerator" in out and "--trainer.precision" in out
    # Options a job has no use for still parse but are not offered.
    assert "--trainer.max_epochs" not in out and "--trainer.val_check_interval" not in out
    assert "``" not in out and ":class:" not in out and ":attr:" not in out


def test_rest_markup_becomes_plain_text():
    assert plain_text("use ``x`` with :class:`~lightning.pytorch.Trainer`") == "use x with Trainer"
    assert plain_text(":ref:`the guide <guide-label>` and :func:`f`") == "the guide and f"
    assert plain_text("None turns it off; NoneType stays") == "null turns it off; NoneType stays"


@pytest.mark.slow
@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_still_parses(capsys, config):
    code, out, _ = run_main(capsys, "fit", "--config", str(config), "--print_config")
    assert code == 0 and yaml.safe_load(out)["model"]["colour"] in ("full", "luminance")


def test_a_missing_image_is_named_as_its_option(capsys, typed_as_module):
    code, _, err = run_main(capsys, "fit", "--data.kernel_size", "5")
    assert code == 2 and err.strip().splitlines() == [
        "error: the following arguments are required: --data.image; see `python -m lightning_deblur fit --help`"
    ]


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--model.colour", "bogus", "--model.colour bogus is not one of full, luminance"),
        ("--model.memory_format", "fast", "is not one of auto, channels_last, contiguous"),
        ("--model.refit.initial_kernel", "box", "is not one of gaussian, none"),
        ("--model.iterations", "many", "model.iterations"),
        ("--no_such_option", "3", "--no_such_option"),
    ],
)
def test_a_bad_option_value_is_one_line_and_exit_code_2(capsys, typed_as_module, option, value, expected):
    code, _, err = run_main(capsys, "fit", "--config", str(CONF / "tiny.yaml"), "--data.image", "x.png",
                            "--data.kernel_size", "5", option, value)  # fmt: skip
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and expected in line and "fit --help" in line, line
