"""What a result was made with: this package's version and commit, the libraries that
compute it, and the processor. The same seed gives different trajectories on different
CPUs and library versions, and with another number of CPU threads (the sums run in
another order), so a figure is only comparable with these beside it.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from lightning_deblur.core.version import __version__

CHECKOUT = Path(__file__).resolve().parents[2]
"""The folder holding the package: a git checkout when run from a clone."""


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else what the platform says),
    e.g. ``AMD EPYC 7B13``."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_commit() -> dict | None:
    """``{"commit": sha, "modified": bool}`` of the checkout the package runs from, or
    ``None`` outside a git checkout (an installed wheel) or without git. ``modified``:
    tracked files differ from the commit, so the commit alone does not reproduce the run."""
    if not (CHECKOUT / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified": bool(changes.strip())}


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def provenance() -> dict:
    """metrics.json's ``software``: ``lightning_deblur`` (version), ``code`` (see
    :func:`code_commit`), ``torch``, ``lightning``, ``python``, ``cpu`` and ``cpu_threads``
    (torch's intra-op threads, ``OMP_NUM_THREADS`` where set). Asked once per process."""
    return {
        "lightning_deblur": __version__,
        "code": code_commit(),
        "torch": library_version("torch"),
        "lightning": library_version("lightning"),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
    }
