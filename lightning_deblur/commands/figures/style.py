"""The figures' common look: size, resolution, labels of the columns, atomic PNG writing."""

from __future__ import annotations

from pathlib import Path

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import atomic_write


DPI = 150

LABELS = {
    "aligned_isnr": "ISNR, aligned (dB)",
    "aligned_psnr": "PSNR, aligned (dB)",
    "aligned_ssim": "SSIM, aligned",
    "psnr": "PSNR (dB)",
    "isnr": "ISNR (dB)",
    "kernel_error": "kernel error",
    "error_ratio": "error ratio",
    "wall_time_s": "wall time (s)",
}


def new_figure(width: float = 6.4, height: float = 4.0):
    """A matplotlib ``Figure`` (no pyplot); :class:`InputError` when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("matplotlib is needed for figures: pip install 'lightning-deblur[plots]'") from None
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure, output: str | Path) -> Path:
    """Write ``figure`` as a PNG atomically; return its path."""
    return atomic_write(output, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))
