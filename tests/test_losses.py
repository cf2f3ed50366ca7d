import math

import numpy as np
import pytest
import torch

from lightning_deblur.core.losses import LossInputs, kernel_l2, ssim, total_variation, weighted_loss


def ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The specified SSIM, written directly: 2-D 11×11 Gaussian (σ 1.5), zero padding, float64."""
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def filt(img):
        padded = np.pad(img, 5)
        out = np.zeros_like(img)
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                out[i, j] = (padded[i : i + 11, j : j + 11] * window).sum()
        return out

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def test_ssim_equals_a_direct_float64_implementation():
    rng = np.random.default_rng(1)
    a = rng.random((37, 31))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ours = ssim(torch.from_numpy(a)[None, None].float(), torch.from_numpy(b)[None, None].float())
    assert ours.dtype == torch.float32
    assert ours.item() == pytest.approx(ssim_reference(a, b), abs=1e-5)


def test_ssim_of_identical_images_is_one():
    a = torch.rand(1, 1, 30, 30)
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-5)


def test_ssim_stays_float32_under_autocast():
    a, b = torch.rand(1, 1, 30, 30), torch.rand(1, 1, 30, 30)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ssim(a.bfloat16(), b.bfloat16())
    assert value.dtype == torch.float32


def test_total_variation_of_a_step_edge():
    x = torch.zeros(1, 1, 4, 5)
    x[..., 2:] = 1.0  # one vertical edge of height 1 across 4 rows
    assert total_variation(x).item() == pytest.approx(4 / (4 * 4))


def test_kernel_l2_prefers_spread_kernels():
    delta = torch.zeros(5, 5)
    delta[2, 2] = 1
    uniform = torch.full((5, 5), 1 / 25)
    assert kernel_l2(delta).item() == pytest.approx(1 / 25)
    assert kernel_l2(uniform).item() == pytest.approx(1 / 25**2)


def test_weighted_loss_skips_zero_weights_and_sums_the_rest():
    y = torch.rand(1, 1, 20, 20)
    y_hat = y + 0.1
    k = torch.full((3, 3), 1 / 9)
    inputs = LossInputs(y_hat=y_hat, y=y, x=torch.rand(1, 1, 22, 22), k=k)
    total, terms = weighted_loss(inputs, {"mse": 2.0, "ssim": 0.0, "kernel_l2": 0.5})
    assert set(terms) == {"mse", "kernel_l2"}
    assert total.item() == pytest.approx(2 * 0.01 + 0.5 / 81, rel=1e-4)
    assert not math.isnan(total.item())
