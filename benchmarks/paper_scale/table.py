"""Table 1 at the paper's scale: the banked paper-scale runs beside the paper's figures.

For each protocol (Levin's real blurs, 255×255, one input per kernel; Kodak synthetic,
256×256, image i with kernel i), runs ``evaluate`` over every method with finished runs
under ``benchmarks/results/paper_scale_<protocol>/`` (the true-kernel runs, where banked,
as the error ratio's reference), then writes ``benchmarks/paper_scale/results/table.md``:
per method the mean aligned and plain ISNR, the spread over seeds, the failures, the
error ratio, the CPUs that ran them (trajectories differ between CPUs); the paired
differences improved − original and improved_bf16 − improved (the latter only where both
ran on the same CPU) over the (input, seed) pairs both have, with their standard errors; the failures the
no-reference verdict catches; what the pool
(configs/pool.yaml) keeps where all its members are banked; every run's ISNR, marked by CPU; each
run of the papers' methods with its verdict, CPU and wall time; the runs
whose best shift lies on the ±5 px edge of the search, scored again up to ±10 px as
SelfDeblur's scoring does (``<bank>/eval_shift10``); and what the targets of Table 1 at this
scale still lack (seed 0). Beside
it, per protocol, ``results/inputs_<protocol>.png``: every run's aligned ISNR per input
(``figures inputs``), the papers' methods first. The method rows, paired
differences, the verdict's line and the default precision the pre-registered rule gives
(:data:`PRECISION_RULE`) also go into docs/RESULTS.md, and the papers' methods per input with
the paired differences and that rule's line into README.md, between their :data:`BLOCK` markers.

    .venv/bin/python benchmarks/paper_scale/table.py
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the package from this checkout
from _common import RESULTS, ROOT, banked_methods, cpu_label, write_text  # noqa: E402

from lightning_deblur.commands.evaluate_tables import FAILURE_ISNR_DB, read_runs_csv  # noqa: E402
from lightning_deblur.commands.pool import choose  # noqa: E402
from lightning_deblur.core.alignment import LEVIN_MAX_SHIFT  # noqa: E402
from lightning_deblur.core.manifest import read_manifest  # noqa: E402
from lightning_deblur.core.provenance import cpu_tier  # noqa: E402

OUT = ROOT / "benchmarks" / "paper_scale" / "results" / "table.md"
RESULTS_MD, README_MD = ROOT / "docs" / "RESULTS.md", ROOT / "README.md"
BLOCK = ("<!-- begin: written by benchmarks/paper_scale/table.py -->", "<!-- end: written by benchmarks/paper_scale/table.py -->")
"""The lines of docs/RESULTS.md and README.md between which the table's summary stands, rewritten at every run."""
PROTOCOL_TITLES = {
    "levin8": "Levin et al.'s real blurs, 255×255, one input per kernel (SelfDeblur's kernel sizes)",
    "kodak256": "Kodak synthetic, 256×256, image i with kernel i, 1 % noise",
}
PROTOCOLS = {
    "levin8": ROOT / "benchmarks" / "protocols" / "levin8_manifest.csv",
    "kodak256": ROOT / "benchmarks" / "protocols" / "kodak256" / "manifest.csv",
}
TRUE_KERNEL_METHOD = "nonblind_fast"
MAX_SHIFT, WIDE_SHIFT = LEVIN_MAX_SHIFT, 10.0
"""Shift searches in px: Levin et al.'s ``comp_upto_shift.m`` (the table's) and SelfDeblur's ``statistic_levin.m``."""
PAPER = {  # mean ISNR (dB) and mean per-input std over 10 runs, Kotera et al. Table 1
    ("levin8", "original"): (7.62, 1.36), ("levin8", "improved"): (8.23, 1.21),
    ("kodak256", "original"): (2.48, 2.52), ("kodak256", "improved"): (5.49, 2.12),
}  # fmt: skip
PAPER_INPUTS = {"levin8": "Levin's 32", "kodak256": "Kodak's 64"}
"""What the paper's means are taken over (10 runs each)."""
PAPERS_METHODS = ("original", "improved", "improved_bf16")
"""The papers' methods as the bank names them (improved_bf16: the improved config in bf16-mixed)."""
PAIRS = [("improved", "original", False), ("improved", "original", True), ("improved_bf16", "improved", True)]
"""Paired differences ``first − second`` over the (input, seed) keys both have; with the flag,
only where both ran on the same CPU. A precision pair on two CPU kinds would compare
trajectories, not precisions, so it counts only on one CPU; the methods' difference is
given over every pair and again over the pairs on one CPU (where the CPU's own effect on
a trajectory drops out)."""
PRECISION_RULE = {"fixed": "2026-12-06", "pairs": 8, "lowest_mean_db": -0.3}
"""The rule fixed in benchmarks/paper_scale/README.md (with three of the eight pairs in) that sets
the default precision: over the 8 Levin inputs' seed-0 pairs (improved_bf16 and improved on one
CPU), ``bf16-mixed`` stays the default only if the mean bf16 − float32 is above −0.3 dB and bf16
fails on no more inputs than float32; otherwise ``32-true``."""
POOL = {"improved": "improved", "fast": "fast_fused", "fast_kl2x10": "fast_kl2x10"}
"""configs/pool.yaml's members, in its order, and the bank's name of each (the same configs)."""


