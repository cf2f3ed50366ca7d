"""A larger colour photo end to end: kernel on the most textured crop, whole image in tiles.

Blurs a Kodak image (centre crop, colour) with a Levin kernel plus noise (`synth`), then
runs the improved method with the reduced CPU protocol (benchmarks/protocols/
reduced_improved.yaml: 32-channel nets, schedules shortened 5×), the kernel estimated on
a crop and the whole image deblurred in tiles by the colour finishing stage. Prints the
crop, the tile count, PSNR/ISNR of the whole result (luminance and per RGB channel),
the kernel error against the true kernel, and the wall time.

    .venv/bin/python benchmarks/large_images/large_image.py --size 320 --crop 128 --tile 176 --finish_iterations 300
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import DATA, ROOT, save  # noqa: E402

from lightning_deblur.commands.fit import main
from lightning_deblur.core.alignment import kernel_error
from lightning_deblur.commands.synth import synthesize



def run(args) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (case,) = synthesize(
            str(DATA / "kodak" / f"{args.image}.png"), str(DATA / "levin" / "kernels" / f"{args.kernel}.npy"),
            str(folder / "data"), size=args.size, mode="center", colour=True, noise_std=args.noise,
            kernel_scale=args.kernel_scale,
        )  # fmt: skip
        data = folder / "data"
        main([
            "fit", "--config", str(ROOT / "configs" / "improved.yaml"),
            "--config", str(ROOT / "benchmarks" / "protocols" / "reduced_improved.yaml"),
            "--data.image", str(data / case.image), "--data.sharp", str(data / case.sharp),
            "--data.kernel_size", case.kernel_size.split("x")[0],
            "--model.kernel_crop.size", str(args.crop) if args.crop > 0 else "null",
            "--model.finish.tile_size", str(args.tile),
            *([] if args.finish_iterations is None else ["--model.finish.iterations", str(args.finish_iterations)]),
            "--trainer.logger.init_args.save_dir", str(folder / "logs"),
        ])  # fmt: skip
        (run_folder,) = list((folder / "logs").glob("*/version_*"))
        metrics = json.loads((run_folder / "metrics.json").read_text())
        estimate = torch.from_numpy(np.load(run_folder / "kernel.npy")).double()
        truth = torch.from_numpy(np.load(data / case.kernel)).double()
        metrics["kernel_error"] = float(kernel_error(estimate, truth)[0])
    return metrics


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="kodim05")
    parser.add_argument("--kernel", default="levin09_k3")
    parser.add_argument("--kernel_scale", type=float, default=0.5)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--crop", type=int, default=128, help="kernel crop side; 0: the whole image")
    parser.add_argument("--tile", type=int, default=176)
    parser.add_argument("--finish_iterations", type=int, default=None, help="per tile; default: the job's rule")
    args = parser.parse_args()
    torch.set_num_threads(2)
    metrics = run(args)
    keys = ("kernel_crop", "tiles", "iterations", "wall_time_s", "precision", "input_psnr", "psnr", "isnr",
            "input_aligned_psnr", "aligned_psnr", "aligned_isnr", "input_psnr_rgb", "psnr_rgb", "kernel_error")  # fmt: skip
    for key in keys:
        print(f"{key:20s} {metrics.get(key)}")
    save(f"large_image_{args.image}_crop{args.crop}", {"config": vars(args), "metrics": metrics})


if __name__ == "__main__":
    main_benchmark()
