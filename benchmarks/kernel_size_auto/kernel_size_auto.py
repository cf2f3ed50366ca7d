"""Does ``--data.kernel_size auto`` choose well? Chosen size against the true one, and
quality and cost against the same job given the true size and given twice the true size.

Subcommands:

- ``shake``: draw random camera-shake kernels (sizes 9-31) and make the synthetic set
  from them with ``synth`` (Kodak, 256x256, 1 % noise, image i with kernel i).
- ``run``: for every input of a protocol, one job per arm (``true``: the manifest's size;
  ``double``: twice it, made odd; ``auto``), one input at a time so arms stay paired;
  each job is a one-row ``batch`` (resumable: a finished job is skipped, a killed one
  resumes from its checkpoint).
- ``probes``: the probe alone (``--trainer.max_steps`` at its end) on every input of a
  protocol: the size it chooses, for the price of the probe; with the papers' configs
  this measures their choice without their whole jobs.
- ``measures``: the probe's extent measure against alternatives, recomputed from every
  probe's saved kernel (``scales/probe_kernel.npy``) and from the true kernels; writes
  ``results/<study>/measures.md``.
- ``table``: every finished run's chosen size, aligned ISNR and wall time, per protocol
  and arm, with the paired differences; writes ``results/<study>/table.md`` and ``.json``.

Run from the repository root, e.g.::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kernel_size_auto/kernel_size_auto.py run \\
        --protocol benchmarks/protocols/levin8_true_sizes_manifest.csv --config configs/fast.yaml
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import DATA, RESULTS, ROOT, machine, write_text  # noqa: E402

from lightning_deblur.core.kernel_support import KernelProbeSpec, centred_extent, size_from_extent  # noqa: E402
from lightning_deblur.core.manifest import read_manifest, write_manifest  # noqa: E402
from lightning_deblur.core.resample import odd_size, resize_kernel  # noqa: E402

STUDY = RESULTS / "kernel_size_auto"
ARMS = ("true", "double", "auto")
SHAKE_SIZES = (9, 13, 15, 19, 23, 25, 29, 31)


def shake_path(rng: np.random.Generator, steps: int = 400) -> np.ndarray:
    """``(steps, 2)`` positions of a random camera-shake path, sampled at equal times: a
    random walk of the velocity (Gaussian steps, now and then a jerk), so slow stretches
    collect more of the exposure."""
    velocity = rng.normal(size=2)
    points = [np.zeros(2)]
    for _ in range(steps - 1):
        velocity = 0.9 * velocity + rng.normal(scale=0.3, size=2)
        if rng.random() < 0.02:
            velocity += rng.normal(scale=2.0, size=2)
        points.append(points[-1] + 0.1 * velocity)
    return np.array(points)


def render(path: np.ndarray, size: int) -> np.ndarray:
    """The path splatted bilinearly onto a ``size x size`` support with its centre of mass
    at the support's centre (pixel-exact up to the splat), summing to 1."""
    points = path - path.mean(axis=0) + (size - 1) / 2
    weights = np.zeros((size + 1, size + 1))
    for y, x in points:
        top, left = int(math.floor(y)), int(math.floor(x))
        fy, fx = y - top, x - left
        for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (1, 0, fy * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 1, fy * fx)):
            weights[top + dy, left + dx] += w
    kernel = weights[:size, :size]
    return kernel / kernel.sum()


