"""The kernel size of a job that was not told it (``--data.kernel_size auto``).

A job given ``auto`` first runs a *probe*: the method's own coarse-scale optimization on
the observation shrunk by :attr:`KernelProbeSpec.scale`, with a kernel support as large
as the bound allows. How far the probe's kernel reaches, measured about its centre of
mass, sets the kernel size of everything that follows: the method then runs as it would
with that size given, its generators drawn from the random stream as the job began
(:meth:`~lightning_deblur.core.planning.JobPlan.after_probe`). The probe's steps are the
price: 500 steps at a quarter of the pixels (about 3 % of the papers' jobs, 11 % of
``fast``'s).

The measure is the smallest box centred on the kernel's centre of mass that holds every
pixel of at least :attr:`KernelProbeSpec.threshold` times the kernel's peak. A relative
threshold rather than a share of the mass: a generator's kernel spreads a faint floor
over its whole support (1e-4 per pixel over 41 × 41 pixels is 17 % of the mass), which a
mass criterion would count as blur. (Measured: the smallest centred square holding 80 %
of the mass fits ``fast``'s and the improved method's probes more closely, but only
through that floor; counting pixels above 2 % of the peak alone, it cuts Levin's blurs
to 0.75-0.85x on average, and the floor's share grows with the bound's area.) The
threshold, 0.15, lies between what the truth and the probes ask for: Levin et al.'s
eight true kernels, shrunk to half size, keep their full extent up to 0.2 of the peak
(mapped back: 10-26 px, rounded up to odd 11-27, against SelfDeblur's sizes 11-27 for
them) and lose it at 0.3; probes on Levin's real blurs spread faint structure over
their support that a lower threshold counts (the improved method's probe of a 27-px
blur: 41 px at 0.05, 29 px at 0.2), while higher ones cut real blur short (``fast``'s
probes: chosen over true support 1.09 on average at 0.15, 0.89 at 0.25, 0.66 at 0.5;
``benchmarks/kernel_size_auto``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lightning_deblur.core.centring import kernel_centroid_offset
from lightning_deblur.core.errors import InputError

AUTO = "auto"
"""The value of ``--data.kernel_size`` (and of a manifest's kernel_size column) that asks
the job to find the size itself."""

MAX_KERNEL_FRACTION = 1 / 6
"""Default bound of an automatic kernel size, as a share of the short side of the region
the kernel is estimated on (the image, or its kernel crop): 41 px at 255 px, 85 px on a
512-px crop. Levin et al.'s largest blur is 27 px in 255-px images (0.106) and the
synthetic range 9-31 px reaches 0.12 at that size; 1/6 leaves room above both while the
probe's support, the only stage that pays for the bound, stays at half resolution."""


def is_automatic(kernel_size) -> bool:
    """Whether a kernel-size value (an option's or a manifest cell's) is :data:`AUTO`, in any case."""
    return isinstance(kernel_size, str) and kernel_size.strip().lower() == AUTO


@dataclass
class KernelProbeSpec:
    """The probe that sets an automatic kernel size.

    Attributes:
        scale: size of the probe's observation relative to the region the kernel is
            estimated on (0.5: half resolution, the improved method's coarsest scale).
        iterations: optimization steps of the probe (500: the papers' coarse-scale budget;
            ``fast``'s own 100 leave its kernel near the initial Gaussian, twice the true
            size on Levin's blurs, where 500 come within 0.7-1.8x of it).
        threshold: pixels of at least this share of the kernel's peak count as blur.
    """

    scale: float = 0.5
    iterations: int = 500
    threshold: float = 0.15

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise InputError(f"--model.kernel_probe.scale must be in (0, 1], got {self.scale}")
        if self.iterations < 1:
            raise InputError(f"--model.kernel_probe.iterations must be positive, got {self.iterations}")
        if not 0 < self.threshold < 1:
            raise InputError(f"--model.kernel_probe.threshold must be in (0, 1), got {self.threshold}")


def largest_odd_at_most(value: float) -> int:
    """The largest odd integer not above ``value`` (at least 1)."""
    return max(2 * math.floor((value - 1) / 2) + 1, 1)


def smallest_odd_at_least(value: float) -> int:
    """The smallest odd integer not below ``value`` (at least 1)."""
    return max(2 * math.ceil((value - 1) / 2 - 1e-9) + 1, 1)


def default_max_kernel_size(region_size: tuple[int, int]) -> int:
    """The bound of an automatic kernel size on a region of ``(H, W)`` pixels: the largest
    odd size within :data:`MAX_KERNEL_FRACTION` of its short side, at least 3."""
    return max(largest_odd_at_most(min(region_size) * MAX_KERNEL_FRACTION), 3)


def centred_extent(k: torch.Tensor, threshold: float) -> tuple[float, float]:
    """Height and width in pixels of the smallest box centred on the kernel's centre of
    mass that holds every pixel of at least ``threshold`` times the peak.

    Args:
        k: ``(kh, kw)`` kernel (negative values count as 0).
        threshold: share of the peak, in (0, 1).

    Returns:
        ``(extent_h, extent_w)``: twice the largest distance of such a pixel from the
        centre of mass along the axis, plus one pixel (the pixel's own width); not rounded.
    """
    weights = k.detach().double().clamp_min(0)
    if float(weights.sum()) <= 0:
        return float(k.shape[0]), float(k.shape[1])  # no mass: nothing tells the size
    rows, cols = torch.nonzero(weights >= threshold * weights.max(), as_tuple=True)
    extents = []
    for hits, side, offset in zip((rows, cols), k.shape, kernel_centroid_offset(k)):
        centre = (side - 1) / 2 + offset
        extents.append(2 * float((hits.double() - centre).abs().max()) + 1)
    return extents[0], extents[1]


def size_from_probe(k: torch.Tensor, factor: tuple[float, float], bound: tuple[int, int], threshold: float) -> tuple[int, int]:
    """The full-resolution kernel size a probe's kernel asks for.

    Args:
        k: ``(kh, kw)`` the probe's kernel estimate.
        factor: ``(fy, fx)`` size of the probe's observation over the full-resolution
            region's (about :attr:`KernelProbeSpec.scale`).
        bound: ``(kh, kw)`` the largest size allowed (odd).
        threshold: as for :func:`centred_extent`.

    Returns:
        ``(kh, kw)``: the larger of the two centred extents divided by ``factor``,
        rounded up to odd, at least 3 and at most ``bound``, on both sides. Square,
        because one axis is often measured short (7 × 11 px for Levin's 13-px kernel 5),
        and a support cut short costs more than one too large.
    """
    return size_from_extent(centred_extent(k, threshold), factor, bound)


def size_from_extent(extent: tuple[float, float], factor: tuple[float, float], bound: tuple[int, int]) -> tuple[int, int]:
    """:func:`size_from_probe` from the probe kernel's :func:`centred_extent` (probe pixels)."""
    side = max(smallest_odd_at_least(length / scale) for length, scale in zip(extent, factor))
    return tuple(min(max(side, 3), limit) for limit in bound)


def kernel_size_choice(k: torch.Tensor, probe_image_size, region, bound, threshold: float) -> dict:
    """The size a probe's kernel asks for, and what it was chosen from (metrics.json's
    ``kernel_size_choice``).

    Args:
        k: ``(kh, kw)`` the probe's kernel estimate (its shape: the probe's kernel size).
        probe_image_size: ``(h, w)`` of the probe's observation.
        region: ``(H, W)`` of the full-resolution region the kernel is estimated on.
        bound: ``(kh, kw)`` the largest size allowed.
        threshold: as for :func:`centred_extent`.

    Returns:
        ``kernel_size`` (chosen, :func:`size_from_probe`), ``max_kernel_size``,
        ``probe_image_size``, ``probe_kernel_size``, ``probe_extent`` (probe pixels) and
        ``probe_threshold``.
    """
    factor = tuple(probe / full for probe, full in zip(probe_image_size, region))
    extent = centred_extent(k, threshold)
    return {
        "kernel_size": list(size_from_extent(extent, factor, tuple(bound))),
        "max_kernel_size": list(bound),
        "probe_image_size": list(probe_image_size),
        "probe_kernel_size": list(k.shape),
        "probe_extent": [round(side, 2) for side in extent],
        "probe_threshold": threshold,
    }