def evaluate(protocol: str, manifest: Path, max_shift: float = MAX_SHIFT, methods: list[str] | None = None) -> list[dict]:
    """``evaluate`` over the protocol's banked methods (or ``methods``) with shifts up to ``±max_shift`` px;
    its runs.csv rows as :func:`read_runs_csv` reads them (figures as floats, ``failed`` as bool; empty
    when none). Levin's ±5 px goes to ``<bank>/eval``, another search to ``<bank>/eval_shift<max_shift>``."""
    root = RESULTS / f"paper_scale_{protocol}"
    methods = methods or (banked_methods(root) if root.is_dir() else [])
    if not methods:
        return []
    output = root / ("eval" if max_shift == MAX_SHIFT else f"eval_shift{max_shift:g}")
    blind = [m for m in methods if m != TRUE_KERNEL_METHOD]
    reference = ["--true_kernel_results", str((root / TRUE_KERNEL_METHOD).relative_to(ROOT))] if TRUE_KERNEL_METHOD in methods else []
    command = [
        sys.executable, "-W", "ignore", "-m", "lightning_deblur", "evaluate", "--manifest", str(manifest.relative_to(ROOT)),
        "--output_dir", str(output.relative_to(ROOT)), "--max_shift", f"{max_shift:g}",
        "--results", *(f"{m}={(root / m).relative_to(ROOT)}" for m in blind), *reference,
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return read_runs_csv(output / "runs.csv")


def search_edge_rows(protocol: str, manifest: Path, runs: list[dict]) -> list[str]:
    """The runs whose best shift lies on the ±5 px edge of Levin's search, scored again up to ±10 px
    (SelfDeblur's ``statistic_levin.m``): on the edge the best shift may lie outside and the score be
    understated. Empty when no run is on the edge."""
    def on_edge(run: dict) -> bool:
        return max(abs(run["shift_y"]), abs(run["shift_x"])) >= MAX_SHIFT
    edge = [r for r in runs if on_edge(r)]
    if not edge:
        return []
    wide = {(r["method"], r["input"], r["seed"]): r for r in evaluate(protocol, manifest, WIDE_SHIFT, sorted({r["method"] for r in edge}))}
    title = f"Runs whose best shift lies on the ±{MAX_SHIFT:g} px edge of the search, scored again up to ±{WIDE_SHIFT:g} px"
    lines = [
        f"{title} (SelfDeblur's convention):", "",
        f"| method | input | seed | aligned ISNR ±{MAX_SHIFT:g} px | shift (dy, dx) | aligned ISNR ±{WIDE_SHIFT:g} px | shift (dy, dx) |",
        "|---|---|---:|---:|---|---:|---|",
    ]  # fmt: skip
    for r in edge:
        w = wide[(r["method"], r["input"], r["seed"])]
        lines.append(
            f"| {r['method']} | {r['input']} | {r['seed']} | {fmt(r['aligned_isnr'])} | ({r['shift_y']:g}, {r['shift_x']:g}) | "
            f"{fmt(w['aligned_isnr'])} | ({w['shift_y']:g}, {w['shift_x']:g}) |"
        )
    return lines


def per_input_figure(protocol: str, runs: list[dict]) -> Path:
    """``figures inputs`` over the protocol's runs.csv: the papers' methods first, then ours."""
    present = {r["method"] for r in runs}
    methods = [m for m in PAPERS_METHODS if m in present] + sorted(present - set(PAPERS_METHODS) - {TRUE_KERNEL_METHOD})
    figure = OUT.parent / f"inputs_{protocol}.png"
    command = [
        sys.executable, "-W", "ignore", "-m", "lightning_deblur", "figures", "inputs",
        "--runs", str((RESULTS / f"paper_scale_{protocol}" / "eval" / "runs.csv").relative_to(ROOT)),
        "--output", str(figure.relative_to(ROOT)), "--methods", *methods,
        "--title", f"{protocol} at the paper's scale: aligned ISNR per input (dB)",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return figure


UNRECORDED_CPU = "AMD EPYC"
"""The CPU of runs whose metrics.json predates its ``software`` record: the bank's first runs, all
made on the development machine (an AMD EPYC), as their commits say."""


def cpu(run: dict) -> str:
    """The CPU that ran ``run`` (a runs.csv row, whose ``cpu`` and ``cpu_features`` columns are
    its metrics.json's record), without the trademark marks, and its most capable vector
    extension where recorded (one model name covers CPUs of unlike speed and arithmetic):
    ``'Intel(R) Xeon(R) Processor'`` → ``'Intel Xeon'``, with ``'avx2'`` → ``'AMD EPYC (avx2)'``."""
    tier = cpu_tier(run.get("cpu_features", "").split())
    return cpu_label(run["cpu"] or UNRECORDED_CPU) + (f" ({tier})" if tier else "")


def cpu_counts(runs: list[dict]) -> str:
    """``'AMD EPYC 2, Intel Xeon 1'``: how many of ``runs`` (rows with a ``cpu`` key) each CPU ran."""
    return ", ".join(f"{name} {count}" for name, count in sorted(Counter(r["cpu"] for r in runs).items()))


def mean_and_se(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return statistics.fmean(values), se


def fmt(value: float, digits: int = 2) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def method_rows(protocol: str, runs: list[dict]) -> list[str]:
    lines = [
        f"| method | runs (inputs × seeds) | mean aligned ISNR | mean plain ISNR | mean per-input std | failures (< {FAILURE_ISNR_DB:g} dB) | mean error ratio | CPU (runs) | paper: ISNR / std |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for method in sorted({r["method"] for r in runs}):
        mine = [r for r in runs if r["method"] == method]
        inputs = sorted({r["input"] for r in mine})
        seeds = sorted({r["seed"] for r in mine})
        per_input_std = [
            statistics.pstdev([r["aligned_isnr"] for r in mine if r["input"] == name]) for name in inputs
        ]
        ratios = [r["error_ratio"] for r in mine if not math.isnan(r["error_ratio"])]
        paper = PAPER.get((protocol, method))
        lines.append(
            f"| {method} | {len(mine)} ({len(inputs)} × {len(seeds)}) | {fmt(statistics.fmean(r['aligned_isnr'] for r in mine))} "
            f"| {fmt(statistics.fmean(r['isnr'] for r in mine))} "
            f"| {fmt(statistics.fmean(per_input_std)) if len(seeds) > 1 else '— (one seed)'} "
            f"| {sum(r['failed'] for r in mine)} of {len(mine)} | {fmt(statistics.fmean(ratios)) if ratios else '—'} "
            f"| {cpu_counts(mine)} | {f'{paper[0]:.2f} / {paper[1]:.2f}' if paper else ''} |"
        )
    return lines


def paired_runs(runs: list[dict], first: str, second: str, same_cpu: bool) -> tuple[list[tuple[dict, dict]], int]:
    """The runs ``(first's, second's)`` of every (input, seed) both methods have, in key order,
    and how many such keys were left out for running on two CPUs (only with ``same_cpu``)."""
    by_key = {(r["method"], r["input"], r["seed"]): r for r in runs}
    keys = sorted((i, s) for m, i, s in by_key if m == first and (second, i, s) in by_key)
    pairs = [(by_key[(first, i, s)], by_key[(second, i, s)]) for i, s in keys]
    kept = [(a, b) for a, b in pairs if not same_cpu or a["cpu"] == b["cpu"]]
    return kept, len(pairs) - len(kept)


def paired_differences(runs: list[dict]) -> list[dict]:
    """The :data:`PAIRS` differences of aligned ISNR, each ``{"label", "diffs", "left_out"}``
    (``left_out``: pairs on two CPUs where the pair needs one); pairs with no key are omitted,
    and so is a same-CPU difference that leaves no pair out of the unrestricted one above it
    (the two would be one figure twice)."""
    found = []
    for first, second, same_cpu in PAIRS:
        pairs, apart = paired_runs(runs, first, second, same_cpu)
        diffs = [a["aligned_isnr"] - b["aligned_isnr"] for a, b in pairs]
        repeats = same_cpu and not apart and (first, second, False) in PAIRS
        if diffs and not repeats:
            label = f"{first} − {second}" + (" (same CPU)" if same_cpu else "")
            found.append({"label": label, "diffs": diffs, "left_out": apart})
    return found


def paired_rows(runs: list[dict]) -> list[str]:
    """The :data:`PAIRS` differences as a table: pairs, mean ± standard error, wins."""
    found = paired_differences(runs)
    if not found:
        return ["No paired runs yet (improved − original, improved_bf16 − improved)."]
    lines = ["| difference | pairs | mean ± standard error (dB) | wins |", "|---|---:|---:|---:|"]
    for pair in found:
        mean, se = mean_and_se(pair["diffs"])
        n = len(pair["diffs"])
        lines.append(f"| {pair['label']} | {n} | {fmt(mean)} ± {fmt(se)} | {sum(d > 0 for d in pair['diffs'])} of {n} |")
    notes = [f"{pair['label']} leaves out {pair['left_out']} pair(s) run on different CPUs." for pair in found if pair["left_out"]]
    return lines + (["", *notes] if notes else [])


def precision_rule_line(levin_runs: list[dict], seed: int = 0) -> str:
    """What :data:`PRECISION_RULE` says of the Levin runs at ``seed``: the pairs on one CPU so
    far, their mean difference and failures (aligned ISNR below 1 dB) per precision, and the
    default it gives: decided once all its pairs are in, or once no bf16 run still to come can
    change it, and "as it stands" before.

    The early decision: where every input still lacking a pair has its float32 run (whose CPU
    its bf16 run would then use), float32's failures are final and bf16's can only grow; if bf16
    already fails on more inputs, the rule gives ``32-true`` whatever those bf16 runs score."""
    seeded = [r for r in levin_runs if r["seed"] == seed]
    pairs, _ = paired_runs(seeded, "improved_bf16", "improved", same_cpu=True)
    rule = f"Default precision by the rule fixed on {PRECISION_RULE['fixed']} (benchmarks/paper_scale/README.md)"
    if not pairs:
        return f"{rule}: no bf16 / float32 pair on one CPU yet."
    mean = statistics.fmean(bf16["aligned_isnr"] - float32["aligned_isnr"] for bf16, float32 in pairs)
    bf16_failures, float32_failures = (sum(r["failed"] for r in side) for side in zip(*pairs))
    keeps_bf16 = mean > PRECISION_RULE["lowest_mean_db"] and bf16_failures <= float32_failures
    paired_inputs = {float32["input"] for _, float32 in pairs}
    unpaired_float32 = [r for r in seeded if r["method"] == "improved" and r["input"] not in paired_inputs]
    unpaired_failures = sum(r["failed"] for r in unpaired_float32)
    all_in = len(pairs) >= PRECISION_RULE["pairs"]
    settled_early = (
        not all_in
        and len(pairs) + len(unpaired_float32) >= PRECISION_RULE["pairs"]
        and bf16_failures > float32_failures + unpaired_failures
    )
    if settled_early:
        ending = (
            f"; decided, `32-true`: float32 runs on the {len(unpaired_float32)} input(s) still unpaired add "
            f"{unpaired_failures} failure(s), so no bf16 run to come can change it."
        )
    else:
        ending = f": {'decided' if all_in else 'as it stands'}, `{'bf16-mixed' if keeps_bf16 else '32-true'}`" + (
            "." if all_in else "; set when all the pairs are in."
        )
    return (
        f"{rule}: {len(pairs)} of {PRECISION_RULE['pairs']} Levin pairs on one CPU (seed {seed}); "
        f"mean bf16 − float32 {mean:+.2f} dB (the rule needs above {PRECISION_RULE['lowest_mean_db']:+.2f}); "
        f"failures bf16 {bf16_failures}, float32 {float32_failures} (bf16 may not have more)" + ending
    )


def remaining_rows(runs_by_protocol: dict[str, list[dict]], seed: int = 0) -> list[str]:
    """What the issue's targets still lack at ``seed``: original and improved in float32 on
    every input of both protocols (16 + 16, 8 of each on Levin), improved_bf16 on the 8 Levin
    inputs, and each of those paired with its float32 run on the same CPU."""
    names = {}
    for protocol, manifest in PROTOCOLS.items():
        names[protocol] = [row.name for row in read_manifest(manifest)]

    def run_of(protocol: str, method: str, name: str) -> dict | None:
        return next((r for r in runs_by_protocol.get(protocol, []) if (r["method"], r["input"], r["seed"]) == (method, name, seed)), None)

    lines = [f"| target | done | of | still to run (seed {seed}) |", "|---|---:|---:|---|"]
    for method in ("original", "improved"):
        missing = {p: [n for n in names[p] if not run_of(p, method, n)] for p in PROTOCOLS}
        total = sum(len(names[p]) for p in PROTOCOLS)
        done = total - sum(len(m) for m in missing.values())
        todo = "; ".join(f"{p}: {', '.join(m)}" for p, m in missing.items() if m) or "none"
        lines.append(f"| {method}, float32 | {done} | {total} | {todo} |")
    levin = names["levin8"]
    bf16_missing = [n for n in levin if not run_of("levin8", "improved_bf16", n)]
    lines.append(f"| improved_bf16 on levin8 | {len(levin) - len(bf16_missing)} | {len(levin)} | {', '.join(bf16_missing) or 'none'} |")
    needs: dict[str, list[str]] = {}
    for name in levin:
        bf16, fp32 = run_of("levin8", "improved_bf16", name), run_of("levin8", "improved", name)
        if bf16 and fp32 and bf16["cpu"] == fp32["cpu"]:
            continue
        if bf16 and not fp32:
            needs.setdefault(f"float32 on {bf16['cpu']}", []).append(name)
        elif fp32 and not bf16:
            needs.setdefault(f"bf16 on {fp32['cpu']}", []).append(name)
        else:  # neither, or the two on different CPUs
            needs.setdefault("both precisions on one CPU", []).append(name)
    paired = len(levin) - sum(len(v) for v in needs.values())
    todo = "; ".join(f"{what}: {', '.join(inputs)}" for what, inputs in needs.items()) or "none"
    lines.append(f"| bf16 / float32 pairs on one CPU (levin8) | {paired} | {len(levin)} | {todo} |")
    return lines


def verdict_line(runs: list[dict]) -> str:
    """How the no-reference verdict (``lightning_deblur.core.verdict``: ``no-blur``,
    ``kernel-at-border``) fares on these runs: the runs it flags, the failures it catches."""
    flagged = [r for r in runs if r["verdict"] != "ok"]
    failures = [r for r in runs if r["failed"]]
    caught = [r for r in flagged if r["failed"]]
    return (
        f"No-reference verdict: flags {len(flagged)} of {len(runs)} runs and catches {len(caught)} of "
        f"{len(failures)} {'failure' if len(failures) == 1 else 'failures'} (aligned ISNR below {FAILURE_ISNR_DB:g} dB)."
    )


def pool_rows(runs: list[dict]) -> list[str]:
    """What the pool keeps, by its own rule (:func:`lightning_deblur.commands.pool.choose`:
    the sparsest result), on the (input, seed) keys where every member is banked."""
    member_rows = {
        member: [{**r, "name": r["input"], "status": "done"} for r in runs if r["method"] == method]
        for member, method in POOL.items()
    }
    kept = [row for row in choose(member_rows) if row["status"] == "done"]
    if not kept:
        return [f"No input yet with every member of the pool banked ({', '.join(POOL.values())})."]
    lines = [
        "| input | seed | kept | pool (kept run) | " + " | ".join(POOL) + " |",
        "|---|---:|---|---:|" + "---:|" * len(POOL),
    ]
    for row in kept:
        cells = [fmt(row[f"{member}_aligned_isnr"]) for member in POOL]
        lines.append(f"| {row['name']} | {row['seed']} | {row['kept']} | {fmt(row['aligned_isnr'])} | " + " | ".join(cells) + " |")
    best = sum(
        row["aligned_isnr"] >= max(row[f"{member}_aligned_isnr"] for member in POOL) for row in kept
    )
    pool_mean = statistics.fmean(row["aligned_isnr"] for row in kept)
    improved_mean = statistics.fmean(row["improved_aligned_isnr"] for row in kept)
    lines += [
        "",
        f"Over these {len(kept)}: the pool {fmt(pool_mean)} dB, improved alone {fmt(improved_mean)} dB mean aligned ISNR; "
        f"the kept run is the best member's on {best} of {len(kept)}.",
    ]
    return lines


def per_run_rows(runs: list[dict]) -> list[str]:
    """Every run's aligned ISNR, input by method; runs on a CPU other than the most common one
    carry a mark, explained below the table."""
    methods = sorted({r["method"] for r in runs})
    counts = Counter(r["cpu"] for r in runs)
    marks = {name: "†" * rank for rank, name in enumerate(sorted(counts, key=lambda name: (-counts[name], name)))}
    lines = ["| input | seed | " + " | ".join(methods) + " |", "|---|---:|" + "---:|" * len(methods)]
    by_key = {(r["method"], r["input"], r["seed"]): r for r in runs}
    for name, seed in sorted({(r["input"], r["seed"]) for r in runs}):
        cells = [
            fmt(run["aligned_isnr"]) + marks[run["cpu"]] if (run := by_key.get((m, name, seed))) else "—"
            for m in methods
        ]
        lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
    legend = [f"{mark or 'unmarked'}: {name}" for name, mark in marks.items()]
    return lines + ["", "CPU of each run — " + "; ".join(legend) + "."]


def duration(seconds: float) -> str:
    """``'1 h 37 min'`` or ``'47 min'``; ``'—'`` when not recorded."""
    if math.isnan(seconds):
        return "—"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def ledger_rows(runs: list[dict]) -> list[str]:
    """One row per run of the papers' methods: its figures, verdict, CPU, threads (where
    recorded) and wall time (the whole job process: time a run was paused counts too)."""
    mine = sorted((r for r in runs if r["method"] in PAPERS_METHODS), key=lambda r: (r["input"], r["seed"], r["method"]))
    lines = [
        "| input | seed | method | aligned ISNR | plain ISNR | error ratio | verdict | CPU, threads | wall time |",
        "|---|---:|---|---:|---:|---:|---|---|---:|",
    ]
    for r in mine:
        count = r.get("cpu_threads")
        threads = f", {count} thread{'' if count == 1 else 's'}" if count else ""
        lines.append(
            f"| {r['input']} | {r['seed']} | {r['method']} | {fmt(r['aligned_isnr'])} | {fmt(r['isnr'])} "
            f"| {fmt(r['error_ratio'])} | {r['verdict']} | {r['cpu']}{threads} | {duration(r['wall_time_s'])} |"
        )
    return lines if mine else [f"No run of {', '.join(PAPERS_METHODS)} yet."]


def write_between_markers(path: Path, lines: list[str]) -> None:
    """Replace what stands between the :data:`BLOCK` markers of ``path`` with ``lines``
    (atomically), so a document's table always matches the bank; the text around the
    markers is left as it is.

    Raises:
        SystemExit: the markers are missing or out of order.
    """
    text = path.read_text()
    begin, end = text.find(BLOCK[0]), text.find(BLOCK[1])
    if begin < 0 or end < begin:
        raise SystemExit(f"error: {path} lacks the lines '{BLOCK[0]}' and '{BLOCK[1]}'; put them where the table goes")
    block = "\n".join([BLOCK[0], "", *lines, BLOCK[1]])
    write_text(path, text[:begin] + block + text[end + len(BLOCK[1]) :])


def results_block(summaries: dict[str, list[str]]) -> list[str]:
    """docs/RESULTS.md's block: per protocol its title, a link to its per-input figure and its
    summary (method rows, paired differences, verdict line)."""
    lines = []
    for protocol, summary in summaries.items():
        figure = OUT.parent / f"inputs_{protocol}.png"
        link = f"[per input]({Path('..') / figure.relative_to(ROOT)})"
        lines += [f"**{protocol}**: {PROTOCOL_TITLES[protocol]} ({link}).", "", *summary, ""]
    return lines


def readme_block(runs_by_protocol: dict[str, list[dict]], seed: int = 0) -> list[str]:
    """README.md's block: the papers' methods per input at ``seed`` (aligned ISNR, the CPUs
    that ran them), the paper's means, and the paired differences in a sentence each."""
    lines = [
        "| data set | input | " + " | ".join(PAPERS_METHODS) + " | CPU |",
        "|---|---|" + "---:|" * len(PAPERS_METHODS) + "---|",
    ]
    for protocol, runs in runs_by_protocol.items():
        by_key = {(r["method"], r["input"]): r for r in runs if r["seed"] == seed and r["method"] in PAPERS_METHODS}
        for name in dict.fromkeys(r["input"] for r in runs):
            row = [by_key.get((m, name)) for m in PAPERS_METHODS]
            if any(row):
                cells = [fmt(r["aligned_isnr"]) if r else "—" for r in row]
                cpus = " / ".join(sorted({r["cpu"] for r in row if r}))
                lines.append(f"| {protocol} | {name} | " + " | ".join(cells) + f" | {cpus} |")
    for protocol in runs_by_protocol:
        paper = [PAPER.get((protocol, m)) for m in PAPERS_METHODS]
        if any(paper):
            cells = [f"*{p[0]:.2f}*" if p else "" for p in paper]
            lines.append(f"| *{protocol}* | *paper: mean over {PAPER_INPUTS[protocol]}* | " + " | ".join(cells) + " | |")
    lines.append("")
    for protocol, runs in runs_by_protocol.items():
        for pair in paired_differences(runs):
            mean, se = mean_and_se(pair["diffs"])
            n = len(pair["diffs"])
            lines.append(f"- {protocol}, {pair['label']}: {mean:+.2f} ± {fmt(se)} dB over {n} pair{'s' if n > 1 else ''}.")
    if runs_by_protocol.get("levin8"):
        lines.append(f"- {precision_rule_line(runs_by_protocol['levin8'], seed)}")
    return lines + [""]


def main() -> None:
    sections = [
        "# Table 1 at the paper's scale (generated by `benchmarks/paper_scale/table.py`)",
        "",
        "Aligned ISNR: Levin et al.'s comparison (15 px border, shifts up to ±5 px in 0.25 px steps), in dB;",
        f"plain ISNR pixel for pixel. Failures: aligned ISNR below {FAILURE_ISNR_DB:g} dB. Error ratio: ‖x̂ − x‖ / ‖x̂_k − x‖ against",
        f"the `{TRUE_KERNEL_METHOD}` run of the same input (where banked): the true kernel with fast's 32-channel net",
        "and 1000 steps, a weaker solver than the papers' own at this scale, so their ratios can fall below 1",
        "(Levin et al. use the same non-blind solver for both). Paper: Kotera et al., 10 runs per input,",
        "all 32 Levin images and 64 Kodak pairs; here one input per kernel.",
    ]
    summaries, runs_by_protocol = {}, {}
    for protocol, manifest in PROTOCOLS.items():
        runs = runs_by_protocol[protocol] = [{**run, "cpu": cpu(run)} for run in evaluate(protocol, manifest)]
        sections += ["", f"## {protocol}", ""]
        if not runs:
            sections.append("No finished runs yet.")
            continue
        rule = ["", precision_rule_line(runs)] if protocol == "levin8" else []
        summaries[protocol] = method_rows(protocol, runs) + [""] + paired_rows(runs) + rule + ["", verdict_line(runs)]
        sections += summaries[protocol]
        sections += ["", "What the pool keeps (configs/pool.yaml: its members' aligned ISNR, dB):", ""] + pool_rows(runs)
        sections += ["", "Aligned ISNR of every run (dB):", ""]
        sections += per_run_rows(runs)
        sections += ["", "Every run of the papers' methods:", ""] + ledger_rows(runs)
        edge = search_edge_rows(protocol, manifest, runs)
        sections += ["", *edge] if edge else ["", f"No run's best shift lies on the ±{MAX_SHIFT:g} px edge of the search."]
        figure = per_input_figure(protocol, runs)
        sections += ["", f"Per input: [{figure.name}]({figure.name})."]
    sections += ["", "## What the issue's targets still lack", ""] + remaining_rows(runs_by_protocol)
    text = "\n".join(sections) + "\n"
    write_text(OUT, text)
    write_between_markers(RESULTS_MD, results_block(summaries))
    write_between_markers(README_MD, readme_block(runs_by_protocol))
    print(text)


if __name__ == "__main__":
    main()
