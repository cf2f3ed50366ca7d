"""16-bit colour PNG and TIFF files, which Pillow decodes to 8 bits per channel.

Pillow keeps 16-bit *grey* images at full depth, but turns 48-bit RGB (and 64-bit RGBA)
into 8-bit RGB, losing the low byte a 16-bit photo was saved for. These files are read
with pypng (PNG) and tifffile (TIFF) instead, and 16-bit colour results are written with
pypng. Orientation metadata (EXIF / TIFF orientation) is read with Pillow, which reads
the tags of such files correctly, and applied to the array as Pillow's
``ImageOps.exif_transpose`` would.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import png
import tifffile
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
EXIF_ORIENTATION = 0x0112

PNG_COLOUR_TYPES_WITH_CHANNELS = {2: "RGB", 4: "grey + alpha", 6: "RGBA"}
"""PNG colour types that Pillow reduces to 8 bits at bit depth 16 (type 0, grey, it keeps)."""


def is_deep_colour(path: Path) -> bool:
    """Whether ``path`` is a 16-bit PNG or TIFF with more than one channel."""
    with open(path, "rb") as handle:
        head = handle.read(33)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        bit_depth, colour_type = head[24], head[25]
        return bit_depth == 16 and colour_type in PNG_COLOUR_TYPES_WITH_CHANNELS
    if head[:4] in TIFF_SIGNATURES:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            return page.bitspersample == 16 and page.samplesperpixel > 1 and page.dtype == np.uint16
    return False


def read_deep_colour(path: Path) -> np.ndarray:
    """Decode a file :func:`is_deep_colour` accepts.

    Returns:
        ``(H, W, 3)`` RGB, or ``(H, W)`` for grey + alpha, float64 in [0, 1]; any alpha
        channel is dropped with a warning; the EXIF orientation is applied.
    """
    with open(path, "rb") as handle:
        is_png = handle.read(8) == PNG_SIGNATURE
    if is_png:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        values = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    else:
        values = tifffile.imread(path)
        if values.ndim == 3 and values.shape[0] in (3, 4) and values.shape[-1] not in (3, 4):
            values = np.moveaxis(values, 0, -1)  # planar storage
        planes = values.shape[-1]
    if planes in (2, 4):
        warnings.warn(f"'{path}': the alpha channel is dropped", stacklevel=3)
        values = values[..., : planes - 1]
    if values.shape[-1] == 1:
        values = values[..., 0]
    return orient(values.astype(np.float64) / 65535.0, exif_orientation(path))


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of the file (1 when absent or unreadable)."""
    try:
        with Image.open(path) as image:
            return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, ValueError, struct.error):
        return 1


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to ``(H, W, ...)`` pixels, as Pillow's
    ``ImageOps.exif_transpose`` does for the images it decodes."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    transform = transforms.get(orientation)
    return pixels if transform is None else np.ascontiguousarray(transform(pixels))


def write_deep_colour_png(path: Path, values: np.ndarray) -> None:
    """Write ``(H, W, 3)`` uint16 as a 48-bit RGB PNG."""
    height, width, _ = values.shape
    writer = png.Writer(width=width, height=height, greyscale=False, bitdepth=16)
    with open(path, "wb") as handle:
        writer.write(handle, values.reshape(height, width * 3))
