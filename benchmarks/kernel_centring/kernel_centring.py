"""Kernel centring: which shift keeps the re-blur, and what it does to plain PSNR.

Part 1 (no optimization): each Levin kernel, halved as in the reduced protocol, and a
sharp Kodak support are re-registered so the kernel's centre of mass moves to the middle
of its support, by a whole-pixel shift (the project's ``centre_kernel``) and by the two
sub-pixel alternatives (bilinear interpolation, Fourier phase ramp, both applied to the
kernel and, oppositely, to the image). Reported: the RMS difference between
``blur_valid(x_shifted, k_centred)`` and ``blur_valid(x, k)`` over the valid region, the
centred kernel's residual centroid offset, its peak relative to the original's (an
interpolated kernel is blurred), and its negative mass (Fourier ringing, to be clipped).

Part 2 (short blind jobs): 64×64 grey Kodak crops (most textured), each blurred by a
Levin kernel halved and then centred (residual centroid offset ≤ 0.5 px, so a centred
estimate should line up with the sharp reference) plus 1 % noise; the improved method
scaled down (16-channel image net, 100 iterations per coarse scale, ``--iterations`` at the
finest, thresholds scaled alike), every job with and without ``--model.centre_kernel``.
Reported per job: plain and shift-aligned PSNR (15 px border, ±5 px), the kernel's
centroid offset and the shift applied.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kernel_centring/kernel_centring.py --inputs 4 --seeds 0-1 --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import DATA, ROOT, save, write_text  # noqa: E402

sys.path.insert(0, str(ROOT))

from lightning_deblur.core.centring import centre_kernel, kernel_centroid_offset  # noqa: E402
from lightning_deblur.core.colour import luminance  # noqa: E402
from lightning_deblur.core.imagefiles import read_image, read_kernel  # noqa: E402
from lightning_deblur.core.alignment import align_to_reference  # noqa: E402
from lightning_deblur.core.physics import blur_valid  # noqa: E402
from lightning_deblur.core.manifest import read_manifest  # noqa: E402
from lightning_deblur.commands.synth import scale_kernel, synthesize, textured_corner  # noqa: E402


# ------------------------------------------------------------ part 1: which shift
def bilinear_shift(image: torch.Tensor, dy: float, dx: float, border: str) -> torch.Tensor:
    """``out[p, q] = image(p − dy, q − dx)`` by bilinear interpolation (content moves by
    ``(dy, dx)``); outside the image: zeros (a kernel) or the nearest edge (an image)."""
    height, width = image.shape[-2:]
    rows = torch.arange(height, dtype=torch.float64) - dy
    cols = torch.arange(width, dtype=torch.float64) - dx
    # grid_sample's normalized coordinates, align_corners=True: −1 and 1 are the edge pixels' centres.
    grid_y = (2 * rows / (height - 1) - 1)[:, None].expand(height, width)
    grid_x = (2 * cols / (width - 1) - 1)[None, :].expand(height, width)
    grid = torch.stack([grid_x, grid_y], dim=-1)[None]
    planes = image.reshape(1, 1, height, width)
    mode = "zeros" if border == "zeros" else "border"
    return F.grid_sample(planes, grid, mode="bilinear", padding_mode=mode, align_corners=True).reshape(image.shape)


def fourier_shift(image: torch.Tensor, dy: float, dx: float, pad: int) -> torch.Tensor:
    """Content moved by ``(dy, dx)`` by a phase ramp over the image zero-padded by ``pad``
    on every side (so the wrap-around lands in the padding), cropped back."""
    padded = F.pad(image, (pad, pad, pad, pad))
    height, width = padded.shape[-2:]
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    ramp = torch.exp(-2j * math.pi * (fy * dy + fx * dx))
    moved = torch.fft.ifft2(torch.fft.fft2(padded) * ramp).real
    return moved[..., pad : pad + image.shape[-2], pad : pad + image.shape[-1]]


REBLUR_MARGIN = 3
"""Pixels left out on every side of the valid region when comparing re-blurs: where the
shifted image takes in pixels from beyond its support (edge copies, zeros), every
method is approximate; inside, only the interpolation itself differs."""


def reblur_error(x, k, x_new, k_new) -> float:
    """RMS of ``blur(x_new, k_new) − blur(x, k)`` inside the valid region (on [0, 1] intensities)."""
    inside = (..., slice(REBLUR_MARGIN, -REBLUR_MARGIN), slice(REBLUR_MARGIN, -REBLUR_MARGIN))
    before = blur_valid(x, k, method="fft").double()[inside]
    after = blur_valid(x_new, k_new, method="fft").double()[inside]
    return float((after - before).square().mean().sqrt())


def shift_choice(kernels: list[Path], images: list[Path]) -> list[dict]:
    """Part 1: the three ways to centre, per kernel (paired with one sharp image each)."""
    rows = []
    for kernel_path, image_path in zip(kernels, images):
        k = torch.from_numpy(scale_kernel(read_kernel(kernel_path, "kernel"), 0.5))
        grey = luminance(read_image(image_path).pixels)
        height, width = 64 + k.shape[0] - 1, 64 + k.shape[1] - 1
        top, left = textured_corner(grey, height, width)
        x = torch.from_numpy(np.ascontiguousarray(grey[top : top + height, left : left + width]))[None, None]
        dy, dx = kernel_centroid_offset(k)
        integer = centre_kernel(x, k)
        bilinear_k = bilinear_shift(k, -dy, -dx, "zeros")
        bilinear_x = bilinear_shift(x, dy, dx, "edge")
        fourier_k = fourier_shift(k, -dy, -dx, pad=max(k.shape))
        fourier_x = fourier_shift(x, dy, dx, pad=max(k.shape))
        clipped = fourier_k.clamp_min(0) / fourier_k.clamp_min(0).sum()  # a kernel must stay non-negative
        row = {
            "kernel": kernel_path.stem, "size": list(k.shape), "centroid_offset": [round(dy, 3), round(dx, 3)],
            "integer_shift": list(integer.shift), "integer_lost_mass": round(integer.lost_mass, 5),
        }  # fmt: skip
        for name, (x_new, k_new) in {
            "integer": (integer.x, integer.k),
            "bilinear": (bilinear_x, bilinear_k / bilinear_k.sum()),
            "fourier": (fourier_x, fourier_k),
            "fourier_clipped": (fourier_x, clipped),
        }.items():
            row[name] = {
                "reblur_rms": reblur_error(x, k, x_new, k_new),
                "residual_offset": [round(v, 3) for v in kernel_centroid_offset(k_new)],
                "peak_ratio": round(float(k_new.max() / k.max()), 4),
                "negative_mass": round(float(-k_new.clamp_max(0).sum()), 5),
            }
        rows.append(row)
    return rows


# ------------------------------------------------------------ part 2: blind jobs
def make_dataset(work: Path, count: int) -> list[dict]:
    """64×64 crops of kodim01… blurred by Levin kernel i halved, then centred (whole pixels)."""
    data = work / f"data_{count}"
    if not (data / "manifest.csv").exists():
        centred = work / f"centred_kernels_{count}"
        centred.mkdir(parents=True, exist_ok=True)
        for path in sorted((DATA / "levin" / "kernels").glob("*.npy"))[:count]:
            k = torch.from_numpy(scale_kernel(read_kernel(path, "kernel"), 0.5))
            np.save(centred / path.name, centre_kernel(torch.zeros(1, 1, *k.shape), k).k.numpy())
        images = [str(p) for p in sorted((DATA / "kodak").glob("*.png"))[:count]]
        synthesize(
            images=images, kernels=str(centred), output_dir=str(data), size=64, mode="textured",
            noise_std=0.01, seed=0, pairs="diagonal",
        )  # fmt: skip
    return read_manifest(data / "manifest.csv")


def protocol(work: Path, iterations: int, channels: int) -> Path:
    """The improved method scaled down: thresholds at the same fractions of the finest scale."""
    switch = round(iterations * 0.4)  # 2000 of 5000
    settings = {
        "model": {"image_net": {"channels": channels}, "iterations": iterations, "scales": {"coarse_iterations": 100}},
        "schedule": {
            "weights": {
                "mse": {0: 1.0, switch: 0.0},
                "ssim": {switch: 1.0},
                "tv": {switch: 0.01},
                "kernel_l2": {0: 0.1, switch: 0.0},
            }
        },
        "lr_schedule": {"milestones": [switch, round(iterations * 0.6), round(iterations * 0.8)]},
        "trainer": {"enable_progress_bar": False, "enable_model_summary": False, "precision": "32-true"},
        "image_logging": {"every_n_steps": iterations},
        "outputs": {"verbose": False},
    }
    path = work / f"protocol_{iterations}_{channels}.yaml"
    write_text(path, yaml.safe_dump(settings))
    return path


def run_job(case: dict, seed: int, centre: bool, work: Path, config: Path) -> dict:
    """One fit in its own process, one thread; returns its metrics.json (or the error)."""
    label = "centred" if centre else "raw"
    run_dir = work / "runs" / config.stem / label / case.name / f"seed{seed}"
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.exists():
        kh, kw = case.kernel_size
        command = [
            sys.executable, "-W", "ignore", "-m", "lightning_deblur", "fit",
            "--config", str(ROOT / "configs" / "improved.yaml"), "--config", str(config),
            "--data.image", case.image, "--data.sharp", case.sharp, "--data.kernel_size", f"[{kh}, {kw}]",
            "--seed_everything", str(seed), "--model.centre_kernel", str(centre).lower(),
            "--trainer.logger.init_args.save_dir", str(run_dir.parent),
            "--trainer.logger.init_args.name", "", "--trainer.logger.init_args.version", run_dir.name,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not metrics_file.exists():
            return {"centre": centre, "name": case.name, "seed": seed, "error": done.stderr.strip()[-500:]}
    metrics = json.loads(metrics_file.read_text())
    return {"centre": centre, "name": case.name, "seed": seed, "displacement": displacement(run_dir, case), **metrics}


def displacement(run_dir: Path, case: dict) -> list[float]:
    """``(dy, dx)`` in pixels by which the result lies off the sharp reference: the shift the
    Levin alignment of the aligned figures chooses (15 px border, ±5 px, 0.25 px steps)."""
    result = torch.from_numpy(read_image(run_dir / "deblurred.png").pixels)[None, None]
    sharp = torch.from_numpy(read_image(case.sharp).pixels)[None, None]
    return [float(v) for v in align_to_reference(result, sharp).shift[0]]


def pair_rows(results: list[dict]) -> list[dict]:
    """One row per (input, seed): the raw and the centred job's figures side by side."""
    by_key = {(r["name"], r["seed"], r["centre"]): r for r in results if "error" not in r}
    rows = []
    for (name, seed, centre), raw in sorted(by_key.items()):
        centred = by_key.get((name, seed, True))
        if centre or centred is None:
            continue
        rows.append({
            "name": name, "seed": seed, "centroid_offset": centred["kernel_centroid_offset"],
            "kernel_shift": centred["kernel_shift"], "touches_border": centred["kernel_touches_border"],
            "psnr_raw": raw["psnr"], "psnr_centred": centred["psnr"],
            "aligned_psnr_raw": raw["aligned_psnr"], "aligned_psnr_centred": centred["aligned_psnr"],
            "input_psnr": raw["input_psnr"], "same_final_loss": raw["final_loss"] == centred["final_loss"],
            "displacement_raw": raw["displacement"], "displacement_centred": centred["displacement"],
        })  # fmt: skip
    return rows


