"""Image-quality figures of a result against its sharp reference, up to a shift.

Shift-aligned figures (:func:`align_to_reference`, :func:`aligned_psnr`,
  :func:`aligned_ssim`, :func:`aligned_isnr`, :func:`error_ratio`, :func:`kernel_error`)
  compare the way Levin et al. (2009, "Understanding and evaluating blind deconvolution
  algorithms", ``comp_upto_shift.m``) do. Blind deconvolution determines the image only
  up to a small translation (moving the image one way and the kernel the other gives the
  same blur), so an estimate must not be penalised for it: ``border`` pixels are cropped
  from each side of the reference, and the estimate is resampled (bilinear) at every shift
  ``(dy, dx)`` on a ``step`` grid (0.25 px) within ``±max_shift`` (5 px) on both axes; the
  shift with the least squared error over the cropped window is kept.

Shift convention: at shift ``(dy, dx)`` the aligned estimate is
``aligned[..., i, j] = estimate(border + i + dy, border + j + dx)`` (bilinear), so a
positive ``dy`` means the estimate's content lies ``dy`` pixels lower than the
reference's (``estimate = torch.roll(reference, (dy, dx), (-2, -1))`` is found at
``(dy, dx)``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_deblur.core.metrics import psnr_per_image, ssim_per_image


LEVIN_BORDER = 15
"""Pixels cropped from each side of the reference (Levin et al.'s comparison)."""

LEVIN_MAX_SHIFT = 5.0
"""Largest shift searched on each axis, pixels (``comp_upto_shift.m``; SelfDeblur's
``statistic_levin.m`` searches ±10)."""

LEVIN_STEP = 0.25
"""Spacing of the shifts searched, pixels."""

MIN_COMPARED_SIZE = 16
"""Smallest side, pixels, of the window left after the border crop for which the jobs
report aligned figures: below it an image is too small for Levin et al.'s comparison."""


def fits_levin_comparison(sharp: torch.Tensor) -> bool:
    """Whether ``sharp`` (``(..., H, W)``) is large enough for the aligned figures with
    Levin et al.'s border: both sides at least ``2·LEVIN_BORDER + MIN_COMPARED_SIZE``."""
    return min(sharp.shape[-2:]) >= 2 * LEVIN_BORDER + MIN_COMPARED_SIZE


_SNAP = 1e-9
"""Tolerance for grid arithmetic: ``k * step`` may miss an integer by a rounding error, and
a sample position a hair below an integer must not pull in the previous pixel."""

_CHUNK_ELEMENTS = 1 << 22
"""Float64 elements of the largest temporary of the shift search (32 MiB): candidate shifts
are evaluated in chunks of this size, so memory stays bounded for large images/batches."""


@dataclass(frozen=True)
class AlignedPair:
    """An estimate resampled onto the cropped window of its reference at the best shift.

    Attributes:
        estimate: ``(B, C, h, w)`` float32, the estimate bilinearly sampled at ``shift``
            over the reference's window (``h = H - 2·border``, ``w = W - 2·border``).
        reference: ``(B, C, h, w)`` float32, the reference with ``border`` pixels cropped
            from each side.
        shift: ``(B, 2)`` float32, the chosen shift ``(dy, dx)`` in pixels (see the module
            docstring for the sign convention).
    """

    estimate: torch.Tensor
    reference: torch.Tensor
    shift: torch.Tensor


def align_to_reference(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    border: int = LEVIN_BORDER,
    max_shift: float = LEVIN_MAX_SHIFT,
    step: float = LEVIN_STEP,
) -> AlignedPair:
    """Finds, per image, the shift of the estimate that best matches the cropped reference.

    Every shift ``(dy, dx)`` with ``dy, dx ∈ {k·step : |k·step| ≤ max_shift}`` is tried:
    41 × 41 by default. The search is exhaustive, as in Levin's code, not coarse-to-fine:
    a coarse integer pass could lock onto the wrong basin of a textured image, and the
    exhaustive one is cheap. The estimate is interpolated once per pair of fractional
    phases (16 at 0.25 px), after which the integer parts of the shifts are zero-copy
    slices, so each candidate costs one subtraction and one squared sum over the window.
    Sampling is exact bilinear interpolation; the shift with the least sum of squared
    errors over the cropped window (all channels) is kept; among exactly equal errors the
    smallest ``dy² + dx²`` wins (e.g. a flat image keeps shift 0). The search runs in
    float64 on the inputs' device, batched over images, without host synchronisation.

    Args:
        estimate: ``(B, C, H, W)`` estimate, intensities in [0, 1].
        reference: ``(B, C, H, W)`` sharp reference, same shape.
        border: pixels cropped from each side of the reference; must be at least the
            largest shift tried, so every sample lies inside the estimate.
        max_shift: largest shift tried on each axis, pixels.
        step: spacing of the shifts tried, pixels.

    Returns:
        The aligned crops ``(B, C, h, w)`` and the chosen shifts ``(B, 2)``, all float32.
    """
    aligned, cropped, shift = _align(estimate, reference, border, max_shift, step)
    return AlignedPair(aligned.float(), cropped.float(), shift.float())


def aligned_psnr(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    border: int = LEVIN_BORDER,
    max_shift: float = LEVIN_MAX_SHIFT,
    step: float = LEVIN_STEP,
) -> torch.Tensor:
    """PSNR in dB (peak 1) at the best shift, over the cropped window (see :func:`align_to_reference`).

    Args:
        estimate: ``(B, C, H, W)`` estimate in [0, 1].
        reference: ``(B, C, H, W)`` sharp reference in [0, 1].
        border, max_shift, step: as for :func:`align_to_reference`.

    Returns:
        ``(B,)`` float32, dB.
    """
    aligned, cropped, _ = _align(estimate, reference, border, max_shift, step)
    return psnr_per_image(aligned, cropped)


def aligned_ssim(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    border: int = LEVIN_BORDER,
    max_shift: float = LEVIN_MAX_SHIFT,
    step: float = LEVIN_STEP,
) -> torch.Tensor:
    """SSIM (:func:`ssim_per_image`) at the best-PSNR shift, over the cropped window.

    The shift is the one of least squared error (Levin's choice), not the one of best SSIM.

    Args:
        estimate: ``(B, C, H, W)`` estimate in [0, 1].
        reference: ``(B, C, H, W)`` sharp reference in [0, 1].
        border, max_shift, step: as for :func:`align_to_reference`; the cropped window
            must be at least 11 × 11 (the SSIM window).

    Returns:
        ``(B,)`` float32, unitless.
    """
    aligned, cropped, _ = _align(estimate, reference, border, max_shift, step)
    return ssim_per_image(aligned, cropped)


def aligned_isnr(
    estimate: torch.Tensor,
    observation: torch.Tensor,
    reference: torch.Tensor,
    border: int = LEVIN_BORDER,
    max_shift: float = LEVIN_MAX_SHIFT,
    step: float = LEVIN_STEP,
) -> torch.Tensor:
    """Improvement in SNR, dB: ``aligned_psnr(estimate) − aligned_psnr(observation)``.

    The estimate and the observation are aligned to the reference separately (each gets
    its own best shift): the blurred observation is itself displaced by the blur's
    off-centre mass, and that must not count against it either.

    Args:
        estimate: ``(B, C, H, W)`` deblurred estimate in [0, 1].
        observation: ``(B, C, H, W)`` blurred input in [0, 1].
        reference: ``(B, C, H, W)`` sharp reference in [0, 1].
        border, max_shift, step: as for :func:`align_to_reference`.

    Returns:
        ``(B,)`` float32, dB.
    """
    return aligned_psnr(estimate, reference, border, max_shift, step) - aligned_psnr(
        observation, reference, border, max_shift, step
    )


def error_ratio(
    estimate: torch.Tensor,
    estimate_with_true_kernel: torch.Tensor,
    reference: torch.Tensor,
    border: int = LEVIN_BORDER,
    max_shift: float = LEVIN_MAX_SHIFT,
    step: float = LEVIN_STEP,
    *,
    squared: bool = False,
) -> torch.Tensor:
    """Levin's error ratio ``‖x̂ − x‖₂ / ‖x̂_k − x‖₂`` over the aligned crops.

    ``x̂`` is the blind estimate, ``x̂_k`` the non-blind deconvolution of the same
    observation with the true kernel and ``x`` the reference; each of ``x̂`` and ``x̂_k``
    is aligned to the reference separately (:func:`align_to_reference`). A ratio of 1
    means the blind result is as good as knowing the kernel. Levin et al. plot the ratio
    of *squared* errors (``squared=True``; the square of the default value).

    Args:
        estimate: ``(B, C, H, W)`` blind estimate ``x̂`` in [0, 1].
        estimate_with_true_kernel: ``(B, C, H, W)`` true-kernel result ``x̂_k`` in [0, 1].
        reference: ``(B, C, H, W)`` sharp reference ``x`` in [0, 1].
        border, max_shift, step: as for :func:`align_to_reference`.
        squared: return the ratio of squared norms (Levin's plots) instead of norms.

    Returns:
        ``(B,)`` float32, unitless; ``inf`` where ``x̂_k`` matches the reference exactly
        (``nan`` if both do).
    """
    num = _aligned_sse(estimate, reference, border, max_shift, step)
    den = _aligned_sse(estimate_with_true_kernel, reference, border, max_shift, step)
    ratio = num / den
    return (ratio if squared else ratio.sqrt()).float()


def kernel_error(
    estimate_kernel: torch.Tensor,
    true_kernel: torch.Tensor,
    max_shift: float = LEVIN_MAX_SHIFT,
    step: float = LEVIN_STEP,
) -> torch.Tensor:
    """Shift-invariant kernel error: ``min over (dy, dx) of ‖shift(k̂; dy, dx) − k‖₂``.

    Exactly: both kernels are zero-padded, centred (top/left offset
    ``(size − own size) // 2``), to a common ``max(kh) × max(kw)`` canvas; then the
    estimate ``k̂`` is resampled by bilinear interpolation (zero outside its support) at
    every shift ``(dy, dx)`` on the ``step`` grid within ``±max_shift``, and the ℓ2 norm of
    its difference from ``k`` is taken over a canvas large enough to hold all of the
    shifted kernel (no mass is cut off). The least norm is returned. The kernels are used
    as given (not renormalised). A shift of the kernel is the counterpart of the image
    shift that :func:`align_to_reference` forgives, so it is forgiven here too; note that
    fractional shifts smooth ``k̂`` slightly (bilinear resampling), as they smooth the
    image in the image comparison.

    Args:
        estimate_kernel: ``(B, kh, kw)`` or ``(kh, kw)`` estimated kernel(s), non-negative,
            summing to 1.
        true_kernel: ``(B, kh', kw')`` or ``(kh', kw')`` true kernel(s); sizes may differ
            from the estimate's; a single kernel is compared with every kernel of the
            other argument.
        max_shift: largest shift tried on each axis, pixels.
        step: spacing of the shifts tried, pixels.

    Returns:
        ``(B,)`` float32, in kernel-value units (``B = 1`` when both are 2-D).
    """
    estimate, truth = _kernel_batch(estimate_kernel, "estimate_kernel"), _kernel_batch(true_kernel, "true_kernel")
    if estimate.shape[0] != truth.shape[0]:
        if estimate.shape[0] != 1 and truth.shape[0] != 1:
            raise ValueError(
                f"kernel batches differ: {tuple(estimate_kernel.shape)} vs {tuple(true_kernel.shape)}"
            )
        batch = max(estimate.shape[0], truth.shape[0])
        estimate, truth = estimate.expand(batch, -1, -1), truth.expand(batch, -1, -1)
    truth = truth.to(estimate.device)
    height = max(estimate.shape[-2], truth.shape[-2])
    width = max(estimate.shape[-1], truth.shape[-1])
    shifts = _shift_grid(max_shift, step)
    # ``pad`` ≥ largest shift + 1 bilinear tap: the target canvas (padded by ``pad``) then
    # holds every shifted estimate whole, and the source (padded by 2·pad) holds every
    # sample position, so zeros stand in for "outside the kernel" without any clamping.
    pad = math.ceil(shifts[-1] - _SNAP) + 1
    target = F.pad(_centre(truth, height, width), (pad,) * 4)[:, None]
    source = F.pad(_centre(estimate, height, width), (2 * pad,) * 4)[:, None]
    table = _sse_table(source, target, pad, shifts)
    return table.flatten(1).amin(dim=1).clamp_min(0).sqrt().float()


def _align(
    estimate: torch.Tensor, reference: torch.Tensor, border: int, max_shift: float, step: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 ``(aligned estimate crop, reference crop, shift)`` (see :func:`align_to_reference`)."""
    if estimate.ndim != 4 or estimate.shape != reference.shape:
        raise ValueError(
            f"estimate and reference must be (B, C, H, W) of one shape, "
            f"got {tuple(estimate.shape)} and {tuple(reference.shape)}"
        )
    if int(border) != border or border < 0:
        raise ValueError(f"border must be a non-negative integer, got {border}")
    border = int(border)
    height, width = estimate.shape[-2] - 2 * border, estimate.shape[-1] - 2 * border
    if height < 1 or width < 1:
        raise ValueError(f"border {border} leaves nothing of a {tuple(estimate.shape[-2:])} image")
    shifts = _shift_grid(max_shift, step)
    if shifts[-1] > border + _SNAP:
        raise ValueError(
            f"border ({border} px) must be at least the largest shift tried ({shifts[-1]} px), "
            "so that every shifted sample lies inside the estimate"
        )
    source = estimate.double()
    cropped = reference.double().to(source.device)[..., border : border + height, border : border + width]
    table = _sse_table(source, cropped, border, shifts)
    shift = _best_shift(table, shifts)
    return _sample(source, border, (height, width), shift), cropped, shift


def _aligned_sse(estimate, reference, border, max_shift, step) -> torch.Tensor:
    """Float64 ``(B,)`` sum of squared errors of the aligned crops."""
    aligned, cropped, _ = _align(estimate, reference, border, max_shift, step)
    return (aligned - cropped).square().flatten(1).sum(dim=1)


def _shift_grid(max_shift: float, step: float) -> list[float]:
    """The shifts tried on one axis, ascending: ``k·step`` for ``|k·step| ≤ max_shift``."""
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    if not max_shift >= 0:
        raise ValueError(f"max_shift must be non-negative, got {max_shift}")
    count = math.floor(max_shift / step + _SNAP)
    return [k * step for k in range(-count, count + 1)]


def _taps(positions: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps of sample positions along an axis of ``length`` pixels.

    Returns the lower index, the upper index and the weight of the upper one. Indices are
    clamped into the axis; callers keep positions inside it, so a clamp only ever touches
    a tap of weight 0 (a position exactly on the last pixel).
    """
    lower = torch.floor(positions + _SNAP)
    weight = (positions - lower).clamp(0.0, 1.0)
    lower = lower.long().clamp(0, length - 1)
    return lower, (lower + 1).clamp(max=length - 1), weight


def _sse_table(source: torch.Tensor, target: torch.Tensor, origin: int, shifts: list[float]) -> torch.Tensor:
    """Sum of squared errors of ``target`` against ``source`` sampled at every shift pair.

    Args:
        source: ``(N, C, Hs, Ws)`` float64 image that is shifted.
        target: ``(N, C, h, w)`` float64 window it is compared with; pixel ``(i, j)`` of
            the target faces ``source(origin + i + dy, origin + j + dx)``, bilinear.
        origin: offset of the target window in the source, pixels (both axes); callers
            keep every sample position inside the source.
        shifts: the shifts tried on each axis, pixels, ascending.

    Returns:
        ``(N, S, S)`` float64: entry ``[n, a, b]`` is the error at ``(shifts[a], shifts[b])``.
    """
    batch, channels, height, width = target.shape
    count = len(shifts)
    device = source.device
    table = source.new_empty(batch, count, count)
    window = target[:, :, None, None]  # (N, C, 1, 1, h, w)
    per_shift = batch * channels * height * width
    # A shift is an integer part plus a fractional phase (4 phases per axis at 0.25 px).
    # Interpolating the source once per phase pair leaves the integer parts as plain
    # slices, i.e. zero-copy views (``unfold``): each candidate then costs one subtraction
    # and one squared sum over the window, and the bilinear weights are applied 16 times
    # instead of once per candidate.
    for frac_y, index_y, whole_y in _phases(shifts):
        rows = _interpolate(source, 2, origin + whole_y[0], whole_y[-1] - whole_y[0] + height, frac_y)
        for frac_x, index_x, whole_x in _phases(shifts):
            phase = _interpolate(rows, 3, origin + whole_x[0], whole_x[-1] - whole_x[0] + width, frac_x)
            slides = phase.unfold(2, height, 1).unfold(3, width, 1)  # (N, C, my, mx, h, w) view
            errors = source.new_empty(batch, slides.shape[2], slides.shape[3])
            # Chunk the integer rows so the difference temporary stays under the budget.
            chunk = max(1, _CHUNK_ELEMENTS // (per_shift * slides.shape[3]))
            for y0 in range(0, slides.shape[2], chunk):
                difference = slides[:, :, y0 : y0 + chunk] - window
                errors[:, y0 : y0 + chunk] = difference.square_().sum(dim=(1, 4, 5))
            pick_y = torch.tensor([m - whole_y[0] for m in whole_y], device=device)
            pick_x = torch.tensor([m - whole_x[0] for m in whole_x], device=device)
            into_y = torch.tensor(index_y, device=device)
            into_x = torch.tensor(index_x, device=device)
            table[:, into_y[:, None], into_x[None, :]] = errors[:, pick_y[:, None], pick_x[None, :]]
    return table


def _phases(shifts: list[float]) -> list[tuple[float, list[int], list[int]]]:
    """Splits the shifts of one axis by fractional part.

    Returns one ``(fraction, indices, integer parts)`` per distinct fraction in [0, 1):
    ``shifts[indices[t]] == integer_parts[t] + fraction`` (ascending).
    """
    groups: dict[float, tuple[float, list[int], list[int]]] = {}
    for index, shift in enumerate(shifts):
        whole = math.floor(shift + _SNAP)
        fraction = shift - whole
        fraction = 0.0 if fraction < _SNAP else fraction  # 30 * 0.1 is 3 + 4e-16: a slice, not a blend
        entry = groups.setdefault(round(fraction, 9), (fraction, [], []))
        entry[1].append(index)
        entry[2].append(whole)
    return list(groups.values())


def _interpolate(image: torch.Tensor, dim: int, start: int, length: int, fraction: float) -> torch.Tensor:
    """``length`` samples along ``dim`` at ``start + t + fraction`` (linear, ``0 ≤ fraction < 1``).

    Same arithmetic as :func:`_sample`; a zero fraction is a plain slice (no upper tap, so
    a window that ends on the last pixel needs nothing beyond it).
    """
    lower = image.narrow(dim, start, length)
    if fraction == 0.0:
        return lower
    return (1 - fraction) * lower + fraction * image.narrow(dim, start + 1, length)


@functools.lru_cache(maxsize=16)
def _preference(shifts: tuple[float, ...]) -> list[int]:
    """Flat indices of the ``S × S`` shift table, smallest ``dy² + dx²`` first (tie-break)."""
    count = len(shifts)
    return sorted(
        range(count * count),
        key=lambda f: (shifts[f // count] ** 2 + shifts[f % count] ** 2, shifts[f // count], shifts[f % count]),
    )


def _best_shift(table: torch.Tensor, shifts: list[float]) -> torch.Tensor:
    """``(N, 2)`` float64 shift ``(dy, dx)`` of least error per image, on the table's device."""
    count = len(shifts)
    order = torch.tensor(_preference(tuple(shifts)), device=table.device)
    # argmin returns the first minimum, so ordering the candidates by preference makes
    # exact ties go to the smallest shift.
    best = order[table.flatten(1)[:, order].argmin(dim=1)]
    offsets = torch.tensor(shifts, dtype=torch.float64, device=table.device)
    return torch.stack([offsets[best // count], offsets[best % count]], dim=1)


def _sample(source: torch.Tensor, origin: int, size: tuple[int, int], shift: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` window of ``source`` at ``origin + shift[n]``, bilinear, per image.

    Same arithmetic as :func:`_sse_table` (rows first, then columns), so the chosen crop is
    the one whose error was measured.
    """
    batch, channels, source_h, source_w = source.shape
    height, width = size
    rows = origin + torch.arange(height, dtype=torch.float64, device=source.device) + shift[:, :1]  # (N, h)
    cols = origin + torch.arange(width, dtype=torch.float64, device=source.device) + shift[:, 1:]  # (N, w)
    row_lo, row_hi, row_w = _taps(rows, source_h)
    col_lo, col_hi, col_w = _taps(cols, source_w)

    def by_row(index):
        return source.gather(2, index[:, None, :, None].expand(batch, channels, height, source_w))

    weight = row_w[:, None, :, None]
    by_rows = (1 - weight) * by_row(row_lo) + weight * by_row(row_hi)

    def by_col(index):
        return by_rows.gather(3, index[:, None, None, :].expand(batch, channels, height, width))

    weight = col_w[:, None, None, :]
    return (1 - weight) * by_col(col_lo) + weight * by_col(col_hi)


def _kernel_batch(kernel: torch.Tensor, name: str) -> torch.Tensor:
    """``(B, kh, kw)`` float64 view of a ``(kh, kw)`` or ``(B, kh, kw)`` kernel."""
    if kernel.ndim not in (2, 3):
        raise ValueError(f"{name} must be (kh, kw) or (B, kh, kw), got {tuple(kernel.shape)}")
    kernel = kernel.double()
    return kernel[None] if kernel.ndim == 2 else kernel


def _centre(kernels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad ``(B, kh, kw)`` kernels to ``(B, height, width)``, centred (extra pixel at the bottom/right)."""
    top, left = (height - kernels.shape[-2]) // 2, (width - kernels.shape[-1]) // 2
    return F.pad(kernels, (left, width - kernels.shape[-1] - left, top, height - kernels.shape[-2] - top))
