"""Which no-reference signal predicts a blind job's final aligned ISNR: at the end of its
coarsest scale (the score of ``--model.starts``), or at its end (a score to keep the best
of several finished seeds by)?

The evidence behind the score of ``--model.starts`` (lightning_deblur/core/starts.py), from
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

    python benchmarks/no_reference_scores/start_score_evidence.py   # writes benchmarks/no_reference_scores/results/start_score_evidence.md
    python benchmarks/no_reference_scores/start_score_evidence.py --at end   # writes benchmarks/no_reference_scores/results/final_score_evidence.md

At the end, the signals come from the result files (``deblurred.png``, ``kernel.npy``) of
every blind method of the bank; the data term there is the re-blurred result's mean
squared difference to the observation over the pixels the valid blur covers.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from lightning_deblur.core.curve_table import read_curve
from lightning_deblur.core.imagefiles import read_image
from lightning_deblur.core.resample import resize_image
from lightning_deblur.core.verdict import gradient_energy, relative_gradient_sparsity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import BANK, PROTOCOL, ROOT, final_signals_of, kernel_signals, write_text  # noqa: E402

METHODS = ("fast", "improved", "improved_l2sum")  # the bank's 3-scale methods
SIGNALS = {
    "kernel_border": "kernel border/peak",
    "data_mse": "data term (MSE)",
    "kernel_peak": "kernel peak",
    "kernel_l2": "kernel ‖k‖²",
    "kernel_spread": "kernel spread (radius over half its side)",
    "sharpness_gain": "sharpness gain",
    "gradient_sparsity": "gradient sparsity (ℓ1/ℓ2 of the 3×3-averaged gradients, over the input's)",
    "coarse_aligned_psnr": "coarse aligned PSNR (needs the sharp image)",
}


def signals_of(run: dict) -> dict:
    """The signals of one bank run at the end of its coarsest scale."""
    folder = ROOT / run["run_dir"]
    x = torch.from_numpy(read_image(folder / "scales" / "scale0_image.png").pixels).float()[None, None]
    k = torch.from_numpy(np.load(folder / "scales" / "scale0_kernel.npy")).double()
    y = torch.from_numpy(read_image(PROTOCOL / "blurred" / f"{run['input']}.png").pixels).float()[None, None]
    y = resize_image(y, tuple(x.shape[-2:]))  # the input at the coarsest scale's size
    last = [row for row in read_curve(folder / "curve.csv") if row["scale"] == 0][-1]
    return {
        **kernel_signals(k),
        "data_mse": last["mse"],
        "sharpness_gain": float(gradient_energy(x) / gradient_energy(y)),
        "gradient_sparsity": relative_gradient_sparsity(x, y),
        "coarse_aligned_psnr": last["aligned_psnr"],
    }


FINAL_METHODS = (
    "original", "improved", "improved_l2sum", "fast", "fast_starts3", "fast_fused", "fast_coarse500", "fast_ch64",
    "fast_x2", "fast_kl2x10", "improved_ch64", "improved_ch96",
)
"""The bank's blind methods."""

FINAL_SIGNALS = {
    "kernel_border": "kernel border/peak",
    "data_mse": "data term (re-blurred result against the input)",
    "kernel_peak": "kernel peak",
    "kernel_l2": "kernel ‖k‖²",
    "kernel_spread": "kernel spread (radius over half its side)",
    "sharpness_gain": "sharpness gain",
    "gradient_sparsity": "gradient sparsity (ℓ1/ℓ2 of the 3×3-averaged gradients, over the input's)",
}


def spearman(a, b) -> float:
    ranks = [np.argsort(np.argsort(np.asarray(v, dtype=float))) for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def table(rows: list[dict], signals: dict[str, str]) -> list[str]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["input"]), []).append(row)
    pairs = [g for g in groups.values() if len(g) == 2]
    lines = ["| signal | rho all | rho within | low wins | pick low (dB) | pick high (dB) |", "|---|---:|---:|---:|---:|---:|"]
    for name, words in signals.items():
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--at", choices=("coarsest", "end"), default="coarsest", help="where the signals are taken")
    at_end = parser.parse_args().at == "end"
    methods, signals = (FINAL_METHODS, FINAL_SIGNALS) if at_end else (METHODS, SIGNALS)
    with open(BANK / "eval" / "runs.csv", newline="") as handle:
        runs = [r for r in csv.DictReader(handle) if r["method"] in methods]
    measure = final_signals_of if at_end else signals_of
    rows = [{**r, "isnr": float(r["aligned_isnr"]), **measure(r)} for r in runs]
    where = "the end of the job" if at_end else "the end of the coarsest scale"
    out = [f"# Signals at {where} against the final aligned ISNR\n\n(`{Path(__file__).relative_to(ROOT)}`)\n"]
    groups = (*methods, "all") if at_end else (*methods, "fast+improved")
    for method in groups:
        pooled = ("fast", "improved") if method == "fast+improved" else methods if method == "all" else (method,)
        chosen = [r for r in rows if r["method"] in pooled]
        out += [f"\n## {method} ({len(chosen)} runs)\n", *table(chosen, signals)]
    text = "\n".join(out) + "\n"
    name = "final_score_evidence.md" if at_end else "start_score_evidence.md"
    write_text(Path(__file__).resolve().parent / "results" / name, text)
    print(text)


if __name__ == "__main__":
    main()
