"""Reading and writing images and kernels, and the checks on what the user hands us.

Pixel arrays are float64 numpy arrays in [0, 1]: ``(H, W)`` for grey, ``(H, W, 3)`` for
RGB. Files are written atomically (temporary name in the same folder, then rename), so
a killed job never leaves a half-written result.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lightning_deblur.core.colour import luminance
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.high_bit_depth import is_deep_colour, read_deep_colour, write_deep_colour_png


@dataclass
class LoadedImage:
    """An image file decoded to floats.

    Attributes:
        pixels: ``(H, W)`` or ``(H, W, 3)`` float64 in [0, 1].
        bit_depth: 8 or 16, the depth results are written back in.
        path: where it came from.
    """

    pixels: np.ndarray
    bit_depth: int
    path: Path

    @property
    def is_colour(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]


def read_image(path: str | os.PathLike, option: str = "--data.image") -> LoadedImage:
    """Decode a PNG, JPEG or TIFF file (8 or 16 bit, grey or RGB) to floats in [0, 1].

    EXIF orientation is applied; an alpha channel is dropped with a warning; palette and
    bilevel images are expanded.

    Raises:
        InputError: missing, unreadable or undecodable file (``option`` names the
            command-line option the path came from, for the message).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image file not found: '{path}'; check the path given to {option}")
    if path.is_dir():
        raise InputError(f"'{path}' is a folder, not an image file; give {option} a PNG, JPEG or TIFF file")
    try:
        if is_deep_colour(path):  # Pillow would decode these to 8 bits per channel
            return LoadedImage(read_deep_colour(path), 16, path)
    except OSError as error:
        raise InputError(f"cannot read '{path}' ({error}); check the file and its permissions") from None
    except Exception as error:  # noqa: BLE001 - pypng and tifffile raise many kinds on a damaged file
        raise InputError(
            f"'{path}' is damaged or not the image it claims to be ({str(error)[:200] or type(error).__name__}); "
            f"give {option} a whole PNG, JPEG or TIFF file"
        ) from None
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except Image.DecompressionBombError as error:
        raise InputError(
            f"'{path}' is too large to decode safely ({error}); downscale or crop it before deblurring"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"'{path}' is not an image that can be read; give {option} a PNG, JPEG or TIFF file") from None
    except OSError as error:
        raise InputError(f"cannot read '{path}' ({error}); check the file and its permissions") from None
    return LoadedImage(*_decode(image, path), path=path)


def read_grey(path: str | os.PathLike, option: str = "--data.image") -> torch.Tensor:
    """The luminance of an image file as a ``(1, 1, H, W)`` float64 tensor in [0, 1].

    Grey files as they are, colour ones as their BT.601 Y (:func:`~lightning_deblur.core.colour.luminance`),
    which is what jobs deblur and figures compare. ``option`` is as for :func:`read_image`.
    """
    return torch.from_numpy(np.ascontiguousarray(luminance(read_image(path, option).pixels)))[None, None]


def _decode(image: Image.Image, path: Path) -> tuple[np.ndarray, int]:
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        warnings.warn(f"'{path}': the alpha channel is dropped", stacklevel=3)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.float64) / 65535.0, 16
    if mode == "I":
        values = np.asarray(image, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise InputError(f"'{path}' holds 32-bit integer pixels; convert it to an 8- or 16-bit image")
        return values / 65535.0, 16
    if mode == "F":
        raise InputError(f"'{path}' holds floating-point pixels; convert it to an 8- or 16-bit image")
    if mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0, 8
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0, 8


def check_writable_folder(folder: str | os.PathLike, option: str) -> Path:
    """Create ``folder`` (with its parents) if need be and check that files can be made in
    it, so that a job refuses an unwritable output folder before any work, in one line.

    Raises:
        InputError: the folder cannot be created or written into (``option`` names where
            it came from, for the message).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(
            f"cannot write into '{folder}' ({error.strerror or error}); give {option} a folder you can write to"
        ) from None
    return folder


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` then rename the result onto ``path``.

    The temporary file lives in the destination folder, so the rename is atomic and a
    reader sees either the old file, or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        # mkstemp creates owner-only files; results get the usual permissions.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_csv(path: str | os.PathLike, required: Sequence[str], not_found: str, malformed: str) -> list[dict[str, str]]:
    """The rows of a CSV table with a header, as dicts of strings keyed by column.

    Args:
        path: the CSV file.
        required: columns the table must have.
        not_found: the message (problem and fix) when there is no such file.
        malformed: the message when the table has no rows or lacks a required column.

    Raises:
        InputError: with ``not_found`` or ``malformed``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(not_found)
    data = path.read_bytes()
    try:
        # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the first column's name.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(
            f"line {line} of '{path}' is not UTF-8 text (byte {data[error.start]:#04x}); save the table as UTF-8"
        ) from None
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows or any(column not in rows[0] for column in required):
        raise InputError(malformed)
    return rows