def shake_kernel(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random camera-shake kernel that fills a ``size x size`` support about its centre
    of mass: the path is scaled until its farthest point from the centre of mass lies
    within the support's half-width, less one pixel for the splat."""
    path = shake_path(rng)
    path = path - path.mean(axis=0)
    reach = np.abs(path).max()
    path *= ((size - 1) / 2 - 1) / max(reach, 1e-9)
    return render(path, size)


def make_shake(args) -> None:
    rng = np.random.default_rng(args.seed)
    protocol = ROOT / args.protocol
    kernels = protocol / "source_kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    for index, size in enumerate(SHAKE_SIZES, start=1):
        np.save(kernels / f"shake{index}_{size}.npy", shake_kernel(size, rng).astype(np.float32))
    subprocess.run(
        [sys.executable, "-m", "lightning_deblur", "synth", "--images", str(DATA / "kodak"), "--kernels", str(kernels),
         "--output_dir", str(protocol), "--size", "256", "--pairs", "diagonal", "--noise_std", "0.01",
         "--seed", "0"],
        check=True, cwd=ROOT,
    )  # fmt: skip


def protocol_label(protocol: Path) -> str:
    """A protocol's name in folder names: the manifest's stem, or its folder's name for a
    ``manifest.csv`` (``shake256``, ``kodak256``)."""
    return protocol.parent.name if protocol.stem == "manifest" else protocol.stem


def arm_row(row, arm: str):
    """The manifest row an arm runs: the true size, twice it (odd), or ``auto``."""
    if arm == "true":
        return row
    if arm == "double":
        return replace(row, kernel_size=tuple(2 * side + 1 for side in row.kernel_size))
    return replace(row, kernel_size=None)


def run(args, extra: list[str]) -> int:
    protocol = Path(args.protocol).resolve()
    rows = read_manifest(protocol)
    if args.inputs:
        rows = [row for row in rows if row.name in args.inputs.split(",")]
    study = Path(args.root) / f"{protocol_label(protocol)}_{Path(args.config).stem}_seed{args.seed}"
    code = 0
    for row in rows:
        for arm in args.arms.split(","):
            folder = study / arm
            manifest = write_manifest(folder / "manifests" / f"{row.name}.csv", [arm_row(row, arm)])
            command = [
                sys.executable, "-W", "ignore", "-m", "lightning_deblur", "batch", "--config", str(Path(args.config).resolve()),
                "--manifest", str(manifest), "--output_dir", str(folder), "--seeds", str(args.seed), "--devices", "1",
                "--jobs_per_device", "1", "--image_logging.every_n_steps", "0", "--curve.every_n_steps", "100",
                "--trainer.precision", args.precision, *extra,
            ]  # fmt: skip
            print(f"=== {row.name} {arm}", flush=True)
            code = max(code, subprocess.run(command, cwd=ROOT).returncode)
    return code


def probes(args, extra: list[str]) -> int:
    """One probe-only ``fit`` per input (skipped where it has chosen its size)."""
    protocol = Path(args.protocol).resolve()
    config = Path(args.config).resolve()
    folder = Path(args.root) / "probes" / f"{protocol_label(protocol)}_{config.stem}_seed{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "protocol.txt", str(protocol.relative_to(ROOT)) + "\n")  # for the table's true sizes
    code = 0
    for row in read_manifest(protocol):
        metrics_file = folder / row.name / "metrics.json"
        if metrics_file.is_file() and "kernel_size_choice" in json.loads(metrics_file.read_text()):
            continue
        shutil.rmtree(folder / row.name, ignore_errors=True)  # a probe stopped before its end starts over
        command = [
            sys.executable, "-W", "ignore", "-m", "lightning_deblur", "fit", "--config", str(config),
            "--data.image", row.image, "--data.kernel_size", "auto", "--seed_everything", str(args.seed),
            "--trainer.max_steps", str(args.steps), "--trainer.precision", args.precision,
            "--trainer.logger.init_args.save_dir", str(folder), "--trainer.logger.init_args.name", "",
            "--trainer.logger.init_args.version", row.name, "--image_logging.every_n_steps", "0",
            "--checkpoint.every_n_steps", "0", *extra,
        ]  # fmt: skip
        print(f"=== probe {row.name}", flush=True)
        code = max(code, subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL).returncode)
    return code


def probe_table(root: Path) -> list[str]:
    """Chosen against true size for every probe-only run under ``root/probes``."""
    lines = []
    for folder in sorted((root / "probes").glob("*")):
        rows = []
        truth = {row.name: row.kernel_size for row in read_manifest(ROOT / (folder / "protocol.txt").read_text().strip())}
        for metrics_file in sorted(folder.glob("*/metrics.json")):
            metrics = json.loads(metrics_file.read_text())
            choice = metrics.get("kernel_size_choice")
            if choice is None:
                continue
            rows.append((metrics_file.parent.name, truth[metrics_file.parent.name], choice))
        if not rows:
            continue
        lines += [f"## probes: {folder.name}", "", "| input | true size | chosen | chosen / true | probe extent (probe px) |", "|---|---|---|---|---|"]
        ratios = []
        for name, true, choice in rows:
            chosen = choice["kernel_size"]
            ratio = max(chosen) / max(true)
            ratios.append(ratio)
            lines.append(f"| {name} | {true[0]}x{true[1]} | {chosen[0]}x{chosen[1]} | {ratio:.2f} | {choice['probe_extent'][0]:.1f}x{choice['probe_extent'][1]:.1f} |")
        ratios = np.array(ratios)
        lines += ["", f"{len(rows)} inputs: chosen / true {ratios.mean():.2f} on average ({ratios.min():.2f}-{ratios.max():.2f}); "
                  f"{int((ratios < 1).sum())} below the true size", ""]
    return lines


def mass_extent(k: np.ndarray, share: float) -> tuple[float, float]:
    """Side in pixels of the smallest square centred on the kernel's centre of mass that
    holds ``share`` of its mass (both axes: the same side), the alternative measure."""
    weights = np.clip(k, 0, None)
    weights = weights / weights.sum()
    rows, cols = np.indices(k.shape)
    radius = np.maximum(np.abs(rows - (weights * rows).sum()), np.abs(cols - (weights * cols).sum())).ravel()
    order = np.argsort(radius)
    reach = radius[order][np.searchsorted(np.cumsum(weights.ravel()[order]), share)]
    return 2 * reach + 1, 2 * reach + 1


