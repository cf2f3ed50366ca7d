"""Every results table of the studies, regenerated from committed data (no new runs).

Reads the banked run folders under benchmarks/results/ and writes, in order: the bank's
evaluation (seeds 0–1 and the held-out seeds; tables and figures), the Levin 255×255
evaluation, then each study's tables that are computed from banked runs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tables.py            # everything
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tables.py --only pool restarts

The measurements of time and memory are not regenerated: they are the machine's, each
kept as measured in its study's results/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"
LEVIN4 = f"{RESULTS}/levin4_255_seeds0-2"

STEPS: dict[str, list[list[str]]] = {
    "bank": [["benchmarks/bank/full_fidelity_bank.py", "evaluate"]],
    "heldout": [["benchmarks/bank/full_fidelity_bank.py", "evaluate", "--root", f"{RESULTS}/full_fidelity_heldout"]],
    "levin4": [[
        "-m", "lightning_deblur", "evaluate", "--manifest", "benchmarks/protocols/levin4_manifest.csv",
        "--results", f"fast_fused={LEVIN4}/fast_fused", "--output_dir", f"{LEVIN4}/eval",
    ]],  # fmt: skip
    "fast_method": [
        ["benchmarks/fast_method/bank_stop_points.py"],
        ["benchmarks/fast_method/bank_stop_points.py", "--root", f"{RESULTS}/full_fidelity_heldout", "--seeds", "2-3"],
        ["benchmarks/fast_method/bank_stop_points.py", "--root", LEVIN4, "--seeds", "0"],
        ["benchmarks/fast_method/bank_stop_points.py", "--root", LEVIN4],
    ],
    "no_reference_scores": [
        ["benchmarks/no_reference_scores/start_score_evidence.py"],
        ["benchmarks/no_reference_scores/start_score_evidence.py", "--at", "end"],
    ],
    "kernel_prior": [["benchmarks/kernel_prior/prior_choice_evidence.py"]],
    "restarts": [["benchmarks/restarts/restart_evidence.py"]],
    "pool": [["benchmarks/pool/pool_evidence.py"]],
    "kernel_centring": [["benchmarks/kernel_centring/centring_on_bank.py"]],
    "method_cost": [[
        "benchmarks/method_cost/quality_cost_figure.py", "--speed",
        "benchmarks/method_cost/results/method_speed_selfdeblur_fast_kodim05_levin09_k5_t1_default_amd-epyc.json",
        "benchmarks/method_cost/results/method_speed_improved_fast-fused-adam_kodim05_levin09_k5_t1_default_amd-epyc.json",
    ]],  # fmt: skip
}
"""What each part runs, in order (the bank's evaluation first: the studies read its runs.csv)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(STEPS), help="these parts only (default: all)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for part in args.only or STEPS:
        for command in STEPS[part]:
            print(f"[{part}] {' '.join(command)}", flush=True)
            done = subprocess.run([sys.executable, "-W", "ignore", *command], cwd=ROOT, env=env)
            if done.returncode:
                sys.exit(done.returncode)


if __name__ == "__main__":
    main()
