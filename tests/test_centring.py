"""Kernel centring: the blind estimate re-registered so the kernel's mass sits in the middle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CONF, blur, gaussian_kernel, read_metrics, run_fit, synthetic_sharp
from lightning.pytorch import Callback

from lightning_deblur.core.centring import border_ratio, centre_kernel, kernel_centroid_offset, nearest_shift
from lightning_deblur.core.imagefiles import read_image, write_image
from lightning_deblur.job.deblur_job import DeblurJob
from lightning_deblur.job.multiscale import ScaleTransition
from lightning_deblur.core.physics import blur_valid, crop_to_observation


def off_centre_kernel(size=(9, 11), centre=(2.6, 7.3), sigma=1.2) -> torch.Tensor:
    """A Gaussian blob whose centre of mass lies at ``centre`` (rows, columns) of its support."""
    rows = torch.arange(size[0], dtype=torch.float64)[:, None]
    cols = torch.arange(size[1], dtype=torch.float64)[None, :]
    k = torch.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))
    return k / k.sum()


def test_shifted_kernel_is_centred_and_the_blur_is_unchanged():
    torch.manual_seed(0)
    k = off_centre_kernel()
    k[-1], k[:, :2] = 0, 0  # nothing where the centring shift pushes mass out of the support
    k /= k.sum()
    x = torch.rand(2, 3, 40 + 8, 36 + 10, dtype=torch.float64)
    dy, dx = kernel_centroid_offset(k)
    assert (dy, dx) == pytest.approx((2.6 - 4, 7.3 - 5), abs=0.05)  # the blob is barely cut by the edge
    result = centre_kernel(x, k)
    assert result.shift == (1, -2)  # the kernel's mass moved 1 down and 2 left
    assert result.x.shape == x.shape and result.k.shape == k.shape
    residual = kernel_centroid_offset(result.k)
    assert max(abs(residual[0]), abs(residual[1])) <= 0.5
    assert result.k.sum().item() == pytest.approx(1.0) and (result.k >= 0).all()
    assert result.lost_mass < 1e-12
    torch.testing.assert_close(blur_valid(result.x, result.k), blur_valid(x, k), rtol=0, atol=2e-6)  # float32 blur
    # The result (central crop) is another crop of the support: its content moved up 1, right 2.
    crop = crop_to_observation(result.x, k.shape)
    torch.testing.assert_close(crop, x[..., 4 + 1 : 4 + 1 + 40, 5 - 2 : 5 - 2 + 36])


def test_a_centred_kernel_is_left_unchanged():
    k = off_centre_kernel(size=(7, 7), centre=(3.0, 3.0))
    x = torch.rand(1, 1, 30, 30)
    result = centre_kernel(x, k.float())
    assert result.shift == (0, 0) and result.lost_mass == 0.0
    assert result.x is x and torch.equal(result.k, k.float())


def test_half_pixel_offsets_stay_put_and_larger_ones_round_to_the_nearest_pixel():
    assert [nearest_shift(v) for v in (0.0, 0.5, -0.5, 0.51, -1.49, 1.5, -2.2)] == [0, 0, 0, 1, -1, 1, -2]


def test_mass_pushed_out_of_the_support_is_reported_and_the_kernel_renormalized():
    k = torch.zeros(5, 5, dtype=torch.float64)
    k[0, 2], k[4, 4], k[4, 3] = 0.2, 0.4, 0.4  # centroid 1.2 px below, 0.8 px right
    result = centre_kernel(torch.rand(1, 1, 20, 20, dtype=torch.float64), k)
    assert result.shift == (-1, -1)
    assert result.lost_mass == pytest.approx(0.2)  # the top row's mass left through the top
    assert result.k.sum().item() == pytest.approx(1.0)


def test_border_ratio_flags_kernels_reaching_their_edge():
    assert border_ratio(off_centre_kernel(size=(15, 15), centre=(7, 7), sigma=1.5)) < 0.01
    assert border_ratio(off_centre_kernel(size=(7, 7), centre=(3, 3), sigma=2.0)) > 0.01


# ---------------------------------------------------------------- in a job
class PlantOffCentreKernel(Callback):
    """At the last step of a blind scale (the finest by default), before the job's own
    callbacks act on it, replaces the kernel estimate by a 5×5 delta one row above and
    one column right of the centre, and keeps the image estimate it ends with."""

    def __init__(self, scale_index: int | None = None):
        self.scale_index = scale_index
        self.planted = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        scale = pl_module.current_scale
        index = pl_module.plan.blind_scale_count - 1 if self.scale_index is None else self.scale_index
        if scale.finishing or scale.index != index or trainer.global_step != scale.end_step:
            return
        k = torch.zeros(5, 5)
        k[1, 3] = 1.0
        pl_module.latest_k = k
        self.planted = pl_module.latest_x.clone()
        pl_module.latest_x = self.planted


def run_with_planted_kernel(tmp_path, monkeypatch, *options, colour=True):
    """A tiny improved job on a 37×33 picture (RGB: with its colour stage) with the
    planted kernel; returns the run folder, its metrics and the planted image estimate."""
    image = tmp_path / "blurred.png"
    planes = [blur(synthetic_sharp(41, 37, seed=seed), gaussian_kernel(5, 1.0)) for seed in (1, 2, 3)]
    write_image(image, np.stack(planes, axis=-1) if colour else planes[0])
    plant = PlantOffCentreKernel()
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [plant, *original(self)])
    run = run_fit(
        tmp_path, "--data.image", str(image), "--data.kernel_size", "5", *options, config=CONF / "tiny_improved.yaml"
    )
    return run, read_metrics(run), plant.planted


@pytest.mark.slow
def test_the_finishing_stage_gets_the_centred_kernel_and_metrics_record_the_shift(tmp_path, monkeypatch, capsys):
    run, metrics, _ = run_with_planted_kernel(tmp_path, monkeypatch)
    assert metrics["tiles"] == 1  # the colour stage: a finishing stage that uses the kernel
    assert metrics["kernel_centroid_offset"] == [-1.0, 1.0]
    assert metrics["kernel_shift"] == [1, -1] and metrics["kernel_mass_lost"] == 0.0
    expected = np.zeros((5, 5), dtype=np.float32)
    expected[2, 2] = 1.0
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), expected)
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow
def test_without_finishing_the_result_is_the_shifted_crop_of_the_estimate(tmp_path, monkeypatch):
    run, metrics, planted = run_with_planted_kernel(tmp_path, monkeypatch, colour=False)
    assert "tiles" not in metrics and metrics["kernel_shift"] == [1, -1]
    # The kernel's mass moved down 1 and left 1 to the centre, so the image's content
    # moved up 1 and right 1: the result is the planted support's crop at (2+1, 2-1).
    expected = planted[0, 0, 3 : 3 + 37, 1 : 1 + 33].double().numpy()
    np.testing.assert_allclose(read_image(run / "deblurred.png").pixels, expected, atol=0.5 / 255 + 1e-6)


@pytest.mark.slow
def test_centring_can_be_turned_off(tmp_path, monkeypatch):
    run, metrics, _ = run_with_planted_kernel(tmp_path, monkeypatch, "--model.centre_kernel", "false")
    assert metrics["kernel_centroid_offset"] == [-1.0, 1.0] and metrics["kernel_shift"] == [0, 0]
    assert np.load(run / "kernel.npy")[1, 3] == 1.0


@pytest.mark.slow
def test_a_kernel_reaching_its_border_is_flagged(blurred_case, tmp_path, capsys):
    # 20 steps of the tiny original method leave a near-uniform 5×5 kernel.
    run = run_fit(tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5")
    metrics = read_metrics(run)
    assert metrics["verdict"] == "kernel-at-border" and metrics["verdict_signals"]["kernel_border"] > 0.75



@pytest.mark.slow
@pytest.mark.parametrize("between_scales", [False, True])
def test_centring_between_scales_centres_the_refit_targets(blurred_case, tmp_path, monkeypatch, between_scales):
    targets = []
    original = ScaleTransition._fit_kernel
    monkeypatch.setattr(
        ScaleTransition, "_fit_kernel", staticmethod(lambda job, k: targets.append(k) or original(job, k))
    )
    plant = PlantOffCentreKernel(scale_index=0)
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [plant, ScaleTransition()])
    run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
        "--model.centre_kernel_between_scales", str(between_scales).lower(), config=CONF / "tiny_improved.yaml",
    )  # fmt: skip
    # Targets: the initial Gaussian, then the planted kernel carried to the second scale:
    # centred, or as planted one pixel up and right, magnified with the input (19×16 px to
    # 26×22: 1.37×; bilinear sampling of the delta puts its centroid at 1.42-1.43 px).
    offset = kernel_centroid_offset(targets[1])
    if between_scales:
        assert offset == pytest.approx((0, 0), abs=1e-6)
    else:
        assert -1.5 < offset[0] < -1.3 and 1.3 < offset[1] < 1.5
