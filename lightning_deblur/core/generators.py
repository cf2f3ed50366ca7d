"""The settings of the two generators and of their optimizer, as the command line sets them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from lightning_deblur.core.errors import check_at_least
from lightning_deblur.core.nets import KernelNet, SkipNet


@dataclass
class ImageNetSpec:
    """Shape of the image generator G_x and its input noise.

    Attributes:
        input_channels: channels of the input noise ``z_x``.
        channels: width of the down and merge convolutions at every level.
        skip_channels: width of the skip branches.
        levels: encoder-decoder depth; the estimate needs at least ``2**levels + 1``
            pixels per side.
        non_local_from_level: first level (1-based) with a non-local block.
        upsample_mode: ``bilinear`` or ``nearest``.
        noise_scale: ``z_x`` is uniform in ``[0, noise_scale)``.
    """

    input_channels: int = 8
    channels: int = 128
    skip_channels: int = 16
    levels: int = 5
    non_local_from_level: int = 3
    upsample_mode: Literal["bilinear", "nearest"] = "bilinear"
    noise_scale: float = 0.1

    def __post_init__(self) -> None:
        # Values below these build no net (or a broken one, failing later with a traceback).
        for name, least in (("input_channels", 1), ("channels", 1), ("skip_channels", 0), ("levels", 1)):
            check_at_least(getattr(self, name), least, f"--model.image_net.{name}", getattr(ImageNetSpec, name))

    def build(self, output_channels: int = 1) -> SkipNet:
        return SkipNet(
            input_channels=self.input_channels,
            output_channels=output_channels,
            down_channels=self.channels,
            up_channels=self.channels,
            skip_channels=self.skip_channels,
            levels=self.levels,
            non_local_from_level=self.non_local_from_level,
            upsample_mode=self.upsample_mode,
        )


@dataclass
class KernelNetSpec:
    """Shape of the kernel generator G_k and its input noise.

    Attributes:
        input_size: length of ``z_k``.
        hidden: width of the hidden layer.
        noise_scale: ``z_k`` is uniform in ``[0, noise_scale)``.
    """

    input_size: int = 200
    hidden: int = 1000
    noise_scale: float = 0.1

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden"):
            check_at_least(getattr(self, name), 1, f"--model.kernel_net.{name}", getattr(KernelNetSpec, name))

    def build(self, kernel_size: tuple[int, int]) -> KernelNet:
        return KernelNet(kernel_size, input_size=self.input_size, hidden=self.hidden)


@dataclass
class OptimizerSpec:
    """Adam with one parameter group per generator.

    Attributes:
        image_lr: learning rate of θ_x before any decay.
        kernel_lr: learning rate of θ_k before any decay.
        fused: PyTorch's fused Adam (``torch.optim.Adam(fused=True)``), for the job's
            optimizer and the re-fits' alike: the same update rule in one pass over all
            parameters instead of a loop of small operations per parameter tensor. On one
            CPU thread an update of the 146 parameter tensors takes 2.6–3.5× less time
            (``benchmarks/cpu_step/optimizer_speed.py``). Its rounding differs from the default
            implementation's, so runs with and without it are not bit-identical. Off by
            default: the papers' configs and the banked runs use the default Adam.
    """

    image_lr: float = 0.01
    kernel_lr: float = 1e-4
    fused: bool = False


def make_adam(params: Iterable, fused: bool, **options) -> torch.optim.Adam:
    """The project's Adam, for the job and the re-fits alike: PyTorch's fused
    implementation when ``fused`` (see :attr:`OptimizerSpec.fused`), else PyTorch's own
    choice. ``options`` (``lr``, …) go to ``torch.optim.Adam`` as they are.
    """
    # None, not False, when off: an explicit False would also turn off the multi-tensor
    # (foreach) implementation that PyTorch picks by default on GPUs.
    return torch.optim.Adam(params, fused=True if fused else None, **options)


def copy_state(sources: tuple, targets: tuple) -> None:
    """Copy each net's weights or tensor's values into the matching target, in place."""
    for source, target in zip(sources, targets, strict=True):
        if isinstance(source, torch.nn.Module):
            target.load_state_dict(source.state_dict())
        else:
            target.copy_(source)


def empty_net(make) -> torch.nn.Module:
    """A net of ``make()``'s shape, zero-filled and frozen: a holder for copies of a
    generator's weights. Built on the meta device and then allocated, so no weights are
    drawn (the random stream stays the method's)."""
    with torch.device("meta"):
        net = make()
    net = net.to_empty(device="cpu").requires_grad_(False)
    for tensor in net.state_dict().values():
        tensor.zero_()
    return net
