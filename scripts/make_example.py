"""Rebuilds the bundled quickstart example in lightning_deblur/examples/.

A 96×96 crop of Kodak image kodim05 (grey), blurred with Levin et al.'s kernel 5 by the
project's own forward model (valid true convolution) plus Gaussian noise of std 0.005,
with the matching sharp crop and the kernel. Run from the repository root:

    .venv/bin/python scripts/make_example.py ../shared/data
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from lightning_deblur.core.colour import luminance
from lightning_deblur.core.imagefiles import read_image, write_image, write_kernel_npy
from lightning_deblur.core.physics import blur_valid

IMAGE, TOP, LEFT, SIZE = "kodim05.png", 110, 330, 96
KERNEL = "levin09_k5.npy"
NOISE_STD = 0.005
SEED = 0


def main(data_root: str) -> None:
    data = Path(data_root)
    out = Path(__file__).resolve().parents[1] / "lightning_deblur" / "examples"
    kernel = np.load(data / "levin" / "kernels" / KERNEL)
    kh, kw = kernel.shape
    grey = luminance(read_image(data / "kodak" / IMAGE).pixels)
    support = grey[TOP : TOP + SIZE + kh - 1, LEFT : LEFT + SIZE + kw - 1]
    blurred = blur_valid(torch.from_numpy(support)[None, None], torch.from_numpy(kernel))[0, 0].double().numpy()
    noise = np.random.default_rng(SEED).normal(0.0, NOISE_STD, blurred.shape)
    sharp = support[(kh - 1) // 2 : (kh - 1) // 2 + SIZE, (kw - 1) // 2 : (kw - 1) // 2 + SIZE]
    write_image(out / "kodim05_blurred.png", np.clip(blurred + noise, 0, 1))
    write_image(out / "kodim05_sharp.png", sharp)
    write_kernel_npy(out / "levin_kernel5.npy", kernel)
    print(f"wrote {SIZE}×{SIZE} example, kernel {kh}×{kw}, to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
