"""The image generator G_x: the deep-image-prior encoder-decoder with skip connections."""

from __future__ import annotations

import torch
from torch import nn

from lightning_deblur.core.nets.non_local import NonLocalBlock


def _conv(in_channels: int, out_channels: int, size: int, stride: int = 1) -> nn.Conv2d:
    """Convolution with reflection padding and a bias, as everywhere in G_x."""
    return nn.Conv2d(
        in_channels, out_channels, size, stride=stride, padding=size // 2, padding_mode="reflect", bias=True
    )


def _conv_bn_act(in_channels: int, out_channels: int, size: int, stride: int = 1) -> list[nn.Module]:
    return [_conv(in_channels, out_channels, size, stride), nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2)]


def concat_center_cropped(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along channels after centre-cropping every tensor to the smallest H, W.

    Upsampling a stride-2 result can overshoot an odd size by one pixel; the crop keeps
    the output exactly the size of the input noise.
    """
    height = min(t.shape[-2] for t in tensors)
    width = min(t.shape[-1] for t in tensors)
    cropped = []
    for t in tensors:
        top = (t.shape[-2] - height) // 2
        left = (t.shape[-1] - width) // 2
        cropped.append(t[..., top : top + height, left : left + width])
    return torch.cat(cropped, dim=1)


class SkipLevel(nn.Module):
    """One level of the encoder-decoder: a skip branch beside a down-deeper-up branch.

    Args:
        in_channels: channels entering the level.
        down_channels: width of the down branch.
        skip_channels: width of the 1×1 skip branch.
        up_channels: width of the merge convolutions (the level's output channels).
        deeper: the next level, or ``None`` at the bottom.
        deeper_channels: output channels of ``deeper`` (ignored when it is ``None``).
        non_local: insert a non-local block after the strided convolution.
        upsample_mode: interpolation mode of the ×2 upsampling.

    Shapes:
        ``(B, in_channels, H, W) -> (B, up_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        down_channels: int,
        skip_channels: int,
        up_channels: int,
        deeper: SkipLevel | None,
        deeper_channels: int,
        non_local: bool,
        upsample_mode: str,
    ) -> None:
        super().__init__()
        self.skip = nn.Sequential(*_conv_bn_act(in_channels, skip_channels, 1))
        down: list[nn.Module] = _conv_bn_act(in_channels, down_channels, 3, stride=2)
        if non_local:
            down.append(NonLocalBlock(down_channels))
        down += _conv_bn_act(down_channels, down_channels, 3)
        self.down = nn.Sequential(*down)
        self.deeper = deeper
        self.upsample = nn.Upsample(scale_factor=2, mode=upsample_mode)
        merged = skip_channels + (deeper_channels if deeper is not None else down_channels)
        self.merge = nn.Sequential(
            nn.BatchNorm2d(merged),
            *_conv_bn_act(merged, up_channels, 3),
            *_conv_bn_act(up_channels, up_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.deeper is not None:
            deep = self.deeper(deep)
        deep = self.upsample(deep)
        return self.merge(concat_center_cropped([self.skip(x), deep]))


class SkipNet(nn.Module):
    """Encoder-decoder image generator of the deep image prior, as SelfDeblur configures it.

    ``levels`` nested :class:`SkipLevel` s followed by a 1×1 convolution and a sigmoid,
    so the output lies in [0, 1] and has exactly the spatial size of the input, for any
    input size of at least ``2**levels + 1`` pixels per side.

    Args:
        input_channels: channels of the input noise ``z_x``.
        output_channels: image channels (1 for grey or luminance, 3 for colour).
        down_channels: width of the down branch at every level.
        up_channels: width of the merge convolutions at every level.
        skip_channels: width of the skip branch at every level.
        levels: number of levels (each halves the resolution once).
        non_local_from_level: first level (1-based) that gets a non-local block.
        upsample_mode: ``"bilinear"`` or ``"nearest"``.

    Shapes:
        ``(B, input_channels, H, W) -> (B, output_channels, H, W)``, values in [0, 1].
    """

    def __init__(
        self,
        input_channels: int = 8,
        output_channels: int = 1,
        down_channels: int = 128,
        up_channels: int = 128,
        skip_channels: int = 16,
        levels: int = 5,
        non_local_from_level: int = 3,
        upsample_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        self.levels = levels
        deeper: SkipLevel | None = None
        # Build from the bottom level up, so each level can hold the one below it.
        for level in range(levels, 0, -1):
            deeper = SkipLevel(
                in_channels=input_channels if level == 1 else down_channels,
                down_channels=down_channels,
                skip_channels=skip_channels,
                up_channels=up_channels,
                deeper=deeper,
                deeper_channels=up_channels,
                non_local=level >= non_local_from_level,
                upsample_mode=upsample_mode,
            )
        self.body = deeper
        self.head = nn.Sequential(_conv(up_channels, output_channels, 1), nn.Sigmoid())

    def replace_head(self, output_channels: int) -> None:
        """Give the net a fresh output layer with ``output_channels`` channels (colour stage)."""
        old = self.head[0]
        self.head = nn.Sequential(_conv(old.in_channels, output_channels, 1), nn.Sigmoid()).to(old.weight.device)

    @staticmethod
    def min_input_size(levels: int) -> int:
        """Smallest input side (pixels) that survives ``levels`` stride-2 reflection-padded convs."""
        return 2**levels + 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))
