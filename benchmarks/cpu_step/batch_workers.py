"""Throughput of `batch` on CPU: the same tiny jobs with 1 worker and with 2 workers.

Eight jobs (4 small synthetic images × 2 seeds, the test suite's tiny net) run once with
``--devices 1`` (one job at a time, all cores to it) and once with ``--devices 2`` (two
jobs at once, the cores split between them), each into a fresh folder. Rounds alternate
between the two so that drift of a shared machine hits both alike; the script prints the
wall times and their ratio and saves them under results/ beside this script.

    .venv/bin/python benchmarks/cpu_step/batch_workers.py
    .venv/bin/python benchmarks/cpu_step/batch_workers.py --size 96 --iterations 100 --rounds 2

Most of a tiny job is process start-up (Python, PyTorch, Lightning), which a second
worker overlaps; larger images shift the balance towards the optimization itself.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import ROOT, save, write_text  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

from conftest import blur, gaussian_kernel, synthetic_sharp

from lightning_deblur.core.imagefiles import write_image


def make_inputs(folder: Path, count: int, size: int) -> Path:
    kernel = gaussian_kernel(5, 1.2)
    rows = ["name,image,kernel_size,sharp"]
    for number in range(count):
        support = synthetic_sharp(size + 4, size + 4, seed=number)
        write_image(folder / f"case{number}.png", blur(support, kernel))
        write_image(folder / f"case{number}_sharp.png", support[2:-2, 2:-2])
        rows.append(f"case{number},case{number}.png,5,case{number}_sharp.png")
    write_text(folder / "cases.csv", "\n".join(rows) + "\n")
    return folder / "cases.csv"


def run(manifest: Path, output: Path, devices: int, seeds: str, iterations: int) -> tuple[float, list[float]]:
    """Wall time of one batch (as a command, like a user runs it), and the optimization time of its jobs."""
    command = [
        sys.executable,
        "-m",
        "lightning_deblur",
        "batch",
        "--config",
        str(ROOT / "tests" / "conf" / "tiny.yaml"),
        "--manifest",
        str(manifest),
        "--output_dir",
        str(output),
        "--seeds",
        seeds,
        "--devices",
        str(devices),
        "--jobs_per_device",
        "1",
        "--model.iterations",
        str(iterations),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # let batch split the cores
        env.pop(name, None)
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with (output / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list(output.glob("*/seed*/metrics.json"))) and all(r["status"] == "done" for r in rows)
    return wall, [float(r["fit_time_s"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--seeds", default="0-1")
    parser.add_argument("--size", type=int, default=37, help="side of the square test images, pixels")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        manifest = make_inputs(folder, options.images, options.size)
        walls: dict[int, list[float]] = {1: [], 2: []}
        fits: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(options.rounds):
            order = (1, 2) if round_ % 2 == 0 else (2, 1)
            for devices in order:
                output = folder / f"out{round_}_{devices}"
                wall, fit_times = run(manifest, output, devices, options.seeds, options.iterations)
                walls[devices].append(wall)
                fits[devices].extend(fit_times)
                print(f"round {round_}: {devices} worker(s): {wall:.1f} s", flush=True)

    jobs = len(fits[1]) // options.rounds
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{jobs} jobs ({options.size}×{options.size}, {options.iterations} iterations, tiny net), {cores} cores:")
    for devices, wall in ((1, one), (2, two)):
        threads = max(1, cores // devices)
        print(
            f"  {devices} worker(s), {threads} threads per job: {wall:7.1f} s ({wall / jobs:.2f} s per job; "
            f"optimization alone {np.median(fits[devices]):.2f} s per job)"
        )
    print(f"  speed-up of 2 workers over 1: {one / two:.2f}×")
    path = save(
        f"batch_workers_{options.size}_{options.iterations}",
        {
            "jobs": jobs,
            "cores": cores,
            "size": options.size,
            "iterations": options.iterations,
            "rounds": options.rounds,
            "wall_s": {"1_worker": walls[1], "2_workers": walls[2]},
            "median_fit_time_s": {"1_worker": float(np.median(fits[1])), "2_workers": float(np.median(fits[2]))},
            "speedup_2_over_1": round(one / two, 3),
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
