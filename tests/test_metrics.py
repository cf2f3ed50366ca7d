"""Shift-aligned (Levin et al. 2009) image and kernel figures of ``lightning_deblur.core.metrics``."""

import math

import numpy as np
import pytest
import torch

from lightning_deblur.core.losses import ssim
from lightning_deblur.core.metrics import psnr_per_image, ssim_map, ssim_per_image
from lightning_deblur.core.alignment import AlignedPair, align_to_reference, aligned_isnr, aligned_psnr, aligned_ssim, error_ratio, kernel_error

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_image(height: int, width: int, seed: int, channels: int = 1) -> np.ndarray:
    """A smooth but textured ``(C, H, W)`` float64 picture in about [0.2, 0.8]: blurred noise plus waves."""
    rng = np.random.default_rng(seed)
    noise = rng.random((channels, height + 4, width + 4))
    box = sum(noise[:, i : i + height, j : j + width] for i in range(5) for j in range(5)) / 25
    rows, cols = np.mgrid[0:height, 0:width]
    waves = 0.1 * np.sin(rows / 3.1 + seed) * np.cos(cols / 4.3)
    return np.clip(0.5 + 2.0 * (box - 0.5) + waves, 0.0, 1.0)


def bilinear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of a ``(C, H, W)`` image at the grid ``rows × cols``, written out in float64."""
    height, width = image.shape[-2:]
    y0 = np.floor(rows).astype(int)
    x0 = np.floor(cols).astype(int)
    fy = (rows - y0)[:, None]
    fx = (cols - x0)[None, :]
    y1 = np.minimum(y0 + 1, height - 1)
    x1 = np.minimum(x0 + 1, width - 1)
    return (
        (1 - fy) * (1 - fx) * image[:, y0][:, :, x0]
        + (1 - fy) * fx * image[:, y0][:, :, x1]
        + fy * (1 - fx) * image[:, y1][:, :, x0]
        + fy * fx * image[:, y1][:, :, x1]
    )


def brute_force_psnr(estimate: np.ndarray, reference: np.ndarray, border: int, max_shift: float, step: float):
    """Levin's comparison, directly: every shift of a ``(C, H, W)`` estimate, least SSE; ``(psnr, (dy, dx))``."""
    height, width = reference.shape[-2:]
    cropped = reference[:, border : height - border, border : width - border]
    count = int(math.floor(max_shift / step + 1e-9))
    shifts = [k * step for k in range(-count, count + 1)]
    # Candidates in order of preference (smallest shift first), as the implementation breaks ties.
    candidates = sorted(((dy, dx) for dy in shifts for dx in shifts), key=lambda s: (s[0] ** 2 + s[1] ** 2, s))
    best, best_shift = np.inf, None
    for dy, dx in candidates:
        rows = border + np.arange(cropped.shape[-2]) + dy
        cols = border + np.arange(cropped.shape[-1]) + dx
        sse = ((bilinear(estimate, rows, cols) - cropped) ** 2).sum()
        if sse < best:
            best, best_shift = sse, (dy, dx)
    return -10 * math.log10(max(best / cropped.size, 1e-20)), best_shift


def as_batch(*images: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).to(dtype)


def sampled_reference(estimate: np.ndarray, shift: tuple[float, float], border: int, seed: int) -> np.ndarray:
    """A reference whose cropped window is exactly the estimate sampled (bilinear) at ``shift``.

    Outside the window (which every comparison crops away) it is unrelated noise.
    """
    reference = np.random.default_rng(seed).random(estimate.shape)
    height, width = estimate.shape[-2:]
    rows = border + np.arange(height - 2 * border) + shift[0]
    cols = border + np.arange(width - 2 * border) + shift[1]
    reference[:, border : height - border, border : width - border] = bilinear(estimate, rows, cols)
    return reference


