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


CPUINFO = Path("/proc/cpuinfo")
"""Where Linux describes the processor; elsewhere the figures below fall back or are unknown."""

VECTOR_EXTENSIONS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
"""The x86 extensions that decide which kernels oneDNN and ATen run: they set a CPU's speed
and, through the order of the sums, its trajectories, and bf16 is native only with the last
two. One model name can hide several of these tiers (``AMD EPYC`` with and without AVX-512)."""


def _cpuinfo_field(name: str) -> str | None:
    """The first processor's ``name`` field in :data:`CPUINFO`, or ``None`` where unreadable."""
    try:
        with open(CPUINFO) as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else what the platform says),
    e.g. ``AMD EPYC 7B13``."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_features() -> list[str] | None:
    """Those of :data:`VECTOR_EXTENSIONS` the CPU has, in that order: ``['avx2']`` on an AMD
    EPYC without AVX-512, ``['avx2', 'avx512f', 'avx512_bf16', 'amx_bf16']`` on an Intel Xeon
    with AMX, ``[]`` on a CPU with none of them (ARM, whose list is called ``Features``);
    ``None`` where no list is readable."""
    flags = _cpuinfo_field("flags") or _cpuinfo_field("Features")
    if flags is None:
        return None
    present = set(flags.split())
    return [extension for extension in VECTOR_EXTENSIONS if extension in present]


def cpu_tier(features: list[str] | None) -> str:
    """The most capable of ``features`` for a label or a file name: ``'amx_bf16'``,
    ``'avx512_bf16'``, ``'avx512f'``, ``'avx2'``; ``''`` where none or unknown."""
    return features[-1] if features else ""


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
    (torch's intra-op threads, ``OMP_NUM_THREADS`` where set), ``cpu_features`` (see
    :func:`cpu_features`). Asked once per process."""
    return {
        "lightning_deblur": __version__,
        "code": code_commit(),
        "torch": library_version("torch"),
        "lightning": library_version("lightning"),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_features": cpu_features(),
    }
