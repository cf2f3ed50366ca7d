"""The package's own files: the example images shipped in ``lightning_deblur/examples``
(``example:NAME`` wherever a path is asked for) and, in a source checkout, the project
folder around the package (its ``configs/``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lightning_deblur.core.errors import InputError


EXAMPLE_PREFIX = "example:"
"""Paths starting with this name a file shipped in ``lightning_deblur/examples``."""


def resolve_path(path: str) -> Path:
    """Turn ``example:NAME`` into the bundled file's path; other paths are returned as given."""
    if path.startswith(EXAMPLE_PREFIX):
        name = path[len(EXAMPLE_PREFIX) :]
        bundled = Path(str(resources.files("lightning_deblur") / "examples" / name))
        if not bundled.is_file():
            available = sorted(p.name for p in bundled.parent.iterdir() if not p.name.startswith(("_", ".")))
            raise InputError(f"no bundled example '{name}'; choose one of {', '.join(available)}")
        return bundled
    return Path(path)


def source_checkout() -> Path | None:
    """The project folder the package runs from (the one holding ``pyproject.toml`` and
    ``configs/``), or ``None`` for an installed package."""
    root = Path(str(resources.files("lightning_deblur"))).resolve().parent
    return root if (root / "pyproject.toml").is_file() else None
