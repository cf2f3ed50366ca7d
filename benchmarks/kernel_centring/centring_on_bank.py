"""Kernel centring applied after the fact to the full-fidelity bank's runs (no new runs):
plain and shift-aligned PSNR of each result before and after centring.

The bank's runs (made before centring existed) kept only the H×W result, not its
support, so the result itself is moved by the whole-pixel shift, its few missing edge
rows/columns copied from the edge (the job centres on the support, where they exist);
the plain PSNR is measured on the interior (3 px border left out) so those copies do not
count. The protocol's true kernels are themselves off centre (by up to 1.7 px), so the
blurred input is displaced against the sharp image; what a user overlaying result and
input sees is the result's displacement *against the input*: the best-fit shift of the
result onto the sharp image minus that of the input (Levin alignment, 0.25 px steps).
Saves benchmarks/kernel_centring/results/centring_on_bank.json and prints the means.

    .venv/bin/python benchmarks/kernel_centring/centring_on_bank.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import BANK, PROTOCOL, banked_methods, save  # noqa: E402

from lightning_deblur.core.centring import centre_kernel, kernel_centroid_offset  # noqa: E402
from lightning_deblur.core.imagefiles import read_grey  # noqa: E402
from lightning_deblur.core.metrics import psnr_per_image  # noqa: E402
from lightning_deblur.core.alignment import align_to_reference, aligned_psnr
from lightning_deblur.core.manifest import read_manifest  # noqa: E402

INTERIOR = 3


def interior_psnr(estimate: torch.Tensor, sharp: torch.Tensor) -> float:
    cut = (..., slice(INTERIOR, -INTERIOR), slice(INTERIOR, -INTERIOR))
    return float(psnr_per_image(estimate[cut], sharp[cut])[0])


def main() -> None:
    cases = {row.name: row for row in read_manifest(PROTOCOL / "manifest.csv")}
    report = {}
    for method in banked_methods(BANK):
        rows = []
        for metrics_file in sorted((BANK / method).glob("*/seed*/metrics.json")):
            run = metrics_file.parent
            case = cases[run.parent.name]
            sharp, estimate = read_grey(case.sharp).float(), read_grey(run / "deblurred.png").float()
            kernel = torch.from_numpy(np.load(run / "kernel.npy"))
            true_offset = kernel_centroid_offset(torch.from_numpy(np.load(case.kernel)))
            centred = centre_kernel(estimate, kernel)
            before, after = interior_psnr(estimate, sharp), interior_psnr(centred.x, sharp)
            aligned = float(aligned_psnr(estimate, sharp)[0])
            blurred = read_grey(case.image).float()
            shifts = align_to_reference(torch.cat([estimate, centred.x, blurred]), sharp.expand(3, -1, -1, -1)).shift
            against_input = shifts[:2] - shifts[2]
            rows.append({
                "run": str(run.relative_to(BANK)), "offset": kernel_centroid_offset(kernel),
                "true_kernel_offset": true_offset, "shift": centred.shift, "plain_before": before,
                "plain_after": after, "aligned": aligned,
                "displacement_before": against_input[0].tolist(), "displacement_after": against_input[1].tolist(),
            })  # fmt: skip
        if not rows:
            continue
        moved = [r for r in rows if tuple(r["shift"]) != (0, 0)]
        summary = {
            "runs": len(rows),
            "runs_moved": len(moved),
            "gap_before": statistics.fmean(r["aligned"] - r["plain_before"] for r in rows),
            "gap_after": statistics.fmean(r["aligned"] - r["plain_after"] for r in rows),
            "displacement_before": statistics.fmean(float(np.hypot(*r["displacement_before"])) for r in rows),
            "displacement_after": statistics.fmean(float(np.hypot(*r["displacement_after"])) for r in rows),
            "plain_gain_of_moved": statistics.fmean(r["plain_after"] - r["plain_before"] for r in moved) if moved else 0,
        }
        report[method] = {"summary": summary, "runs": rows}
        print(f"{method}: {len(rows)} runs, {len(moved)} moved; mean aligned − plain PSNR "
              f"{summary['gap_before']:.2f} dB before, {summary['gap_after']:.2f} dB after; "
              f"plain PSNR of the moved runs {summary['plain_gain_of_moved']:+.2f} dB; displacement against the input "
              f"{summary['displacement_before']:.2f} px before, {summary['displacement_after']:.2f} px after")
    print(f"saved {save('centring_on_bank', report, measured_here=False)}")


if __name__ == "__main__":
    main()
