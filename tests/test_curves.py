"""curve.csv: loss terms and quality every N steps, and the two forms of the kernel ℓ2 term."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF, read_metrics, run_fit

from lightning_deblur.core.centring import CentredEstimate
from lightning_deblur.core.curve_table import CURVE_COLUMNS, read_curve
from lightning_deblur.core.losses import kernel_l2

pytestmark = pytest.mark.usefixtures("one_thread")


def test_kernel_l2_sum_is_the_squared_norm_and_mean_divides_by_the_size():
    k = torch.rand(5, 7)
    k = k / k.sum()
    assert torch.isclose(kernel_l2(k, "sum"), (k**2).sum())
    assert torch.isclose(kernel_l2(k, "mean") * 35, kernel_l2(k, "sum"))
    delta = torch.zeros(5, 7)
    delta[2, 3] = 1
    assert kernel_l2(delta, "sum") == 1  # the no-blur kernel costs most


def improved_run(tmp_path, case, *extra):
    return run_fit(
        tmp_path, "--data.image", str(case["image"]), "--data.sharp", str(case["sharp"]), "--data.kernel_size", "5",
        "--curve.every_n_steps", "5", *extra, config=CONF / "tiny_improved.yaml",
    )  # fmt: skip


@pytest.mark.slow
def test_the_curve_has_a_row_every_n_steps_and_at_every_scale_end(blurred_case, tmp_path):
    run = improved_run(tmp_path, blurred_case)
    rows = read_curve(run / "curve.csv")
    assert list(rows[0]) == list(CURVE_COLUMNS)
    # Scales of 8, 8 and 20 steps end at 8, 16 and 36.
    assert [int(r["step"]) for r in rows] == [5, 8, 10, 15, 16, 20, 25, 30, 35, 36]
    assert [int(r["scale"]) for r in rows] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    finest = [r for r in rows if r["scale"] == 2]
    # The finest scale switches MSE to 1 - SSIM after 10 of its steps (tiny_improved.yaml).
    assert all(r["mse"] is not None and r["ssim"] is None for r in finest if r["step_in_scale"] < 10)
    assert all(r["mse"] is None and r["ssim"] is not None for r in finest if r["step_in_scale"] > 10)
    assert all(0 < r["kernel_peak"] <= 1 for r in rows)
    # The last row is the final estimate: the same PSNR as metrics.json.
    assert rows[-1]["psnr"] == pytest.approx(read_metrics(run)["psnr"], abs=1e-3)


@pytest.mark.slow
def test_the_curve_scores_the_estimate_as_centring_will_register_it(blurred_case, tmp_path, monkeypatch):
    # A centring that moves the image 2 px (real ones move it by the kernel centroid's
    # offset): the results are written moved, and so must the last row be scored, or the
    # curve ends on a figure metrics.json does not have.
    def move_two_pixels(x, k):
        return CentredEstimate(torch.roll(x, 2, dims=-1), k, (0, 2), 0.0)

    monkeypatch.setattr("lightning_deblur.job.stages.centre_kernel", move_two_pixels)
    run = improved_run(tmp_path, blurred_case)
    metrics = read_metrics(run)
    assert metrics["kernel_shift"] == [0, 2]
    last = read_curve(run / "curve.csv")[-1]
    assert last["psnr"] == pytest.approx(metrics["psnr"], abs=1e-3)


@pytest.mark.slow
def test_the_kernel_l2_form_reaches_the_loss(blurred_case, tmp_path):
    # A kernel of n values summing to 1 has sum(k²) ≥ 1/n ≥ mean(k²): the forms never overlap.
    n = 5 * 5
    for reduction in ("sum", "mean"):
        run = improved_run(tmp_path / reduction, blurred_case, "--model.kernel_l2_reduction", reduction)
        values = [r["kernel_l2"] for r in read_curve(run / "curve.csv") if r["kernel_l2"] is not None]
        assert values
        assert all(v >= 1 / n for v in values) if reduction == "sum" else all(v <= 1 / n for v in values)


@pytest.mark.slow
def test_every_rows_aligned_psnr_reaches_tensorboard_at_its_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # The bundled 96×96 example is large enough for Levin's aligned comparison (46 px).
    run = run_fit(
        tmp_path, "--data.image", "example:kodim05_blurred.png", "--data.sharp", "example:kodim05_sharp.png",
        "--data.kernel_size", "5", "--curve.every_n_steps", "10", config=CONF / "tiny_improved.yaml",
    )  # fmt: skip
    rows = [r for r in read_curve(run / "curve.csv") if r["aligned_psnr"] is not None]
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("aligned_psnr")]
    assert len(rows) >= 4 and [step for step, _ in logged] == [r["step"] for r in rows]
    assert [value for _, value in logged] == pytest.approx([r["aligned_psnr"] for r in rows], abs=1e-4)
