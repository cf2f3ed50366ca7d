"""Would restarting a failed run with a new seed remove the failures? Estimated from the
full-fidelity bank's runs alone (no new runs).

A restart on a verdict reruns a job with another seed when a no-reference verdict says
its result failed. The bank holds two seeds of every (method, input), so each run's
restart can be stood in for by the other seed's run: a draw from the same distribution a
new seed would draw from (not the very run a restart would make). For each blind method
of the bank and two triggers it prints the runs restarted (the extra cost, in jobs) and
the failures (aligned ISNR < 1 dB) and mean ISNR before and after one restart, keeping
the restart's result:

- ``no-blur``: restart when :mod:`lightning_deblur.core.verdict`'s verdict is ``no-blur``
  (``eval/runs.csv``'s ``verdict``, as ``evaluate`` recomputes it from the run's files):
  what ``--model.restarts`` does;
- ``any verdict``: restart on ``kernel-at-border`` too;
- ``oracle``: restart exactly the runs that failed (a trigger no job has, since it needs
  the sharp image): the most one restart could do with any trigger.

Where the bank holds runs of a method with ``--model.restarts`` (``improved_restarts1``,
``fast_restarts1``), a second table sets them against the same method's runs without
restarts on the same (input, seed): measured, not estimated. Runs on another machine
follow another trajectory even before any restart (the bank's ``improved`` ran mostly on
an H200), so the table also gives each run's own first pass (its aligned ISNR at the end
of that pass, from its curve.csv): first pass against result is the restart's effect
alone. Its totals add the mean per-input std over seeds and the blind steps the restarts
added (their cost in steps; wall time follows the steps within a run). The estimate leaves
those methods out.

    python benchmarks/restarts/restart_evidence.py   # writes benchmarks/restarts/results/restart_evidence.md
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from lightning_deblur.core.curve_table import read_curve

from lightning_deblur.commands.evaluate_tables import FAILURE_ISNR_DB, mean_per_input_std

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import BANK, ROOT, write_text  # noqa: E402

EVALUATION = BANK / "eval" / "runs.csv"

TRIGGERS = {
    "no-blur": lambda run: run["verdict"] == "no-blur",
    "any verdict": lambda run: run["verdict"] not in ("ok", ""),
    "oracle": lambda run: run["isnr"] < FAILURE_ISNR_DB,
}


MEASURED = {"improved_restarts1": "improved", "fast_restarts1": "fast_fused"}
"""Each bank method with one restart allowed -> the same method without restarts."""


def paired_runs(rows: list[dict]) -> dict[str, list[tuple[dict, dict]]]:
    """Per method, each run with its restart's stand-in (the same input's other seed);
    inputs without exactly two seeds are left out."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["input"]), []).append(row)
    paired: dict[str, list[tuple[dict, dict]]] = {}
    for (method, _), runs in groups.items():
        if len(runs) == 2:
            paired.setdefault(method, []).extend([(runs[0], runs[1]), (runs[1], runs[0])])
    return paired


def after_one_restart(pairs: list[tuple[dict, dict]], trigger) -> tuple[list[float], int]:
    """Each run's final ISNR when ``trigger`` restarts it once (the restart's result kept),
    and how many runs restarted."""
    final, restarted = [], 0
    for run, other in pairs:
        if trigger(run):
            final.append(other["isnr"])
            restarted += 1
        else:
            final.append(run["isnr"])
    return final, restarted


