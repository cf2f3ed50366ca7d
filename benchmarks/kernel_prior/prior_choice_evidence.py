"""Kernel priors, one pick: does the re-blur residual, or the gradient sparsity, tell which
prior's result to keep?

`fast.yaml` weights its kernel ℓ2 term 0.1 (``fast_fused`` in the bank); ten times that
(``fast_kl2x10``) solves inputs whose true kernel is large and that the weak prior leaves
near a compact kernel (kodim04: 0.28 → 3.91 dB), but over-sharpens others into failure
(kodim01: 1.26 → −4.49 dB). A job could run both and keep one. The rule tried here keeps
the strong prior's result unless its re-blurred result misses the input by more than
``ratio`` times the weak prior's (mean squared re-blur residual, no reference needed):
a strong prior that forces a wrong kernel cannot explain the input as well.

For every (input, seed) run by both methods it prints both ISNRs, the residual ratio and
the pick; then, per seed set (the bank's seeds 0–1, on which the rule was found, and the
held-out seeds 2–3 made after it), the mean ISNR, failures (< 1 dB) and lowest run of:
the weak prior alone, the strong alone, the rule at several ratios, the result with the
lower gradient sparsity (:func:`lightning_deblur.core.verdict.gradient_sparsity`, found later,
on the bank's runs of every method), and an oracle that keeps the better of the two by
the true ISNR. Where the set also has the mild prior's runs (``fast_kl2x3``, weight 0.3)
for every pair, three more rows: the mild prior alone, the sparsest of the three results
and the three's oracle (a job that runs three priors and keeps one without a reference).

    python benchmarks/bank/full_fidelity_bank.py run --methods fast_fused,fast_kl2x10 --seeds 2-3 \\
        --concurrent --root benchmarks/results/full_fidelity_heldout
    python benchmarks/bank/full_fidelity_bank.py run --methods fast_kl2x3 --seeds 2-3 \\
        --root benchmarks/results/full_fidelity_heldout
    python benchmarks/kernel_prior/prior_choice_evidence.py   # writes benchmarks/kernel_prior/results/prior_choice_evidence.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lightning_deblur.commands.evaluate_tables import FAILURE_ISNR_DB

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import BANK, HELDOUT, ROOT, final_signals_of, write_report  # noqa: E402

SEED_SETS = {
    "seeds 0–1 (the rule found here)": (BANK, {0, 1}),
    "seeds 2–3 (held out)": (HELDOUT, {2, 3}),
}
"""Each set: the bank root and the seeds taken from it (the held-out root has more since)."""
WEAK, STRONG, MILD = "fast_fused", "fast_kl2x10", "fast_kl2x3"
RATIOS = (1.5, 1.7, 2.0, 2.5, 3.0)


def pairs_in(root: Path, seeds: set[int]) -> list[dict]:
    """Every (input, seed) of ``seeds`` that both methods finished under ``root``: ISNR, re-blur
    residual and gradient sparsity of each, and of the mild prior's run where there is one."""
    found = []
    for metrics_path in sorted((root / WEAK).glob("*/seed*/metrics.json")):
        run = metrics_path.parent
        if int(run.name.removeprefix("seed")) not in seeds:
            continue
        other = root / STRONG / run.parent.name / run.name
        if not (other / "metrics.json").is_file():
            continue
        pair = {"input": run.parent.name, "seed": run.name}
        mild = root / MILD / run.parent.name / run.name
        runs = ((WEAK, run), (STRONG, other), *([(MILD, mild)] if (mild / "metrics.json").is_file() else []))
        for method, folder in runs:
            record = {"run_dir": folder, "input": run.parent.name}
            signals = final_signals_of(record)
            pair[method] = {
                "isnr": json.loads((folder / "metrics.json").read_text())["aligned_isnr"],
                "residual": signals["data_mse"],
                "sparsity": signals["gradient_sparsity"],
            }
        pair["ratio"] = pair[STRONG]["residual"] / pair[WEAK]["residual"]
        found.append(pair)
    return found


def picked(pair: dict, ratio: float) -> float:
    """The ISNR the rule keeps: the strong prior's unless its residual exceeds ``ratio``× the weak one's."""
    return pair[WEAK]["isnr"] if pair["ratio"] > ratio else pair[STRONG]["isnr"]


def sparsest(pair: dict, methods: tuple[str, ...]) -> float:
    """The ISNR kept by the other rule: the result of ``methods`` with the lowest gradient sparsity."""
    return min((pair[method] for method in methods), key=lambda run: run["sparsity"])["isnr"]


def summary_row(label: str, values: list[float]) -> str:
    failures = sum(value < FAILURE_ISNR_DB for value in values)
    return f"| {label} | {np.mean(values):.2f} | {np.median(values):.2f} | {min(values):.2f} | {failures} |"


def report() -> str:
    lines = [
        "# Kernel priors, one pick: the re-blur residual rule and the gradient sparsity\n",
        f"(`{Path(__file__).relative_to(ROOT)}`; weak prior `{WEAK}` (kernel ℓ2 weight 0.1), strong "
        f"`{STRONG}` (1.0), mild `{MILD}` (0.3); the rule keeps the strong prior's result unless its re-blur "
        f"residual is more than `ratio`× the weak one's; the sparsity keeps the result with the lowest "
        f"gradient sparsity; failure: aligned ISNR < {FAILURE_ISNR_DB:g} dB)\n",
    ]
    for label, (root, seeds) in SEED_SETS.items():
        pairs = pairs_in(root, seeds)
        if not pairs:
            lines.append(f"\n## {label}: no runs under {root.relative_to(ROOT)}\n")
            continue
        lines += [
            f"\n## {label}: {len(pairs)} (input, seed) pairs\n",
            f"| input | seed | {WEAK} ISNR | {STRONG} ISNR | residual ratio |",
            "|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {p['input']} | {p['seed']} | {p[WEAK]['isnr']:.2f} | {p[STRONG]['isnr']:.2f} | {p['ratio']:.2f} |"
            for p in pairs
        ]
        lines += ["", "| pick | mean ISNR (dB) | median | lowest run | failures |", "|---|---:|---:|---:|---:|"]
        lines.append(summary_row(f"{WEAK} alone", [p[WEAK]["isnr"] for p in pairs]))
        lines.append(summary_row(f"{STRONG} alone", [p[STRONG]["isnr"] for p in pairs]))
        for ratio in RATIOS:
            lines.append(summary_row(f"rule, ratio {ratio:g}", [picked(p, ratio) for p in pairs]))
        lines.append(summary_row("the sparser result (gradient sparsity)", [sparsest(p, (WEAK, STRONG)) for p in pairs]))
        lines.append(summary_row("oracle (true ISNR)", [max(p[WEAK]["isnr"], p[STRONG]["isnr"]) for p in pairs]))
        if all(MILD in p for p in pairs):
            three = (WEAK, MILD, STRONG)
            lines.append(summary_row(f"{MILD} alone", [p[MILD]["isnr"] for p in pairs]))
            lines.append(summary_row("the sparsest of the three", [sparsest(p, three) for p in pairs]))
            lines.append(summary_row("oracle of the three", [max(p[m]["isnr"] for m in three) for p in pairs]))
    return "\n".join(lines) + "\n"


def main() -> None:
    write_report(__doc__, report, Path(__file__).resolve().parent / "results" / "prior_choice_evidence.md")


if __name__ == "__main__":
    main()
