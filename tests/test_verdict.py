"""The no-reference verdict: the no-blur solution and a kernel filling its support are
told apart from a run that found a blur."""

from __future__ import annotations

import pytest
import torch
from conftest import blur, gaussian_kernel, read_metrics, run_fit, synthetic_sharp

from lightning_deblur.verdict import judge

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
    assert set(metrics["verdict_signals"]) == {"kernel_peak", "sharpness_gain", "kernel_border"}
    assert f"verdict {metrics['verdict']}" in capsys.readouterr().out
