"""Which signal at the end of the coarsest scale predicts a blind job's final aligned ISNR?

The evidence behind the score of ``--model.starts`` (lightning_deblur/starts.py), from
the full-fidelity bank's runs alone (no new runs): every 3-scale run keeps its coarsest
scale's estimate and kernel (``scales/scale0_image.png``, ``scale0_kernel.npy``) and its
curve (``curve.csv``: the data term at the scale's last step); ``eval/runs.csv`` has the
final aligned ISNR. For each method and signal it prints:

- ``rho all``: Spearman rank correlation of the signal with the final ISNR over all runs
  (mixes inputs: an easy input scores well whatever the start);
- ``rho within``: the same after subtracting each input's mean over its seeds (what a
  choice between starts on one input sees);
- ``low wins``: of the inputs with two seeds, in how many the seed with the *lower*
  signal ended with the higher ISNR, and the mean ISNR if each input kept that seed
  (``pick low``) or the other one (``pick high``).

    python benchmarks/start_score_evidence.py   # writes benchmarks/results/start_score_evidence.md
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from lightning_deblur.centring import border_ratio
from lightning_deblur.curves import read_curve
from lightning_deblur.imagefiles import read_image
from lightning_deblur.resample import resize_image
from lightning_deblur.verdict import gradient_energy

ROOT = Path(__file__).resolve().parents[1]
BANK = ROOT / "benchmarks" / "results" / "full_fidelity_bank"
PROTOCOL = ROOT / "benchmarks" / "protocols" / "full_fidelity"
METHODS = ("fast", "improved", "improved_l2sum")  # the bank's 3-scale methods
SIGNALS = {
    "kernel_border": "kernel border/peak",
    "data_mse": "data term (MSE)",
    "kernel_peak": "kernel peak",
    "kernel_l2": "kernel ‖k‖²",
    "sharpness_gain": "sharpness gain",
    "coarse_aligned_psnr": "coarse aligned PSNR (needs the sharp image)",
}


def signals_of(run: dict) -> dict:
    """The signals of one bank run at the end of its coarsest scale."""
    folder = ROOT / run["run_dir"]
    x = torch.from_numpy(read_image(folder / "scales" / "scale0_image.png").pixels).float()[None, None]
    k = torch.from_numpy(np.load(folder / "scales" / "scale0_kernel.npy")).double()
    y = torch.from_numpy(read_image(PROTOCOL / "blurred" / f"{run['input']}.png").pixels).float()[None, None]
    last = [row for row in read_curve(folder / "curve.csv") if row["scale"] == 0][-1]
    return {
        "kernel_border": border_ratio(k),
        "data_mse": last["mse"],
        "kernel_peak": float(k.max() / k.sum()),
        "kernel_l2": float((k**2).sum()),
        "sharpness_gain": float(gradient_energy(x) / gradient_energy(resize_image(y, tuple(x.shape[-2:])))),
        "coarse_aligned_psnr": last["aligned_psnr"],
    }


def spearman(a, b) -> float:
    ranks = [np.argsort(np.argsort(np.asarray(v, dtype=float))) for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def table(rows: list[dict]) -> list[str]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["input"]), []).append(row)
    pairs = [g for g in groups.values() if len(g) == 2]
    lines = ["| signal | rho all | rho within | low wins | pick low (dB) | pick high (dB) |", "|---|---:|---:|---:|---:|---:|"]
    for name, words in SIGNALS.items():
        centred = [(r[name] - np.mean([s[name] for s in g]), r["isnr"] - np.mean([s["isnr"] for s in g])) for g in groups.values() for r in g]
        low_wins = sum((a[name] - b[name]) * (a["isnr"] - b["isnr"]) < 0 for a, b in pairs)
        pick_low = np.mean([min(g, key=lambda r: r[name])["isnr"] for g in pairs])
        pick_high = np.mean([max(g, key=lambda r: r[name])["isnr"] for g in pairs])
        rho_all = spearman([r[name] for r in rows], [r["isnr"] for r in rows])
        rho_within = spearman(*zip(*centred))
        lines.append(f"| {words} | {rho_all:+.2f} | {rho_within:+.2f} | {low_wins}/{len(pairs)} | {pick_low:.2f} | {pick_high:.2f} |")
    mean, best = np.mean([r["isnr"] for r in rows]), np.mean([max(r["isnr"] for r in g) for g in pairs])
    lines.append(f"\nmean ISNR of all runs {mean:.2f} dB; keeping the better seed of each input (oracle) {best:.2f} dB")
    return lines


def main() -> None:
    with open(BANK / "eval" / "runs.csv", newline="") as handle:
        runs = [r for r in csv.DictReader(handle) if r["method"] in METHODS]
    rows = [{**r, "isnr": float(r["aligned_isnr"]), **signals_of(r)} for r in runs]
    out = [f"# Signals at the end of the coarsest scale against the final aligned ISNR\n\n(`{Path(__file__).relative_to(ROOT)}`)\n"]
    for method in (*METHODS, "fast+improved"):
        chosen = [r for r in rows if r["method"] == method or (method == "fast+improved" and r["method"] in ("fast", "improved"))]
        out += [f"\n## {method} ({len(chosen)} runs)\n", *table(chosen)]
    text = "\n".join(out) + "\n"
    (ROOT / "benchmarks" / "results" / "start_score_evidence.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