MEASURES = {
    "peak share 0.15 (shipped)": lambda k: centred_extent(torch.from_numpy(k), KernelProbeSpec.threshold),
    "peak share 0.25": lambda k: centred_extent(torch.from_numpy(k), 0.25),
    "80 % of the mass": lambda k: mass_extent(k, 0.8),
    # The same without the faint floor a generator spreads over its support: how much of
    # the mass measure's fit is the floor, whose share grows with the support's area.
    "80 % of the mass above 2 % of the peak": lambda k: mass_extent(np.where(k >= 0.02 * k.max(), k, 0), 0.8),
}


def measures(args) -> None:
    """Each measure's chosen / true size over each folder of probes (a protocol, a method,
    a variant), and on the true kernels themselves (what a probe that found the truth
    would get)."""
    def table_row(label: str, ratios: dict[str, list[float]]) -> str:
        cells = []
        for values in map(np.array, ratios.values()):
            cells.append(
                f"{values.mean():.2f} ({values.min():.2f}-{values.max():.2f}), |log| {np.abs(np.log(values)).mean():.2f}, "
                f"{int((values < 0.8).sum())} < 0.8, {int((values > 1.4).sum())} > 1.4"
            )
        inputs = len(next(iter(ratios.values())))  # every measure saw the same kernels
        return f"| {label} | {inputs} | " + " | ".join(cells) + " |"

    lines = ["| probes | inputs | " + " | ".join(MEASURES) + " |", "|---|---|" + "---|" * len(MEASURES)]
    for folder in sorted(p.parent for p in (STUDY / "probes").glob("*/protocol.txt")):
        manifest = ROOT / (folder / "protocol.txt").read_text().strip()
        rows = {row.name: row for row in read_manifest(manifest)}
        ratios = {name: [] for name in MEASURES}
        for kernel_file in sorted(folder.glob("*/scales/probe_kernel.npy")):
            metrics = json.loads((kernel_file.parents[1] / "metrics.json").read_text())
            choice = metrics["kernel_size_choice"]
            row = rows[kernel_file.parents[1].name]
            with Image.open(row.image) as image:
                factor = [probe / full for probe, full in zip(choice["probe_image_size"], image.size[::-1])]
            k = np.load(kernel_file).squeeze().astype(np.float64)
            for name, measure in MEASURES.items():
                chosen = size_from_extent(measure(k), factor, tuple(choice["max_kernel_size"]))
                ratios[name].append(max(chosen) / max(row.kernel_size))
        if any(ratios.values()):  # some probe has ended there
            lines.append(table_row(folder.name, ratios))
    true_ratios = {name: [] for name in MEASURES}
    for kernel_file in sorted(ROOT.glob("benchmarks/protocols/levin_kernels_convolution/*.npy")) + sorted(ROOT.glob("benchmarks/protocols/shake256*/kernels/*.npy")):
        # As a probe at half size would see it: the kernel shrunk by half (odd support).
        k = torch.from_numpy(np.load(kernel_file).squeeze().astype(np.float64))
        small = odd_size(k.shape[0] * KernelProbeSpec.scale)
        shrunk = resize_kernel(k, (small, small)).double().numpy()
        for name, measure in MEASURES.items():
            chosen = size_from_extent(measure(shrunk), (small / k.shape[0],) * 2, (99, 99))
            true_ratios[name].append(chosen[0] / k.shape[0])
    lines.append(table_row("the true kernels, shrunk by half", true_ratios))
    lines += ["", "Cells: chosen / true size, mean (range), mean |log ratio|, counts below 0.8 and above 1.4.", ""]
    write_text(STUDY / "measures.md", "\n".join(lines))
    print("\n".join(lines))