def test_integer_shift_is_found_exactly():
    reference = smooth_image(48, 52, seed=1)
    estimate = np.roll(reference, (3, -2), axis=(-2, -1))  # content moved 3 down, 2 left
    est, ref = as_batch(estimate), as_batch(reference)

    pair = align_to_reference(est, ref, border=6, max_shift=4)

    assert isinstance(pair, AlignedPair)
    assert pair.estimate.shape == pair.reference.shape == (1, 1, 36, 40)
    assert pair.shift.tolist() == [[3.0, -2.0]]
    torch.testing.assert_close(pair.reference, ref[..., 6:-6, 6:-6])
    torch.testing.assert_close(pair.estimate, pair.reference, rtol=0, atol=1e-7)
    psnr = aligned_psnr(est, ref, border=6, max_shift=4)
    assert psnr.dtype == torch.float32 and psnr.shape == (1,)
    assert psnr.item() > 100
    assert psnr_per_image(est, ref).item() < 25  # the shift is what aligned PSNR forgives
    assert aligned_ssim(est, ref, border=6, max_shift=4).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim_per_image(est, ref).item() < 0.8


def test_integer_shift_with_default_window():
    reference = smooth_image(50, 50, seed=2)
    estimate = np.roll(reference, (-5, 4), axis=(-2, -1))  # the largest shift tried by default
    pair = align_to_reference(as_batch(estimate), as_batch(reference))
    assert pair.estimate.shape == (1, 1, 20, 20)  # 15 px cropped from each side
    assert pair.shift.tolist() == [[-5.0, 4.0]]
    assert aligned_psnr(as_batch(estimate), as_batch(reference)).item() > 100


@pytest.mark.parametrize("shift", [(0.5, -0.25), (-1.75, 2.5), (0.0, 0.75)])
def test_sub_pixel_shift_is_found_exactly(shift):
    estimate = smooth_image(40, 44, seed=3, channels=2)
    reference = sampled_reference(estimate, shift, border=5, seed=4)
    est, ref = as_batch(estimate), as_batch(reference)

    pair = align_to_reference(est, ref, border=5, max_shift=3)

    assert pair.shift.tolist() == [list(shift)]
    assert aligned_psnr(est, ref, border=5, max_shift=3).item() > 100
    # Half a step off is already clearly worse: the search resolves 0.25 px.
    coarse = aligned_psnr(est, ref, border=5, max_shift=3, step=1.0).item()
    if shift[0] % 1 or shift[1] % 1:
        assert coarse < 60


@pytest.mark.parametrize(("border", "max_shift", "step"), [(6, 3.0, 0.25), (15, 5.0, 0.25), (4, 2.0, 0.5)])
def test_matches_a_direct_float64_brute_force(border, max_shift, step):
    rng = np.random.default_rng(5)
    shape = (2, 36, 33) if border < 15 else (1, 40, 42)
    references = [smooth_image(*shape[1:], seed=10 + i, channels=shape[0]) for i in range(3)]
    # Estimates: the reference moved by a few (sub-)pixels, plus noise and an intensity error,
    # so that no shift matches exactly and the minimum is a genuine trade-off.
    estimates = [
        np.clip(np.roll(ref, (i - 1, 2 - i), axis=(-2, -1)) * 0.9 + 0.05 + 0.05 * rng.standard_normal(ref.shape), 0, 1)
        for i, ref in enumerate(references)
    ]
    estimates[2] = sampled_reference(references[2], (0.75, -1.25), border, seed=6) * 0.95 + 0.01

    est, ref = as_batch(*estimates, dtype=torch.float64), as_batch(*references, dtype=torch.float64)
    ours = aligned_psnr(est, ref, border, max_shift, step)
    shifts = align_to_reference(est, ref, border, max_shift, step).shift

    for i in range(3):
        expected, expected_shift = brute_force_psnr(estimates[i], references[i], border, max_shift, step)
        assert ours[i].item() == pytest.approx(expected, abs=1e-4)
        assert tuple(shifts[i].tolist()) == expected_shift


def test_aligned_isnr_aligns_estimate_and_observation_separately():
    reference = smooth_image(40, 40, seed=7)
    observation = reference + 0.1  # 20 dB, best at shift 0
    estimate = np.roll(reference + 0.01, (2, -1), axis=(-2, -1))  # 40 dB once shifted back
    est, obs, ref = as_batch(estimate), as_batch(observation), as_batch(reference)

    isnr = aligned_isnr(est, obs, ref, border=5, max_shift=3)

    assert isnr.shape == (1,) and isnr.dtype == torch.float32
    assert isnr.item() == pytest.approx(20.0, abs=1e-3)
    assert aligned_psnr(obs, ref, border=5, max_shift=3).item() == pytest.approx(20.0, abs=1e-3)
    assert aligned_psnr(est, ref, border=5, max_shift=3).item() == pytest.approx(40.0, abs=1e-3)


