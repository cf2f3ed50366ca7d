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


def blur_valid(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Valid true convolution of every channel of ``x`` with one kernel, in float32.

    Args:
        x: ``(B, C, H+kh-1, W+kw-1)`` images.
        k: ``(kh, kw)`` kernel.

    Returns:
        ``(B, C, H, W)`` blurred images, float32 even under autocast (the data term is
        sensitive to rounding, and the cost of the blur is small next to the nets).
    """
    batch, channels, height, width = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        weight = k.float().flip(-2, -1).reshape(1, 1, *k.shape[-2:])
        planes = x.float().reshape(batch * channels, 1, height, width)
        blurred = F.conv2d(planes, weight)
    return blurred.reshape(batch, channels, *blurred.shape[-2:])
