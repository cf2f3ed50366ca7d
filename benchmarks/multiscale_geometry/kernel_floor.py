"""How much of each true kernel a coarse scale's kernel support holds, by kernel floor.

For every Levin kernel at the size a protocol gives it, the true kernel (centred on that
support, cropped where the support is smaller: SelfDeblur's Levin sizes are 2 px under
the true ones for six kernels) is shrunk to each coarse scale of the
improved method's plan by splatting its mass bilinearly onto the coarse grid (mass and
centre kept exactly), and the share of its mass that falls outside the coarse kernel
support is measured for the natural size (the full size times the scale's factor,
rounded to odd, at least 3) and for floors of 5 and 7 (the paper's). Pure geometry: no
optimization runs, so it says which floors cut true kernels, not which optimize best.

    .venv/bin/python benchmarks/multiscale_geometry/kernel_floor.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from lightning_deblur.core.planning import ScalesSpec, plan_scales
from lightning_deblur.core.resample import odd_size

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import save  # noqa: E402

LEVIN_KERNELS = ROOT.parent / "shared" / "data" / "levin" / "kernels"
# The reduced protocol's kernels: Levin's halved (synth --kernel_scale 0.5).
HALVED_KERNELS = ROOT / "benchmarks" / "protocols" / "full_fidelity" / "kernels"
OUT = ROOT / "benchmarks" / "multiscale_geometry" / "results"
# (protocol, image side, kernel folder, kernel sizes given for Levin kernels 1-8)
PROTOCOLS = [
    ("levin8_255_selfdeblur_sizes", 255, LEVIN_KERNELS, [17, 15, 13, 27, 11, 19, 21, 21]),
    ("kodak256_true_sizes", 256, LEVIN_KERNELS, [19, 17, 15, 27, 13, 21, 23, 23]),
    ("reduced96_halved_kernels", 96, HALVED_KERNELS, [9, 9, 7, 13, 7, 11, 11, 11]),
]
FLOORS = {"natural": 3, "floor5": 5, "floor7": 7}


def centred(kernel: np.ndarray, size: int) -> np.ndarray:
    """``kernel`` (odd, square) centred on a ``size × size`` support: cropped or zero-padded
    about its centre pixel. Not renormalized: a crop's lost mass stays visible."""
    margin = (size - kernel.shape[0]) // 2
    if margin >= 0:
        return np.pad(kernel, margin)
    return kernel[-margin:margin, -margin:margin]


def splat(kernel: np.ndarray, factor: float, size: int) -> np.ndarray:
    """Mass of ``kernel`` (support centred at 0) moved to ``factor`` times its offsets and
    spread bilinearly over a ``size × size`` grid centred at 0 (mass beyond it dropped)."""
    out = np.zeros((size + 2, size + 2))
    n = kernel.shape[0]
    offsets = (np.arange(n) - (n - 1) / 2) * factor + (size + 1) / 2  # grid index, 1-based margin
    for i, row in enumerate(offsets):
        for j, col in enumerate(offsets):
            r0, c0 = math.floor(row), math.floor(col)
            fr, fc = row - r0, col - c0
            for dr, wr in ((0, 1 - fr), (1, fr)):
                for dc, wc in ((0, 1 - fc), (1, fc)):
                    if 0 <= r0 + dr < size + 2 and 0 <= c0 + dc < size + 2:
                        out[r0 + dr, c0 + dc] += kernel[i, j] * wr * wc
    return out[1:-1, 1:-1]


def main() -> None:
    rows = []
    for protocol, side, folder, sizes in PROTOCOLS:
        for index, size in enumerate(sizes, start=1):
            true = np.load(folder / f"levin09_k{index}.npy")
            given = centred(true, size)
            plan = plan_scales((side, side), (size, size), ScalesSpec(min_kernel_size=1), 1)
            for scale in plan[:-1]:
                factor = scale.image_size[0] / side
                natural = max(3, odd_size(size * factor))
                wide = splat(given, factor, 2 * size + 1)  # room for all the mass
                row = {"protocol": protocol, "kernel": index, "size": size, "true_size": true.shape[0],
                       "given_support_mass": round(float(given.sum()), 6), "scale_factor": round(factor, 4)}  # fmt: skip
                for name, floor in FLOORS.items():
                    coarse = min(size, max(natural, floor))
                    margin = (wide.shape[0] - coarse) // 2
                    inside = wide[margin : margin + coarse, margin : margin + coarse].sum()
                    row[f"{name}_size"] = coarse
                    # Of the mass the given support holds.
                    row[f"{name}_mass_outside"] = round(float(1 - inside / given.sum()), 6)
                rows.append(row)
    save("kernel_floor_levin_kernels", {"rows": rows}, OUT, measured_here=False)  # geometry: any machine agrees
    for row in rows:
        print(row["protocol"], row["kernel"], row["size"], row["given_support_mass"], row["scale_factor"],
              *(f"{n}:{row[f'{n}_size']}/{row[f'{n}_mass_outside']:.4f}" for n in FLOORS))  # fmt: skip


if __name__ == "__main__":
    main()
