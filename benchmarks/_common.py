"""Helpers shared by the benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(os.environ.get("LIGHTNING_DEBLUR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def machine() -> dict:
    """What the figures were measured on."""
    info = {
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    return info


def save(name: str, payload: dict, folder: Path = RESULTS) -> Path:
    """Write ``payload`` plus the machine description to ``<folder>/<name>.json``
    (``benchmarks/results/`` unless a run elsewhere, e.g. a lent GPU machine, says otherwise)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path


def write_report(description: str, report, default_output: Path) -> None:
    """The command line of an evidence script: ``report()`` (Markdown text) written to
    ``--output`` (default ``default_output``) and printed."""
    import argparse

    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=default_output)
    args = parser.parse_args()
    text = report()
    args.output.write_text(text)
    print(text)
