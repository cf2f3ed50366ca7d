"""Helpers shared by the studies under benchmarks/: paths, machine description, result files.

Each study is one folder (its scripts, a README, its result files under ``results/``);
the studies import this module and nothing of each other.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from lightning_deblur.commands.batch.summary import read_json_object, stopped_before_its_end
from lightning_deblur.core.imagefiles import atomic_write
from lightning_deblur.core.provenance import code_commit, cpu_features, cpu_name, cpu_tier

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
"""Banked run folders, read by several studies (the full-fidelity bank, its held-out seeds, Levin 255×255)."""
BANK, HELDOUT = RESULTS / "full_fidelity_bank", RESULTS / "full_fidelity_heldout"
PROTOCOL = ROOT / "benchmarks" / "protocols" / "full_fidelity"
DATA = Path(os.environ.get("LIGHTNING_DEBLUR_DATA", ROOT.parent / "shared" / "data"))


def study_results() -> Path:
    """``results/`` beside the running study script (where its result files are kept)."""
    main = sys.modules["__main__"]
    return Path(getattr(main, "__file__", sys.argv[0])).resolve().parent / "results"


def fit_into(config: Path, folder: Path, name: str, *extra: str, code: Path = ROOT, quiet: bool = False) -> int:
    """``python -m lightning_deblur fit --config config`` run from the checkout ``code`` into
    the run folder ``folder/name`` (logger name left empty), with ``extra`` options; its exit
    code. ``quiet`` drops the job's progress lines from stdout."""
    command = [
        sys.executable, "-W", "ignore", "-m", "lightning_deblur", "fit", "--config", str(config),
        "--trainer.logger.init_args.save_dir", str(folder), "--trainer.logger.init_args.name", "",
        "--trainer.logger.init_args.version", name, *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=code, stdout=subprocess.DEVNULL if quiet else None).returncode


def banked_methods(root: Path) -> list[str]:
    """The method folders under a bank root that hold runs ``evaluate`` scores (a metrics.json
    that does not say stopped), sorted by name."""
    def scored(metrics: Path) -> bool:
        return not stopped_before_its_end(read_json_object(metrics))

    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and any(map(scored, p.glob("*/seed*/metrics.json"))))


def kernel_signals(k: torch.Tensor) -> dict:
    """Border/peak ratio, peak (of the normalized kernel), ‖k‖² and spread of a ``(kh, kw)``
    kernel. The spread is the root mean squared distance of the kernel's mass from its
    centroid over half the support's mean side: about 0.4–0.7 for the protocol's true
    kernels, near 0 for a delta (the no-blur solution)."""
    from lightning_deblur.core.centring import border_ratio

    mass = k / k.sum()
    rows, columns = torch.meshgrid(*(torch.arange(side, dtype=mass.dtype) for side in mass.shape), indexing="ij")
    centre_row, centre_column = (mass * rows).sum(), (mass * columns).sum()
    radius = torch.sqrt((mass * ((rows - centre_row) ** 2 + (columns - centre_column) ** 2)).sum())
    return {
        "kernel_border": border_ratio(k),
        "kernel_peak": float(mass.max()),
        "kernel_l2": float((k**2).sum()),
        "kernel_spread": float(radius / (sum(mass.shape) / 4)),
    }


def final_signals_of(run: dict) -> dict:
    """The signals of one bank run's results (what a finished job returns)."""
    import numpy as np

    from lightning_deblur.core.imagefiles import read_image
    from lightning_deblur.core.physics import blur_valid
    from lightning_deblur.core.verdict import gradient_energy, relative_gradient_sparsity

    folder = ROOT / run["run_dir"]
    x = torch.from_numpy(read_image(folder / "deblurred.png").pixels).double()[None, None]
    k = torch.from_numpy(np.load(folder / "kernel.npy")).double()
    y = torch.from_numpy(read_image(PROTOCOL / "blurred" / f"{run['input']}.png").pixels).double()[None, None]
    kh, kw = k.shape
    reblurred = blur_valid(x, k)  # the result taken as the support of the valid blur's inner part
    inner = y[..., kh // 2 : kh // 2 + reblurred.shape[-2], kw // 2 : kw // 2 + reblurred.shape[-1]]
    return {
        **kernel_signals(k),
        "data_mse": float(((reblurred - inner) ** 2).mean()),
        "sharpness_gain": float(gradient_energy(x) / gradient_energy(y)),
        "gradient_sparsity": relative_gradient_sparsity(x, y),
    }


def time_blur(method: str, x, k, repeats: int) -> float:
    """Median time of a valid blur, forward + backward, after two warm-up calls."""
    from lightning_deblur.core.physics import blur_valid

    times = []
    for _ in range(repeats + 2):
        x.grad, k.grad = None, None
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        blur_valid(x, k, method=method).square().sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def machine() -> dict:
    """What the figures were measured on."""
    info = {
        "host": socket.gethostname(),
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "code": code_commit(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def cpu_label(model: str) -> str:
    """A CPU model name without its trademark marks and filler words, for tables:
    ``'Intel(R) Xeon(R) Processor'`` → ``'Intel Xeon'``."""
    return " ".join(re.sub(r"\((r|tm)\)|\bprocessor\b|\bcpu\b", " ", model, flags=re.IGNORECASE).split())


def cpu_slug() -> str:
    """This CPU's :func:`cpu_label` and its most capable vector extension
    (:func:`~lightning_deblur.core.provenance.cpu_tier`) for a result file's name, since one model
    name can cover CPUs of unlike speed: ``'Intel(R) Xeon(R) Processor'`` with AMX →
    ``'intel-xeon-amx-bf16'``, ``'AMD EPYC'`` without AVX-512 → ``'amd-epyc-avx2'``."""
    return "-".join(re.findall(r"[a-z0-9]+", f"{cpu_label(cpu_name())} {cpu_tier(cpu_features())}".lower()))


def machine_slug() -> str:
    """The device that measured, for a result file's name: the GPU where one is visible
    (``'NVIDIA H200'`` → ``'h200'``), else :func:`cpu_slug`."""
    if torch.cuda.is_available():
        return "-".join(re.findall(r"[a-z0-9]+", torch.cuda.get_device_name().lower().replace("nvidia", "")))
    return cpu_slug()


def write_text(path: Path, text: str) -> Path:
    """Write a result file whole or not at all (:func:`atomic_write`): a study stopped
    mid-write leaves its previous file, never a truncated one."""
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def save(name: str, payload: dict, folder: Path | None = None, measured_here: bool = True) -> Path:
    """Write ``payload`` plus the machine description to ``<folder>/<name>_<machine>.json``
    (the study's ``results/`` unless a run elsewhere, e.g. a lent GPU machine, says otherwise).

    ``measured_here``: the figures depend on the machine (times, or runs whose trajectories
    differ between CPUs), so its :func:`machine_slug` ends the name and a run on another
    machine never overwrites this one; ``False`` for analyses of committed files only,
    which any machine reproduces: ``<name>.json``."""
    folder = Path(folder) if folder is not None else study_results()
    machine_name = machine_slug() if measured_here else ""
    if machine_name and not name.endswith(f"_{machine_name}"):
        name = f"{name}_{machine_name}"
    text = json.dumps({"machine": machine(), **payload}, indent=2) + "\n"
    return write_text(folder / f"{name}.json", text)


def write_report(description: str, report, default_output: Path) -> None:
    """The command line of an evidence script: ``report()`` (Markdown text) written to
    ``--output`` (default ``default_output``) and printed."""
    import argparse

    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=default_output)
    args = parser.parse_args()
    text = report()
    write_text(args.output, text)
    print(text)