def write_csv(
    path: str | os.PathLike, fieldnames: Sequence[str], rows: Iterable[dict], line_end: str = "\n"
) -> Path:
    """Write a table as CSV, atomically (:func:`atomic_write`): a header of ``fieldnames``,
    then one line per row.

    Cells are written as ``str()`` of each value, so callers format numbers first; a key
    missing from a row is an empty cell. The whole text is built in memory, then written
    without newline translation, so the file holds exactly ``line_end`` on every platform.

    Args:
        path: the CSV file.
        fieldnames: the column names, in order.
        rows: one dict per row, keyed by column name.
        line_end: ``"\n"``, or ``"\r\n"`` (the csv module's default) for files that
            have always used it.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator=line_end, restval="")
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
    return atomic_write(path, lambda temporary: temporary.write_text(text, newline=""))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """Floats in [0, 1] -> uint8 or uint16, rounded to nearest."""
    peak, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    return np.round(np.clip(pixels, 0.0, 1.0) * peak).astype(dtype)


def write_image(path: str | os.PathLike, pixels: np.ndarray, bit_depth: int = 8) -> Path:
    """Write ``(H, W)`` or ``(H, W, 3)`` floats in [0, 1] as a PNG of the given bit depth."""
    values = quantize(pixels, bit_depth)
    if values.ndim == 3 and bit_depth == 16:
        return atomic_write(path, lambda temporary: write_deep_colour_png(temporary, values))
    return atomic_write(path, lambda temporary: Image.fromarray(values).save(temporary, format="PNG"))


def write_kernel_npy(path: str | os.PathLike, kernel: np.ndarray) -> Path:
    """Save a kernel as float32 ``.npy`` (physical orientation, sums to 1)."""
    kernel = np.asarray(kernel, dtype=np.float32)
    return atomic_write(path, lambda temporary: np.save(temporary, kernel))


def kernel_preview(kernel: np.ndarray, min_side: int = 256) -> np.ndarray:
    """A viewable picture of a kernel: scaled to its maximum, enlarged by nearest neighbour.

    Returns:
        uint8 ``(kh·f, kw·f)`` with ``f`` the smallest integer making the longer side at
        least ``min_side`` pixels.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    peak = kernel.max()
    scaled = kernel / peak if peak > 0 else kernel
    factor = max(1, -(-min_side // max(kernel.shape)))
    enlarged = np.kron(scaled, np.ones((factor, factor)))
    return quantize(enlarged, 8)


def write_kernel_png(path: str | os.PathLike, kernel: np.ndarray) -> Path:
    """Save :func:`kernel_preview` of ``kernel`` as an 8-bit PNG."""
    preview = kernel_preview(kernel)
    return atomic_write(path, lambda temporary: Image.fromarray(preview).save(temporary, format="PNG"))


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically; non-finite floats (a diverged
    loss) as ``null``, since JSON has no NaN or Infinity and strict readers refuse them."""
    text = json.dumps(finite_or_null(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def finite_or_null(value):
    """``value`` with every non-finite float in it (nested in dicts, lists, tuples) replaced by ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def read_kernel(path: str | os.PathLike, option: str = "--data.kernel") -> np.ndarray:
    """Load a kernel from ``.npy`` or an image file, normalized to sum 1 (float64)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"kernel file not found: '{path}'; check the path given to {option}")
    if path.suffix.lower() == ".npy":
        try:
            kernel = np.load(path).astype(np.float64)
        except (ValueError, OSError) as error:
            raise InputError(f"cannot read kernel '{path}' ({error}); give {option} a .npy array or an image") from None
    else:
        kernel = luminance(read_image(path, option).pixels)
    if kernel.ndim != 2 or not np.isfinite(kernel).all() or kernel.min() < 0 or kernel.sum() <= 0:
        raise InputError(
            f"'{path}' is not a kernel (a 2-D array of finite, non-negative values with a positive sum); "
            f"give {option} another file"
        )
    return kernel / kernel.sum()


def size_text(size: Sequence[int]) -> str:
    """``(kh, kw)`` as a manifest and the final line write it: ``27x31``."""
    return "x".join(str(side) for side in size)


def parse_kernel_size(
    kernel_size: int | str | Sequence[int], option: str = "--data.kernel_size", also: str = ""
) -> tuple[int, int]:
    """The one reading of a kernel size: ``27``, ``(kh, kw)``, or text (``"27"``, ``"27x31"``,
    ``"[27, 31]"``, ``"27,31"``: a manifest cell or a command-line value) -> ``(kh, kw)``,
    both odd and at least 3.

    Raises:
        InputError: even, too small, or not one or two integers (``option`` names where
            the value came from, for the message; ``also`` another value it takes, e.g. ``auto``).
    """
    if isinstance(kernel_size, str):
        parts = kernel_size.strip().strip("[]()").lower().replace(",", "x").replace(" ", "").split("x")
        if not 1 <= len(parts) <= 2 or not all(part.isdigit() for part in parts):
            examples = f"27, 27x31 or {also}" if also else "27 or 27x31"
            raise InputError(f"kernel size '{kernel_size}' is not one or two numbers; give {option} e.g. {examples}")
        kernel_size = tuple(int(part) for part in parts) if len(parts) == 2 else int(parts[0])
    sizes = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(sizes) != 2 or not all(isinstance(s, int) for s in sizes):
        raise InputError(f"kernel size {kernel_size!r} is not one or two integers; pass e.g. {option} 27 or '[27, 31]'")
    for side in sizes:
        if side < 3:
            raise InputError(f"kernel size {side} is too small; {option} must be an odd number of at least 3 pixels")
        if side % 2 == 0:
            raise InputError(
                f"kernel size {side} is even; {option} must be odd so the kernel has a centre pixel: use {side + 1}"
            )
    return sizes[0], sizes[1]


def check_job_sizes(
    image_size: tuple[int, int],
    kernel_size: tuple[int, int],
    min_support: int,
    levels: int,
    what: str = "image",
    enlarge: str = "a larger image",
) -> None:
    """Refuse image/kernel combinations the method cannot run on.

    Args:
        image_size: ``(H, W)`` of the observation, pixels.
        kernel_size: ``(kh, kw)``, pixels.
        min_support: smallest side of the estimated support the image net accepts.
        levels: the image net's level count (for the message).
        what: what ``image_size`` measures (``image``, ``kernel crop``, ``tile``), for the message.
        enlarge: the fix that makes it larger, for the message.

    Raises:
        InputError: kernel not smaller than the image, or support too small for the net.
    """
    (height, width), (kh, kw) = image_size, kernel_size
    if kh >= height or kw >= width:
        # 3 is the smallest kernel: past that, only a larger image helps.
        can_shrink = (kh >= height and kh > 3) or (kw >= width and kw > 3)
        fix = f"use a smaller --data.kernel_size or {enlarge}" if can_shrink else f"use {enlarge}"
        raise InputError(f"kernel {kh}×{kw} is not smaller than the {what} {height}×{width}; {fix}")
    support = (height + kh - 1, width + kw - 1)
    if min(support) < min_support:
        raise InputError(
            f"{what} {height}×{width} with kernel {kh}×{kw} gives a {support[0]}×{support[1]} estimate, but the image "
            f"net's {levels} levels need at least {min_support}×{min_support}; use {enlarge} or fewer levels "
            "(--model.image_net.levels)"
        )
