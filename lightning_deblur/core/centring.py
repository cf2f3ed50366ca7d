"""Re-registration of a blind estimate: the kernel's centre of mass moved to the centre
of its support, the image moved the opposite way.

Blind deconvolution cannot tell a shifted kernel from a shifted image,
``k(· − s) * x(· + s) = k * x``, so a job settles on an arbitrary shift and its result
comes out displaced against the input. Moving the kernel's mass back to the middle of
its support (and the image the opposite way) picks the one registration in which the
blur has no net displacement, which is where a centred true kernel puts the sharp image.

Shifts are whole pixels. A sub-pixel shift would need interpolation, and interpolating
the kernel blurs it (bilinear) or gives it negative ringing (Fourier), so the re-blurred
estimate would no longer be the one the optimization reached; an integer shift keeps
``blur_valid(x_shifted, k_centred)`` equal to ``blur_valid(x, k)`` exactly, as long as no
kernel mass leaves the support (``benchmarks/kernel_centring/kernel_centring.py`` measures both).

Conventions as in :mod:`lightning_deblur.core.physics`: ``x`` lives on the support
``(H+kh-1) × (W+kw-1)`` of an ``H × W`` observation and the result is its central crop;
``k`` is ``kh × kw`` with odd sides, so its centre is the pixel ``((kh-1)/2, (kw-1)/2)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

LOST_MASS_WARNING = 0.01
"""Share of the kernel's mass pushed out of its support by centring above which the job
warns: the blur reaches beyond the support, so the kernel size given may be too small."""


class CentredEstimate(NamedTuple):
    """Result of :func:`centre_kernel`.

    Attributes:
        x: ``(B, C, H', W')`` the image estimate, its content moved by ``−shift``.
        k: ``(kh, kw)`` the kernel, its content moved by ``shift``, non-negative, sums to 1.
        shift: ``(dy, dx)`` whole pixels the kernel's content moved (down, right
            positive); the image's content moved by ``(−dy, −dx)``.
        lost_mass: share of the kernel's mass that the shift pushed out of the support
            (the kernel is renormalized after dropping it; 0 in the usual case).
    """

    x: torch.Tensor
    k: torch.Tensor
    shift: tuple[int, int]
    lost_mass: float


def kernel_centroid_offset(k: torch.Tensor) -> tuple[float, float]:
    """Centre of mass of a ``(kh, kw)`` kernel minus the centre of its support,
    ``(dy, dx)`` in pixels (down, right positive); negative values count as mass 0."""
    weights = k.detach().double().clamp_min(0)
    total = float(weights.sum())
    if total <= 0:
        return 0.0, 0.0  # no mass, no centroid: nothing to move
    offsets = []
    for axis, side in ((0, k.shape[0]), (1, k.shape[1])):
        coords = torch.arange(side, dtype=torch.float64, device=weights.device) - (side - 1) / 2
        profile = weights.sum(dim=1 - axis)
        offsets.append(float((profile * coords).sum()) / total)
    return offsets[0], offsets[1]


def nearest_shift(offset: float) -> int:
    """The whole-pixel shift that moves a centroid at ``offset`` nearest to 0; exact
    halves stay put (round half towards zero), so a kernel never moves for nothing."""
    return int(math.copysign(math.ceil(abs(offset) - 0.5), offset))


def centre_kernel(x: torch.Tensor, k: torch.Tensor) -> CentredEstimate:
    """Move the kernel's centre of mass to the nearest whole pixel of the support's centre,
    and the image estimate by the opposite amount.

    With ``s = (sy, sx)`` the kernel centroid's offset rounded to whole pixels:
    ``k_centred[i, j] = k[i + sy, j + sx]`` (zero where that falls outside ``k``) and
    ``x_shifted[p, q] = x[p − sy, q − sx]``. Then ``blur_valid(x_shifted, k_centred)``
    equals ``blur_valid(x, k)`` everywhere, exactly: the rows and columns of
    ``x_shifted`` that have no source in ``x`` (filled by edge replication) meet only the
    zero rows and columns that the shift brought into the kernel. The central crop of
    ``x_shifted`` (the result) is another crop of ``x``'s support, with no filled pixels,
    while ``|s|`` is at most the support's margin ``(k−1)/2`` per axis, which a centroid
    inside the kernel always satisfies.

    Kernel mass at the edge that the shift pushes out of the support is dropped, the
    kernel renormalized, and the share reported as ``lost_mass``; the re-blur then
    differs from the original by about that share of the image.

    Args:
        x: ``(B, C, H+kh-1, W+kw-1)`` image estimate on its support, any units.
        k: ``(kh, kw)`` kernel, non-negative; it need not sum to 1.

    Returns:
        :class:`CentredEstimate` with ``x`` and ``k`` of the input shapes and dtypes.
    """
    sy, sx = (nearest_shift(value) for value in kernel_centroid_offset(k))
    if (sy, sx) == (0, 0):
        return CentredEstimate(x, k, (0, 0), 0.0)
    # A centroid lies inside its kernel, so |s| ≤ (k−1)/2 and the slices below fit.
    height, width = k.shape[-2:]
    # Kernel: take rows sy.. (sy > 0) of a copy zero-padded below, or pad above (sy < 0).
    padded = F.pad(k, (max(-sx, 0), max(sx, 0), max(-sy, 0), max(sy, 0)))
    moved = padded[max(sy, 0) : max(sy, 0) + height, max(sx, 0) : max(sx, 0) + width]
    total = k.sum()
    kept = moved.sum()
    lost = float(1 - kept / total) if float(total) > 0 else 0.0
    moved = moved * (total / kept) if float(kept) > 0 else moved
    # Image: the opposite move; the pixels it brings in copy the nearest edge.
    support_h, support_w = x.shape[-2:]
    extended = F.pad(x, (max(sx, 0), max(-sx, 0), max(sy, 0), max(-sy, 0)), mode="replicate")
    top, left = max(-sy, 0), max(-sx, 0)
    shifted = extended[..., top : top + support_h, left : left + support_w]
    return CentredEstimate(shifted, moved, (-sy, -sx), max(lost, 0.0))


def border_ratio(k: torch.Tensor) -> float:
    """Largest value in the outermost rows and columns of ``k`` divided by its peak
    (0 for a kernel of at most 2 pixels per side or without mass)."""
    if min(k.shape[-2:]) < 3:
        return 0.0
    peak = float(k.max())
    if peak <= 0:
        return 0.0
    edge = torch.cat([k[0], k[-1], k[1:-1, 0], k[1:-1, -1]])
    return float(edge.max()) / peak
