"""Progress of a job: a tqdm bar on a terminal, plain bounded log lines anywhere else."""

from __future__ import annotations

import sys

import pytest
from conftest import run_fit

from lightning_deblur.job.progress import LINES_PER_JOB, logs_step

pytestmark = pytest.mark.usefixtures("one_thread")


def fit_printing(capsys, blurred_case, tmp_path, *extra: str) -> str:
    """A 100-step grey job with a sharp reference and the progress shown; its stdout."""
    capsys.readouterr()
    run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.sharp", str(blurred_case["sharp"]),
        "--data.kernel_size", "5", "--model.iterations", "100", "--trainer.enable_progress_bar", "true", *extra,
    )  # fmt: skip
    return capsys.readouterr().out


@pytest.mark.slow
def test_off_a_terminal_a_job_prints_a_bounded_number_of_plain_lines(capsys, blurred_case, tmp_path):
    out = fit_printing(capsys, blurred_case, tmp_path)  # captured: stdout is no terminal
    assert "\r" not in out  # no bar redrawn in place
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(lines) == LINES_PER_JOB  # every 2 steps of 100
    assert lines[-1].startswith("step 100/100 (100%) | deblurring | loss ")
    assert all(" | PSNR " in line and " dB | elapsed 0:" in line and " | ETA " in line for line in lines)
    assert max(map(len, lines)) < 120


@pytest.mark.slow
def test_the_interval_can_be_set_and_no_bar_means_no_lines(capsys, blurred_case, tmp_path):
    out = fit_printing(capsys, blurred_case, tmp_path / "a", "--progress_bar.log_every_n_steps", "30")
    steps = [line.split()[1] for line in out.splitlines() if line.startswith("step ")]
    assert steps == ["30/100", "60/100", "90/100", "100/100"]  # the last step always
    quiet = fit_printing(capsys, blurred_case, tmp_path / "b", "--trainer.enable_progress_bar", "false")
    assert not [line for line in quiet.splitlines() if line.startswith("step ")]


def test_a_long_job_logs_a_few_kilobytes():
    # 6000 steps (the improved method's 5000 plus its coarse scales): 50 lines of < 120 bytes.
    assert sum(logs_step(step, 6000) for step in range(1, 6001)) == LINES_PER_JOB
    assert sum(logs_step(step, 6001) for step in range(1, 6002)) == LINES_PER_JOB + 1  # and the last
    assert sum(logs_step(step, 30) for step in range(1, 31)) == 30


@pytest.mark.slow
def test_on_a_terminal_the_bar_is_kept(capsys, blurred_case, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    out = fit_printing(capsys, blurred_case, tmp_path)
    assert "\r" in out and "deblurring" in out
    assert not [line for line in out.splitlines() if line.startswith("step ")]
