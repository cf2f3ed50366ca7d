"""Dot-product non-local block used in the deeper levels of the image generator."""

from __future__ import annotations

import torch
from torch import nn


class NonLocalBlock(nn.Module):
    """Non-local attention block in dot-product form, starting as the identity.

    With ``C`` input channels and ``C // 2`` inner channels: ``theta``, ``phi`` and ``g``
    are 1×1 convolutions; ``phi`` and ``g`` are followed by 2×2 max pooling. The
    attention ``f = thetaᵀ phi / N`` (``N`` pooled positions, no softmax) mixes ``g`` and
    the result goes through a 1×1 convolution and a BatchNorm whose affine parameters
    start at zero, so a fresh block returns its input unchanged.

    Args:
        channels: number of input (and output) channels ``C``.

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``; ``H`` and ``W`` must be at least 2.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // 2
        self.inner_channels = inner
        self.theta = nn.Conv2d(channels, inner, kernel_size=1)
        self.phi = nn.Sequential(nn.Conv2d(channels, inner, kernel_size=1), nn.MaxPool2d(2))
        self.g = nn.Sequential(nn.Conv2d(channels, inner, kernel_size=1), nn.MaxPool2d(2))
        self.out = nn.Sequential(nn.Conv2d(inner, channels, kernel_size=1), nn.BatchNorm2d(channels))
        # Zero affine BN: the block starts as the identity, as in the reference network.
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        phi = self.phi(x).flatten(2)  # (B, C', N)
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, N, C')
        attention = torch.bmm(theta, phi) / phi.shape[-1]  # (B, HW, N)
        mixed = torch.bmm(attention, g).transpose(1, 2).reshape(batch, self.inner_channels, height, width)
        return x + self.out(mixed)