def test_error_ratio():
    rng = np.random.default_rng(8)
    reference = smooth_image(40, 40, seed=9)
    noise = 0.01 * rng.standard_normal(reference.shape)
    with_true_kernel = np.roll(reference + noise, (-2, 0), axis=(-2, -1))
    blind = np.roll(reference + 2 * noise, (1, 2), axis=(-2, -1))  # twice the error, shifted otherwise
    est = as_batch(blind, dtype=torch.float64)
    est_k = as_batch(with_true_kernel, dtype=torch.float64)
    ref = as_batch(reference, dtype=torch.float64)

    assert error_ratio(est_k, est_k, ref, border=5, max_shift=3).item() == pytest.approx(1.0, abs=1e-6)
    ratio = error_ratio(est, est_k, ref, border=5, max_shift=3)
    assert ratio.shape == (1,) and ratio.dtype == torch.float32
    assert ratio.item() == pytest.approx(2.0, abs=1e-6)
    assert error_ratio(est, est_k, ref, border=5, max_shift=3, squared=True).item() == pytest.approx(4.0, abs=1e-5)
    assert error_ratio(est_k, est, ref, border=5, max_shift=3).item() == pytest.approx(0.5, abs=1e-6)


def gaussian_kernel(height: int, width: int, sigma: float, centre=(0.0, 0.0)) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    dy, dx = rows - (height - 1) / 2 - centre[0], cols - (width - 1) / 2 - centre[1]
    g = np.exp(-(dy**2 + dx**2) / (2 * sigma**2))
    return g / g.sum()


def test_kernel_error_forgives_shifts_and_size_differences():
    kernel = gaussian_kernel(9, 9, 1.3)
    # The same kernel on a bigger canvas, off-centre by (2, -1) px.
    bigger = np.zeros((15, 13))
    bigger[3 + 2 : 12 + 2, 2 - 1 : 11 - 1] = kernel
    assert kernel_error(torch.from_numpy(bigger), torch.from_numpy(kernel)).item() < 1e-7
    assert kernel_error(torch.from_numpy(kernel), torch.from_numpy(bigger)).item() < 1e-7

    # A sub-pixel shift: the truth is the estimate resampled half a pixel away.
    # (zero-padded first, so that the samples see zeros outside the kernel and lose no mass).
    estimate = gaussian_kernel(11, 11, 1.5)
    padded = np.pad(estimate, 2)[None]
    truth = bilinear(padded, np.arange(1, 14) + 0.5, np.arange(1, 14) - 0.25)[0]  # 13 × 13
    assert truth.sum() == pytest.approx(1.0)
    assert kernel_error(torch.from_numpy(estimate), torch.from_numpy(truth)).item() < 1e-7

    # A different kernel is not forgiven, and the error is the plain ℓ2 norm when aligned.
    wider = gaussian_kernel(9, 9, 2.5)
    error = kernel_error(torch.from_numpy(wider), torch.from_numpy(kernel))
    assert error.dtype == torch.float32 and error.shape == (1,)
    assert error.item() == pytest.approx(np.linalg.norm(wider - kernel), rel=1e-6)
    line = np.zeros((9, 9))
    line[4, :] = 1 / 9
    assert kernel_error(torch.from_numpy(line).float(), torch.from_numpy(kernel).float()).item() > 0.05


def test_kernel_error_searches_only_within_max_shift():
    kernel = gaussian_kernel(7, 7, 1.0)
    far = np.zeros((21, 21))
    far[7 + 4 : 14 + 4, 7:14] = kernel  # 4 px off-centre
    assert kernel_error(torch.from_numpy(far), torch.from_numpy(kernel), max_shift=4).item() < 1e-7
    assert kernel_error(torch.from_numpy(far), torch.from_numpy(kernel), max_shift=3).item() > 1e-2