def finished_runs(study: Path) -> dict:
    """``{(arm, name): metrics}`` of every finished run under ``study``."""
    runs = {}
    for metrics_file in sorted(study.glob("*/*/seed*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        if metrics.get("status") == "done":
            runs[(metrics_file.parents[2].name, metrics_file.parents[1].name)] = metrics
    return runs


def summary_line(complete: list[dict]) -> str:
    """The goals' figures over ``complete`` (rows with all three arms): auto - true and
    auto - double in dB (mean with its standard error, worst), every input where auto
    lies below double by more than the table's rounding, and the wall-time ratio."""
    minus_true = np.array([row["auto"]["aligned_isnr"] - row["true"]["aligned_isnr"] for row in complete])
    minus_double = np.array([row["auto"]["aligned_isnr"] - row["double"]["aligned_isnr"] for row in complete])
    cost = np.array([row["auto"]["wall_time_s"] / row["true"]["wall_time_s"] for row in complete])
    error = minus_true.std(ddof=1) / np.sqrt(len(minus_true)) if len(minus_true) > 1 else float("nan")
    below = [f"{row['name']} {gap:+.2f}" for row, gap in zip(complete, minus_double) if gap < -0.005]
    return (
        f"{len(complete)} complete inputs: auto - true {minus_true.mean():+.2f} dB (standard error {error:.2f}; "
        f"worst {minus_true.min():+.2f}); auto - double {minus_double.mean():+.2f} dB (worst {minus_double.min():+.2f}); "
        f"below double on {len(below)}{': ' + ', '.join(below) if below else ''}; "
        f"time auto/true {cost.mean():.2f}x (max {cost.max():.2f}x)"
    )


def table(args) -> None:
    lines, payload = [], {"machine": machine(), "studies": {}}
    pooled = []
    for study in sorted(p for p in STUDY.iterdir() if p.is_dir() and p.name != "probes"):
        runs = finished_runs(study)
        names = sorted({name for _, name in runs})
        rows = []
        for name in names:
            row = {"name": name}
            for arm in ARMS:
                metrics = runs.get((arm, name))
                if metrics:
                    row[arm] = {
                        "kernel_size": metrics["kernel_size"],
                        "aligned_isnr": metrics.get("aligned_isnr"),
                        "wall_time_s": metrics["wall_time_s"],
                    }
            rows.append(row)
        payload["studies"][study.name] = rows
        lines += [f"## {study.name}", "", "| input | true size | true: ISNR | double: size, ISNR | auto: size, ISNR | auto/true time |", "|---|---|---|---|---|---|"]
        for row in rows:
            cells = [row["name"]]
            true, double, auto = (row.get(arm) for arm in ARMS)
            cells.append("x".join(map(str, true["kernel_size"])) if true else "")
            cells.append(f"{true['aligned_isnr']:.2f}" if true else "")
            cells.append(f"{double['kernel_size'][0]}, {double['aligned_isnr']:.2f}" if double else "")
            cells.append("x".join(map(str, auto["kernel_size"])) + f", {auto['aligned_isnr']:.2f}" if auto else "")
            cells.append(f"{auto['wall_time_s'] / true['wall_time_s']:.2f}" if auto and true else "")
            lines.append("| " + " | ".join(cells) + " |")
        complete = [row for row in rows if all(arm in row for arm in ARMS)]
        if complete:
            lines += ["", summary_line(complete)]
            pooled += complete
        lines.append("")
    if pooled:
        lines += ["## all studies together", "", summary_line(pooled), ""]
    lines += probe_table(STUDY)
    write_text(STUDY / "table.md", "\n".join(lines))
    write_text(STUDY / "table.json", json.dumps(payload, indent=1, sort_keys=True) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    shake = actions.add_parser("shake", help="random camera-shake kernels and their synthetic set")
    shake.add_argument("--seed", type=int, default=0)
    shake.add_argument(
        "--protocol", default="benchmarks/protocols/shake256",
        help="the set's folder (seed 0: shake256; seed 1: shake256_seed1, held out from the choice of the probe's measure)",
    )  # fmt: skip
    runner = actions.add_parser("run", help="the three arms on a protocol, one input at a time")
    runner.add_argument("--protocol", required=True)
    runner.add_argument("--config", default=str(ROOT / "configs" / "fast.yaml"))
    runner.add_argument("--arms", default=",".join(ARMS))
    runner.add_argument("--inputs", default="", help="comma-separated input names (default: all)")
    runner.add_argument("--seed", type=int, default=0)
    runner.add_argument("--precision", default="32-true")
    runner.add_argument("--root", default=str(STUDY), help="where the study's runs go")
    prober = actions.add_parser("probes", help="the probe alone on every input: the size it chooses")
    prober.add_argument("--protocol", required=True)
    prober.add_argument("--config", default=str(ROOT / "configs" / "fast.yaml"))
    prober.add_argument("--steps", type=int, default=100, help="the probe's steps (the config's coarse-scale budget)")
    prober.add_argument("--seed", type=int, default=0)
    prober.add_argument("--precision", default="32-true")
    prober.add_argument("--root", default=str(STUDY))
    actions.add_parser("measures", help="the probe's extent measure against alternatives, from the saved probe kernels")
    actions.add_parser("table", help="the table of every finished run")
    args, extra = parser.parse_known_args()
    if args.action == "shake":
        make_shake(args)
    elif args.action == "run":
        sys.exit(run(args, extra))
    elif args.action == "probes":
        sys.exit(probes(args, extra))
    elif args.action == "measures":
        measures(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