def markdown(choice: list[dict], rows: list[dict]) -> str:
    lines = [
        "| kernel | centroid offset (px) | integer shift | mass lost | re-blur RMS: integer | bilinear | Fourier "
        "| Fourier clipped | peak kept: bilinear | negative mass: Fourier |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in choice:
        lines.append(
            f"| {c['kernel']} {c['size'][0]}×{c['size'][1]} | {c['centroid_offset']} | {c['integer_shift']} "
            f"| {c['integer_lost_mass']:.1%} | {c['integer']['reblur_rms']:.1e} "
            f"| {c['bilinear']['reblur_rms']:.1e} | {c['fourier']['reblur_rms']:.1e} "
            f"| {c['fourier_clipped']['reblur_rms']:.1e} | {c['bilinear']['peak_ratio']:.2f} "
            f"| {c['fourier']['negative_mass']:.3f} |"
        )
    lines += [
        "",
        "| input | seed | centroid offset (px) | shift | displacement raw → centred (px) | PSNR raw → centred (dB) "
        "| aligned PSNR raw → centred | input PSNR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['centroid_offset']} | {r['kernel_shift']} "
            f"| {r['displacement_raw']} → {r['displacement_centred']} "
            f"| {r['psnr_raw']:.2f} → {r['psnr_centred']:.2f} | {r['aligned_psnr_raw']:.2f} → "
            f"{r['aligned_psnr_centred']:.2f} | {r['input_psnr']:.2f} |"
        )
    if rows:
        gain = statistics.fmean(r["psnr_centred"] - r["psnr_raw"] for r in rows)
        aligned = statistics.fmean(r["aligned_psnr_centred"] - r["aligned_psnr_raw"] for r in rows)
        lines.append(f"| mean change | | | | | {gain:+.2f} | {aligned:+.2f} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=str(ROOT / "runs" / "kernel_centring"), help="data and runs; reused")
    parser.add_argument("--inputs", type=int, default=4, help="Kodak images 1..N, each with Levin kernel i")
    parser.add_argument("--seeds", default="0-1", help="first-last")
    parser.add_argument("--iterations", type=int, default=400, help="iterations at the finest scale")
    parser.add_argument("--channels", type=int, default=16, help="image net width")
    parser.add_argument("--workers", type=int, default=2, help="jobs at once, one thread each")
    args = parser.parse_args()
    work = Path(args.work_dir)
    started = time.perf_counter()
    kernels = sorted((DATA / "levin" / "kernels").glob("*.npy"))
    choice = shift_choice(kernels, sorted((DATA / "kodak").glob("*.png"))[: len(kernels)])
    cases = make_dataset(work, args.inputs)
    config = protocol(work, args.iterations, args.channels)
    first, last = (int(v) for v in args.seeds.split("-")) if "-" in args.seeds else (int(args.seeds),) * 2
    jobs = [(case, seed, centre) for case in cases for seed in range(first, last + 1) for centre in (False, True)]
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda job: run_job(*job, work, config), jobs))
    errors = [r for r in results if "error" in r]
    rows = pair_rows(results)
    table = markdown(choice, rows)
    print(table)
    for error in errors:
        print(f"error: {error['name']} seed {error['seed']}: {error['error']}", file=sys.stderr)
    name = f"kernel_centring_64px_{args.inputs}inputs_seeds{args.seeds}_{args.iterations}it_ch{args.channels}"
    path = save(name, {
        # elapsed_s counts only this invocation (finished jobs are reused); the jobs' own
        # wall times are kept in their metrics.json and summed here.
        "config": vars(args), "elapsed_s": time.perf_counter() - started, "shift_choice": choice,
        "jobs_wall_time_s": sum(r.get("wall_time_s", 0) for r in results),
        "runs": rows, "errors": errors, "markdown": table,
    })  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
