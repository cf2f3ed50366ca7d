"""The default precision: float32 for every job, bf16-mixed only when asked for."""

from __future__ import annotations

import pytest
from conftest import read_metrics, run_fit

from lightning_deblur.core.precision import activation_bytes


@pytest.mark.slow
def test_a_job_without_a_precision_runs_in_float32(blurred_case, tmp_path):
    # 64 channels: the width from which bf16-mixed was the default on CPUs with native bf16.
    run = run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
        "--model.image_net.channels", "64",
    )  # fmt: skip
    assert read_metrics(run)["precision"] == "32-true"
    assert "precision: 32-true" in (run / "config.yaml").read_text()  # a resume repeats it


def test_an_explicit_precision_wins(blurred_case, tmp_path):
    run = run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
        "--model.image_net.channels", "8", "--trainer.precision", "bf16-mixed",
    )  # fmt: skip
    assert read_metrics(run)["precision"] == "bf16-mixed"


def test_memory_estimates_count_two_bytes_per_value_under_16_bit_autocast():
    assert activation_bytes("bf16-mixed") == activation_bytes("16-mixed") == 2
    assert activation_bytes("32-true") == activation_bytes(None) == 4
