"""The forward model ``y = k * x`` (true, valid convolution) and the sizes it implies.

Conventions: ``x`` is the sharp image on the enlarged support ``(H+kh-1) × (W+kw-1)``,
``y`` the blurred observation ``H × W`` and ``k`` the ``kh × kw`` kernel (non-negative,
sums to 1). The convolution is a *true* convolution (the kernel is flipped), so the
estimated kernel has the physical orientation of the blur.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def support_size(image_size: tuple[int, int], kernel_size: tuple[int, int]) -> tuple[int, int]:
    """Size ``(H+kh-1, W+kw-1)`` of the sharp-image support whose valid blur is ``H × W``."""
    return image_size[0] + kernel_size[0] - 1, image_size[1] + kernel_size[1] - 1


def crop_to_observation(x: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """Central ``H × W`` crop of a support-sized image ``(..., H+kh-1, W+kw-1)``."""
    top, left = (kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2
    height = x.shape[-2] - kernel_size[0] + 1
    width = x.shape[-1] - kernel_size[1] + 1
    return x[..., top : top + height, left : left + width]


def pad_to_support(y: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, H+kh-1, W+kw-1)`` by edge replication, placed so that
    :func:`crop_to_observation` gives ``y`` back."""
    top, left = (kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2
    bottom, right = kernel_size[0] - 1 - top, kernel_size[1] - 1 - left
    return F.pad(y, (left, right, top, bottom), mode="replicate")


FFT_MIN_KERNEL_PIXELS = {"cpu": 5 * 5, "cuda": 41 * 41}
"""Per device type, kernels with at least this many pixels are applied by FFT under
``method="auto"``.

CPU: measured by ``benchmarks/cpu_step/blur_crossover.py`` (forward + backward, one channel, see
docs/RESULTS.md): FFT wins from 5×5 at 64×64 and already at 3×3 at 255×255, by 10× at
27×27. CUDA: not measured yet (no GPU so far); direct convolution below 41×41 until
the same script is run on a GPU. Other devices use the CUDA value.
"""


def blur_valid(x: torch.Tensor, k: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Valid true convolution of every channel of ``x`` with one kernel, in float32.

    Args:
        x: ``(B, C, H+kh-1, W+kw-1)`` images.
        k: ``(kh, kw)`` kernel.
        method: ``direct`` (``conv2d``), ``fft`` (real FFT of the support size), or
            ``auto``: FFT for kernels of at least :data:`FFT_MIN_KERNEL_PIXELS` pixels
            (by device type).

    Returns:
        ``(B, C, H, W)`` blurred images, float32 even under autocast (the data term is
        sensitive to rounding, and the cost of the blur is small next to the nets).
    """
    if method == "auto":
        threshold = FFT_MIN_KERNEL_PIXELS.get(x.device.type, FFT_MIN_KERNEL_PIXELS["cuda"])
        method = "fft" if k.shape[-2] * k.shape[-1] >= threshold else "direct"
    with torch.autocast(device_type=x.device.type, enabled=False):
        if method == "fft":
            return _blur_valid_fft(x.float(), k.float())
        if method != "direct":
            raise ValueError(f"unknown blur method '{method}'; use direct, fft or auto")
        batch, channels, height, width = x.shape
        weight = k.float().flip(-2, -1).reshape(1, 1, *k.shape[-2:])
        planes = x.float().reshape(batch * channels, 1, height, width)
        blurred = F.conv2d(planes, weight)
    return blurred.reshape(batch, channels, *blurred.shape[-2:])


def _blur_valid_fft(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The valid part of a circular convolution of the support size.

    A circular convolution over the ``H' × W'`` support wraps only into its first
    ``kh-1`` rows and ``kw-1`` columns; the rest is exactly the valid linear convolution.
    """
    kh, kw = k.shape[-2:]
    height, width = x.shape[-2:]
    spectrum = torch.fft.rfft2(x, s=(height, width)) * torch.fft.rfft2(k, s=(height, width))
    full = torch.fft.irfft2(spectrum, s=(height, width))
    return full[..., kh - 1 :, kw - 1 :]
