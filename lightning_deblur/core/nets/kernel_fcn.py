"""The kernel generator G_k: a two-layer fully connected net ending in a softmax."""

from __future__ import annotations

import torch
from torch import nn


class KernelNet(nn.Module):
    """Fully connected kernel generator ``z_k -> k``.

    ``Linear(input -> hidden) -> ReLU6 -> Linear(hidden -> kh·kw) -> softmax``, reshaped
    to ``kh × kw``. The softmax makes the kernel non-negative and sum to 1.

    Args:
        kernel_size: ``(kh, kw)`` of the produced kernel, in pixels.
        input_size: length of the input noise vector ``z_k``.
        hidden: width of the hidden layer.

    Shapes:
        ``(input_size,) -> (kh, kw)``.
    """

    def __init__(self, kernel_size: tuple[int, int], input_size: int = 200, hidden: int = 1000) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.hidden = nn.Linear(input_size, hidden)
        self.activation = nn.ReLU6()
        self.output = nn.Linear(hidden, self.kernel_size[0] * self.kernel_size[1])

    def replace_output_layer(self, kernel_size: tuple[int, int]) -> None:
        """Give the net a fresh output layer for a new kernel size (multiscale transitions)."""
        self.kernel_size = tuple(kernel_size)
        old = self.output
        self.output = nn.Linear(old.in_features, kernel_size[0] * kernel_size[1]).to(
            device=old.weight.device, dtype=old.weight.dtype
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.output(self.activation(self.hidden(z)))
        return torch.softmax(logits.float(), dim=-1).reshape(self.kernel_size)
