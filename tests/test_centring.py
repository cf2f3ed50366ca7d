"""Kernel centring: the blind estimate re-registered so the kernel's mass sits in the middle."""

from __future__ import annotations

import pytest
import torch

from lightning_deblur.centring import border_ratio, centre_kernel, kernel_centroid_offset, nearest_shift
from lightning_deblur.physics import blur_valid, crop_to_observation


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