def report(rows: list[dict]) -> str:
    lines = [
        "# Restarting failed runs with a new seed: estimated from the bank's seed pairs\n",
        f"(`{Path(__file__).relative_to(ROOT)}`; each restart stood in for by the input's other seed; "
        f"failure: aligned ISNR < {FAILURE_ISNR_DB:g} dB)\n",
        "| method | runs | failures | mean ISNR (dB) | trigger | restarted (extra jobs) | failures after | "
        "mean ISNR after (dB) | inputs failing both seeds |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for method, pairs in paired_runs(rows).items():
        before = [run["isnr"] for run, _ in pairs]
        stuck = len({run["input"] for run, other in pairs if run["isnr"] < FAILURE_ISNR_DB and other["isnr"] < FAILURE_ISNR_DB})
        failures = sum(value < FAILURE_ISNR_DB for value in before)
        for name, trigger in TRIGGERS.items():
            after, restarted = after_one_restart(pairs, trigger)
            lines.append(
                f"| {method} | {len(pairs)} | {failures} | {np.mean(before):.2f} | {name} | "
                f"{restarted} ({restarted / len(pairs):.0%}) | {sum(v < FAILURE_ISNR_DB for v in after)} | "
                f"{np.mean(after):.2f} | {stuck} |"
            )
    return "\n".join(lines) + "\n"


def restarted(row: dict) -> bool:
    """Whether the run restarted (runs.csv's ``restarts``: empty without the option)."""
    return int(row["restarts"] or 0) > 0


def first_pass(row: dict) -> tuple[float, int, int]:
    """A run's aligned ISNR at the end of its first pass over the blind scales (its curve's
    row at that step; its final ISNR where it did not restart), and the blind steps of its
    first pass and of all its passes (from metrics.json's ``attempts``)."""
    run = ROOT / row["run_dir"]
    attempts = json.loads((run / "metrics.json").read_text())["attempts"]
    end, last = attempts[0]["end_step"], attempts[-1]["end_step"]
    if not restarted(row):
        return row["isnr"], end, last
    (at_end,) = [r for r in read_curve(run / "curve.csv") if r["step"] == end]
    return at_end["aligned_psnr"] - float(row["input_aligned_psnr"]), end, last


def by_input(inputs: list[str], values: list[float]) -> dict[str, list[float]]:
    """The values grouped by their input's name."""
    groups: dict[str, list[float]] = {}
    for name, value in zip(inputs, values):
        groups.setdefault(name, []).append(value)
    return groups


def measured_report(rows: list[dict]) -> str:
    """Runs with restarts against the same (input, seed) without: per restarted run, and
    per method over every run both have."""
    by_run = {(row["method"], row["input"], row["seed"]): row for row in rows}
    lines = [
        "\n## Measured: runs with one restart allowed against the same runs without\n",
        "| method | against | input | seed | ISNR without (dB) | verdict without | restarts | first pass (dB) | result (dB) |",
        "|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    totals = []
    for method, plain in MEASURED.items():
        pairs = [
            (by_run[(plain, row["input"], row["seed"])], row)
            for row in rows
            if row["method"] == method and (plain, row["input"], row["seed"]) in by_run
        ]
        passes = [first_pass(with_restarts) for _, with_restarts in pairs]
        first = [isnr for isnr, _, _ in passes]
        for (without, with_restarts), first_isnr in zip(pairs, first):
            if restarted(with_restarts):
                lines.append(
                    f"| {method} | {plain} | {without['input']} | {without['seed']} | {without['isnr']:.2f} | "
                    f"{without['verdict']} | {with_restarts['restarts']} | {first_isnr:.2f} | "
                    f"{with_restarts['isnr']:.2f} |"
                )
        if pairs:
            before = [without["isnr"] for without, _ in pairs]
            after = [with_restarts["isnr"] for _, with_restarts in pairs]
            count = sum(restarted(with_restarts) for _, with_restarts in pairs)
            inputs = [without["input"] for without, _ in pairs]
            spread = [mean_per_input_std(by_input(inputs, values)) for values in (before, first, after)]
            first_steps, all_steps = sum(p[1] for p in passes), sum(p[2] for p in passes)
            totals.append(
                f"| {method} | {plain} | {len(pairs)} | {count} | {sum(v < FAILURE_ISNR_DB for v in before)} | "
                f"{sum(v < FAILURE_ISNR_DB for v in first)} | {sum(v < FAILURE_ISNR_DB for v in after)} | "
                f"{np.mean(before):.2f} | {np.mean(first):.2f} | {np.mean(after):.2f} | "
                f"{spread[0]:.2f} | {spread[1]:.2f} | {spread[2]:.2f} | {all_steps / first_steps - 1:+.1%} |"
            )
    lines += [
        "",
        "| method | against | runs in both | restarted | failures without | failures, first passes | failures with | "
        "mean ISNR without (dB) | first passes | with | mean per-input std without (dB) | first passes | with | "
        "blind steps added by restarts |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *totals,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=EVALUATION, help="evaluate's runs.csv of the bank")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "restart_evidence.md")
    args = parser.parse_args()
    with open(args.runs, newline="") as handle:
        # Non-blind runs (the true kernel given, kernel error 0) have nothing to restart.
        rows = [
            {**row, "isnr": float(row["aligned_isnr"])}
            for row in csv.DictReader(handle)
            if float(row["kernel_error"] or 0) > 0
        ]
    # The estimate stands a seed in for a restart: only for runs made without restarts.
    text = report([row for row in rows if not row["restarts"]]) + measured_report(rows)
    write_text(args.output, text)
    print(text)


if __name__ == "__main__":
    main()
