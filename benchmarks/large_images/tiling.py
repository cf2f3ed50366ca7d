"""Tiled against untiled non-blind deblurring, side by side in one run.

A deep-image-prior result depends on the seed, so "tiled equals untiled" is measured
against that spread: the same blurred image is deblurred with a known kernel
(`configs/nonblind.yaml` with a narrower net and a shorter schedule) untiled with
seeds 0 and 1, and tiled with seed 0. Printed: PSNR of each result against the sharp
image, PSNR between the tiled and the untiled result next to PSNR between the two
untiled seeds, a seam ratio (mean |tiled − untiled| within 2 pixels of the lines where
tile weights change, over the same mean elsewhere; 1 means the seams are invisible in
the difference), and the wall-time ratio tiled/untiled.

    .venv/bin/python benchmarks/large_images/tiling.py --iterations 600 --tile 48 --overlap 24
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import ROOT, save  # noqa: E402

from lightning_deblur.commands.fit import main
from lightning_deblur.core.colour import luminance
from lightning_deblur.core.package_files import resolve_path
from lightning_deblur.core.imagefiles import read_image, write_image
from lightning_deblur.core.metrics import psnr_per_image
from lightning_deblur.core.physics import blur_valid
from lightning_deblur.core.tiles import tile_boxes



def make_case(folder: Path, noise: float, seed: int) -> tuple[Path, Path, np.ndarray]:
    """Blur the bundled Kodak crop (grey) with the bundled Levin kernel, valid, plus noise."""
    sharp_support = luminance(read_image(resolve_path("example:kodim05_sharp.png")).pixels)
    kernel = np.load(resolve_path("example:levin_kernel5.npy"))
    blurred = blur_valid(torch.from_numpy(sharp_support)[None, None], torch.from_numpy(kernel))[0, 0].numpy()
    rng = np.random.default_rng(seed)
    blurred = np.clip(blurred + noise * rng.standard_normal(blurred.shape), 0, 1)
    kh, kw = kernel.shape
    sharp = sharp_support[(kh - 1) // 2 : (kh - 1) // 2 + blurred.shape[0], (kw - 1) // 2 : (kw - 1) // 2 + blurred.shape[1]]
    write_image(folder / "blurred.png", blurred, 16)
    np.save(folder / "kernel.npy", kernel.astype(np.float32))
    return folder / "blurred.png", folder / "kernel.npy", sharp


def deblur(image: Path, kernel: Path, logs: Path, seed: int, args, tile: int | None) -> tuple[np.ndarray, float]:
    options = [
        "fit", "--config", str(ROOT / "configs" / "nonblind.yaml"), "--data.image", str(image),
        "--data.kernel", str(kernel), "--trainer.logger.init_args.save_dir", str(logs),
        "--trainer.enable_progress_bar", "false", "--outputs.verbose", "false", "--seed_everything", str(seed),
        "--model.iterations", str(args.iterations), "--model.image_net.channels", str(args.channels),
        "--schedule.weights", json.dumps({"mse": {0: 1.0, args.iterations // 5: 0.0}, "ssim": {args.iterations // 5: 1.0}}),
        "--lr_schedule.milestones", json.dumps([args.iterations * 2 // 5, args.iterations * 3 // 5, args.iterations * 4 // 5]),
    ]  # fmt: skip
    if tile is not None:
        options += ["--model.finish.tile_size", str(tile), "--model.finish.overlap", str(args.overlap)]
    start = time.perf_counter()
    main(options)
    seconds = time.perf_counter() - start
    (run,) = list(logs.glob("*/version_*"))
    return read_image(run / "deblurred.png").pixels, seconds


def seam_mask(size: tuple[int, int], tile: int, overlap: int, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` of a row or column where some tile starts or ends."""
    mask = np.zeros(size, dtype=bool)
    for box in tile_boxes(size, tile, overlap):
        for row in (box.top, box.top + box.height):
            if 0 < row < size[0]:
                mask[max(row - width, 0) : row + width, :] = True
        for column in (box.left, box.left + box.width):
            if 0 < column < size[1]:
                mask[:, max(column - width, 0) : column + width] = True
    return mask


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(psnr_per_image(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])[0])


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--tile", type=int, default=48)
    parser.add_argument("--overlap", type=int, default=24)
    parser.add_argument("--noise", type=float, default=0.005)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        image, kernel, sharp = make_case(folder, args.noise, seed=0)
        blurred = read_image(image).pixels
        untiled0, time0 = deblur(image, kernel, folder / "u0", 0, args, None)
        untiled1, _ = deblur(image, kernel, folder / "u1", 1, args, None)
        tiled, time_tiled = deblur(image, kernel, folder / "t0", 0, args, args.tile)
    mask = seam_mask(sharp.shape, args.tile, args.overlap)
    difference = np.abs(tiled - untiled0)
    result = {
        "image": list(sharp.shape),
        "tiles": len(tile_boxes(sharp.shape, args.tile, args.overlap)),
        "psnr_blurred": psnr(blurred, sharp),
        "psnr_untiled_seed0": psnr(untiled0, sharp),
        "psnr_untiled_seed1": psnr(untiled1, sharp),
        "psnr_tiled_seed0": psnr(tiled, sharp),
        "psnr_tiled_vs_untiled": psnr(tiled, untiled0),
        "psnr_untiled_seed0_vs_seed1": psnr(untiled0, untiled1),
        "seam_ratio": float(difference[mask].mean() / difference[~mask].mean()),
        "time_ratio_tiled_over_untiled": time_tiled / time0,
        "settings": vars(args),
    }
    for name, value in result.items():
        print(f"{name:32s} {value if not isinstance(value, float) else round(value, 3)}")
    save("tiling", result)


if __name__ == "__main__":
    main_benchmark()
