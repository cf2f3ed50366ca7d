"""The manifest: a CSV listing a dataset's inputs, one row per blurred image.

``synth`` writes it, ``batch`` runs its rows, ``evaluate`` and ``figures`` score results
against it. Columns (header names; order free):

- ``image`` (required): the blurred image;
- ``kernel_size`` (required): ``27`` or ``27x31`` (height x width, odd, pixels), or
  ``auto`` (the job finds it: :mod:`~lightning_deblur.core.kernel_support`);
- ``name``: the input's name, also its folder name under a batch's output folder
  (default: the image's file stem);
- ``sharp``: the sharp reference (for PSNR/SSIM/ISNR);
- ``kernel``: the true kernel (``.npy`` or image; non-blind runs and kernel error);
- ``noise_std``, ``source_image``, ``source_kernel``: how ``synth`` made the row;
- ``max_kernel_size``: with ``kernel_size`` ``auto``, the largest size the job may choose
  (``41`` or ``41x41``; empty: the default bound).

Relative paths are relative to the manifest's folder; :func:`read_manifest` makes them
absolute. Other columns are allowed and ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import parse_kernel_size, read_csv, size_text, write_csv
from lightning_deblur.core.kernel_support import AUTO, is_automatic

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
"""Files taken as images when a folder is given instead of a list (lower-case suffixes)."""


@dataclass(frozen=True)
class ManifestRow:
    """One input of a dataset.

    Attributes:
        name: a plain folder name (no slash, no leading dot), unique in its manifest.
        image: path of the blurred image (absolute once read by :func:`read_manifest`).
        kernel_size: ``(kh, kw)``, odd, pixels; ``None`` for ``auto``.
        sharp: path of the sharp reference, or ``None``.
        kernel: path of the true kernel, or ``None``.
        noise_std: std of the noise ``synth`` added, on the [0, 1] scale, or ``None``.
        source_image: the sharp source ``synth`` cut the row from, or ``None``.
        source_kernel: the kernel file ``synth`` blurred it with, or ``None``.
        max_kernel_size: ``(kh, kw)`` bound of an automatic ``kernel_size``, or ``None``
            (the default bound).
    """

    name: str
    image: str
    kernel_size: tuple[int, int] | None
    sharp: str | None = None
    kernel: str | None = None
    noise_std: float | None = None
    source_image: str | None = None
    source_kernel: str | None = None
    max_kernel_size: tuple[int, int] | None = None

    @property
    def kernel_size_text(self) -> str:
        """``kernel_size`` as the manifest writes it: ``27x31``, or ``auto``."""
        return AUTO if self.kernel_size is None else size_text(self.kernel_size)


MANIFEST_FIELDS = [field.name for field in fields(ManifestRow) if field.name != "max_kernel_size"]
"""Columns of a written manifest, in order (and ``max_kernel_size`` where a row has one)."""

_PATH_COLUMNS = ("image", "sharp", "kernel")


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> Path:
    """Write ``rows`` as a manifest CSV, atomically (paths as given; ``None`` as an empty cell)."""
    cells = []
    for row in rows:
        values = {key: "" if value is None else value for key, value in asdict(row).items()}
        values["kernel_size"] = row.kernel_size_text
        values["max_kernel_size"] = "" if row.max_kernel_size is None else size_text(row.max_kernel_size)
        cells.append(values)
    bounded = any(row.max_kernel_size is not None for row in rows)
    if not bounded:
        for values in cells:
            del values["max_kernel_size"]
    return write_csv(path, MANIFEST_FIELDS + ["max_kernel_size"] * bounded, cells)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """The rows of a manifest, checked, with paths made absolute.

    Raises:
        InputError: no such file; no ``image`` or ``kernel_size`` column; a row without
            either; a bad kernel size; a name that cannot be a folder name; two rows
            with one name.
    """
    path = Path(path)
    cells = read_csv(
        path,
        ("image", "kernel_size"),
        f"manifest '{path}' not found; make one with `python -m lightning_deblur synth` or by hand",
        f"manifest '{path}' needs a header with at least the columns image and kernel_size",
    )
    rows = []
    for number, cell in enumerate(cells, start=2):  # line 1 is the header
        where = f"line {number} of {path}"
        if not cell.get("image") or not cell.get("kernel_size"):
            raise InputError(f"{where} has no image or no kernel_size; every row needs both")
        located = {
            column: str(_absolute(cell[column], path.parent)) for column in _PATH_COLUMNS if cell.get(column)
        }
        noise = cell.get("noise_std")
        kernel_size = parse_row_kernel_size(cell["kernel_size"], f"the kernel_size on {where}")
        bound = cell.get("max_kernel_size")
        if bound and kernel_size is not None:
            raise InputError(f"{where} gives a max_kernel_size with a kernel_size of its own; set its kernel_size to auto")
        rows.append(
            ManifestRow(
                name=check_name(cell.get("name") or Path(cell["image"]).stem, where),
                image=located["image"],
                kernel_size=kernel_size,
                sharp=located.get("sharp"),
                kernel=located.get("kernel"),
                noise_std=_number(noise, f"the noise_std on {where}") if noise else None,
                source_image=cell.get("source_image") or None,
                source_kernel=cell.get("source_kernel") or None,
                max_kernel_size=parse_kernel_size(bound, f"the max_kernel_size on {where}") if bound else None,
            )
        )
    return check_unique(rows, f"give every row of the manifest '{path}' its own name (the name column)")


def rows_from_folder(folder: str | Path, kernel_size: str | int, option: str = "--images") -> list[ManifestRow]:
    """Every image of ``folder`` (PNG, JPEG, TIFF; not recursive) as a row, all with one kernel
    size; ``folder`` may also be one image file (one photo, e.g. for ``batch --members``).

    Names are the file stems; rows are sorted by file name; paths are absolute.
    """
    folder = Path(folder)
    one_image = folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES
    if not folder.is_dir() and not one_image:
        raise InputError(
            f"{option} '{folder}' is not a folder or an image file; give a folder of images, a PNG, JPEG or "
            "TIFF file, or use --manifest"
        )
    size = parse_row_kernel_size(kernel_size, "--kernel_size")
    files = [folder] if one_image else sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    rows = [ManifestRow(name=check_name(p.stem, str(p)), image=str(p.resolve()), kernel_size=size) for p in files]
    return check_unique(rows, f"rename the files in {folder} or list them in a manifest with distinct names")


def parse_row_kernel_size(text: str | int, option: str) -> tuple[int, int] | None:
    """A row's kernel size: ``(kh, kw)``, or ``None`` for ``auto`` (see :func:`parse_kernel_size`)."""
    if is_automatic(text):
        return None
    return parse_kernel_size(text, option, also=AUTO)


def check_name(name: str, where: str) -> str:
    """``name`` if it can be a folder name (results go to ``<output>/<name>/``), else :class:`InputError`."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(
            f"input name '{name}' ({where}) cannot be a folder name; "
            "give it a plain name without slashes or a leading dot"
        )
    return name


def check_unique(rows: list[ManifestRow], fix: str) -> list[ManifestRow]:
    """``rows`` if no two share a name, else :class:`InputError` naming both and ``fix``."""
    seen: dict[str, ManifestRow] = {}
    for row in rows:
        if row.name in seen:
            raise InputError(f"two inputs are named '{row.name}' ({seen[row.name].image}, {row.image}); {fix}")
        seen[row.name] = row
    return rows


def _absolute(value: str, folder: Path) -> Path:
    return Path(value) if Path(value).is_absolute() else (folder / value).resolve()


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{what} '{text}' is not a number; give e.g. 0.01 or leave it empty") from None