def test_batched_results_equal_per_image_results():
    references = [smooth_image(40, 44, seed=20 + i, channels=2) for i in range(3)]
    estimates = [
        sampled_reference(references[0], (1.25, -0.5), 5, seed=30) * 0.9 + 0.05,
        np.roll(references[1], (-2, 3), axis=(-2, -1)) + 0.02,
        references[2] + 0.03 * np.random.default_rng(31).standard_normal(references[2].shape),
    ]
    observations = [np.roll(r, (1, 0), axis=(-2, -1)) * 0.8 + 0.1 for r in references]
    est, obs, ref = as_batch(*estimates), as_batch(*observations), as_batch(*references)
    args = dict(border=5, max_shift=3.0)

    batched = align_to_reference(est, ref, **args)
    psnr, ssim = aligned_psnr(est, ref, **args), aligned_ssim(est, ref, **args)
    isnr, ratio = aligned_isnr(est, obs, ref, **args), error_ratio(est, obs, ref, **args)
    assert psnr.shape == ssim.shape == isnr.shape == ratio.shape == (3,)
    for i in range(3):
        one = slice(i, i + 1)
        single = align_to_reference(est[one], ref[one], **args)
        assert batched.shift[i].tolist() == single.shift[0].tolist()
        torch.testing.assert_close(batched.estimate[one], single.estimate)
        torch.testing.assert_close(psnr[one], aligned_psnr(est[one], ref[one], **args))
        torch.testing.assert_close(ssim[one], aligned_ssim(est[one], ref[one], **args))
        torch.testing.assert_close(isnr[one], aligned_isnr(est[one], obs[one], ref[one], **args))
        torch.testing.assert_close(ratio[one], error_ratio(est[one], obs[one], ref[one], **args))

    kernels = torch.from_numpy(np.stack([gaussian_kernel(9, 9, s) for s in (0.8, 1.4, 2.0)]))
    truth = torch.from_numpy(gaussian_kernel(11, 11, 1.4, centre=(0.5, -1.0)))
    errors = kernel_error(kernels, truth)
    assert errors.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(errors[i : i + 1], kernel_error(kernels[i], truth))
    assert errors[1] < errors[0] and errors[1] < errors[2]


def test_rejects_a_border_smaller_than_the_search():
    image = torch.rand(1, 1, 30, 30)
    with pytest.raises(ValueError, match="border"):
        aligned_psnr(image, image, border=3, max_shift=4)
    with pytest.raises(ValueError, match="shape"):
        aligned_psnr(image, image[..., :-1], border=5, max_shift=4)


def test_ssim_loss_and_metric_agree_where_the_padding_does_not_matter():
    """They differ only in padding (zeros vs reflect): on images that are black for more than
    half a window from the border, both paddings see black, so the values are equal."""
    torch.manual_seed(0)
    a, b = torch.zeros(1, 1, 40, 44), torch.zeros(1, 1, 40, 44)
    a[..., 6:-6, 6:-6], b[..., 6:-6, 6:-6] = torch.rand(28, 32), torch.rand(28, 32)
    assert ssim(a, b).item() == ssim_per_image(a, b).item()
    torch.testing.assert_close(ssim_map(a, b, "zeros"), ssim_map(a, b, "reflect"), rtol=0, atol=0)
    a[..., 0, :] = 1.0  # a bright border row: now the paddings differ
    assert ssim(a, b).item() != ssim_per_image(a, b).item()


def test_ssim_metric_matches_torchmetrics():
    from torchmetrics.functional.image import structural_similarity_index_measure

    torch.manual_seed(1)
    reference = torch.rand(3, 1, 48, 40)
    estimate = (reference + 0.2 * torch.randn_like(reference)).clamp(0, 1)
    expected = structural_similarity_index_measure(estimate, reference, data_range=1.0, reduction="none")
    torch.testing.assert_close(ssim_per_image(estimate, reference), expected, rtol=0, atol=1e-5)


def test_ssim_map_refuses_an_unknown_padding():
    image = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="padding"):
        ssim_map(image, image, "replicate")
