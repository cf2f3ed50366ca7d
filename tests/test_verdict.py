"""The no-reference verdict: the no-blur solution and a kernel filling its support are
told apart from a run that found a blur."""

from __future__ import annotations

import pytest
import torch
from conftest import blur, gaussian_kernel, read_metrics, run_fit, synthetic_sharp

from lightning_deblur.core.verdict import Verdict, gradient_sparsity, judge

pytestmark = pytest.mark.usefixtures("one_thread")


def case(kernel_size: int = 9, sigma: float = 1.5):
    kernel = torch.from_numpy(gaussian_kernel(kernel_size, sigma))
    support = synthetic_sharp(60 + kernel_size - 1, 60 + kernel_size - 1)
    sharp = torch.from_numpy(support)[kernel_size // 2 : -(kernel_size // 2), kernel_size // 2 : -(kernel_size // 2)]
    blurred = torch.from_numpy(blur(support, kernel.numpy()))
    return sharp, blurred, kernel


def test_a_found_blur_is_ok():
    sharp, blurred, kernel = case()
    verdict = judge(blurred, sharp, kernel)
    assert verdict.label == "ok" and verdict.sharpness_gain > 2


def test_the_no_blur_solution_is_recognised():
    _, blurred, _ = case()
    delta = torch.zeros(9, 9)
    delta[4, 4] = 1
    verdict = judge(blurred, blurred, delta)
    assert verdict.label == "no-blur" and verdict.failed
    assert verdict.kernel_peak == 1 and verdict.sharpness_gain == pytest.approx(1)


def test_a_kernel_filling_its_support_is_recognised():
    sharp, blurred, _ = case()
    uniform = torch.full((9, 9), 1 / 81)
    verdict = judge(blurred, sharp, uniform)
    assert verdict.label == "kernel-at-border" and verdict.kernel_border == 1


def test_a_blind_job_writes_its_verdict(blurred_case, tmp_path, capsys):
    run = run_fit(tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5", "--outputs.verbose", "true")
    metrics = read_metrics(run)
    assert metrics["verdict"] in ("ok", "no-blur", "kernel-at-border")
    assert set(metrics["verdict_signals"]) == {"kernel_peak", "sharpness_gain", "kernel_border", "gradient_sparsity"}
    assert f"verdict {metrics['verdict']}" in capsys.readouterr().out


def test_gradient_sparsity_ranks_the_sharp_image_below_its_blurred_and_ringing_versions():
    sharp, blurred, kernel = case(kernel_size=9, sigma=2.0)
    # Ringing: the sharp image plus a faint oscillation of an 8-pixel period, as
    # over-sharpening leaves (a finer one the 3-pixel box average would remove).
    rows = torch.arange(sharp.shape[-2], dtype=sharp.dtype)[:, None]
    ringing = (sharp + 0.05 * torch.sin(rows * 0.8)).clamp(0, 1)
    assert gradient_sparsity(sharp) < 0.9 * gradient_sparsity(ringing)
    assert gradient_sparsity(sharp) < 0.9 * gradient_sparsity(blurred)
    assert gradient_sparsity(0.5 * sharp) == pytest.approx(gradient_sparsity(sharp))  # scale-free
    verdict = judge(blurred, sharp, kernel)
    assert verdict.gradient_sparsity == pytest.approx(gradient_sparsity(sharp) / gradient_sparsity(blurred))
    assert verdict.gradient_sparsity < 1 and judge(blurred, blurred, kernel).gradient_sparsity == pytest.approx(1)


def test_a_record_made_before_the_sparsity_signal_still_reads():
    old = {"kernel_peak": 0.2, "sharpness_gain": 4.0, "kernel_border": 0.1}  # metrics.json of an older run
    assert "gradient sparsity ×nan" in Verdict("ok", **old).sentence()
