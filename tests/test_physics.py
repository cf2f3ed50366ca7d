import numpy as np
import pytest
import torch

from lightning_deblur.core.physics import blur_valid, crop_to_observation, support_size


def fft_true_convolution_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Reference: full linear convolution by zero-padded FFT (float64), then its valid part."""
    full_shape = (x.shape[0] + k.shape[0] - 1, x.shape[1] + k.shape[1] - 1)
    full = np.real(np.fft.ifft2(np.fft.fft2(x, full_shape) * np.fft.fft2(k, full_shape)))
    kh, kw = k.shape
    return full[kh - 1 : x.shape[0], kw - 1 : x.shape[1]]


def test_blur_is_a_true_valid_convolution():
    rng = np.random.default_rng(0)
    x = rng.random((41, 35))
    k = rng.random((7, 5))  # asymmetric and rectangular: a flip or transpose would show
    k /= k.sum()
    ours = blur_valid(torch.from_numpy(x)[None, None].float(), torch.from_numpy(k).float())
    assert ours.shape == (1, 1, 35, 31)
    np.testing.assert_allclose(ours[0, 0].double().numpy(), fft_true_convolution_valid(x, k), atol=1e-5)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_both_blur_paths_agree_with_the_reference_and_in_gradients(method):
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.random((2, 1, 45, 38))).float().requires_grad_()
    k = torch.from_numpy(rng.random((9, 7))).float()
    k = (k / k.sum()).requires_grad_()
    ours = blur_valid(x, k, method=method)
    reference = fft_true_convolution_valid(x[1, 0].detach().double().numpy(), k.detach().double().numpy())
    np.testing.assert_allclose(ours[1, 0].detach().double().numpy(), reference, atol=1e-5)
    ours.square().sum().backward()
    grads = x.grad.clone(), k.grad.clone()
    x.grad, k.grad = None, None
    blur_valid(x, k, method="direct" if method == "fft" else "fft").square().sum().backward()
    torch.testing.assert_close(grads[0], x.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[1], k.grad, atol=1e-3, rtol=1e-4)


def test_auto_blur_picks_fft_for_large_kernels(monkeypatch):
    from lightning_deblur.core import physics

    calls = []
    monkeypatch.setattr(physics, "_blur_valid_fft", lambda x, k: calls.append(k.shape) or x[..., : x.shape[-2] - k.shape[-2] + 1, : x.shape[-1] - k.shape[-1] + 1])
    blur_valid(torch.rand(1, 1, 80, 80), torch.rand(3, 3))
    assert calls == []  # below the CPU crossover
    blur_valid(torch.rand(1, 1, 80, 80), torch.rand(5, 5))
    assert calls == [(5, 5)]


def test_blur_with_an_off_centre_delta_moves_content_physically():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    k = torch.zeros(3, 3)
    k[2, 2] = 1.0  # a delta below-right of the centre blurs content towards below-right
    y = blur_valid(x, k)  # 7×7, centre at (3, 3) in y coordinates = (4, 4) in x coordinates
    assert torch.nonzero(y[0, 0]).tolist() == [[4, 4]]


def test_blur_stays_float32_under_bfloat16_autocast():
    x = torch.rand(1, 1, 20, 20)
    k = torch.full((5, 5), 1 / 25)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = blur_valid(x.bfloat16(), k)
    assert y.dtype == torch.float32


def test_support_and_crop_are_inverse():
    assert support_size((37, 31), (5, 7)) == (41, 37)
    x = torch.arange(41 * 37.0).reshape(1, 1, 41, 37)
    cropped = crop_to_observation(x, (5, 7))
    assert cropped.shape == (1, 1, 37, 31)
    assert cropped[0, 0, 0, 0] == x[0, 0, 2, 3]
