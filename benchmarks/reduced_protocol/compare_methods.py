"""Original vs improved method on the same inputs and seeds: mean ISNR, per-input spread,
failure rate. The reduced CPU protocol runs in about an hour on a 2-core machine.

Protocol (defaults): `synth` makes 8 inputs, Kodak kodim01…08 each blurred by one Levin
kernel (image i with kernel i) resized by 1/2 (sizes 9, 9, 7, 13, 7, 11, 11, 11: the
blur-to-image ratio of the full kernels on 192×192 images), 96×96 grey crops of the most
textured region, 1 % Gaussian noise, seed 0; the true kernel size is given.
Each input runs with seeds 0, 1, 2 under each method, with the reduced schedules of
benchmarks/protocols/ (image net 32 channels, iterations and thresholds ÷5). ISNR is
measured after Levin-style alignment (15 px border, shifts ≤ 5 px in 0.25 px steps);
a run fails when its ISNR is below 1 dB.

    .venv/bin/python benchmarks/reduced_protocol/compare_methods.py --workers 2
    .venv/bin/python benchmarks/reduced_protocol/compare_methods.py --seeds 0-9 --size 192 --kernel_scale 1   (longer)

Finished runs are kept in --work_dir and skipped when the command is repeated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import DATA, ROOT, save  # noqa: E402

from lightning_deblur.commands.evaluate_tables import FAILURE_ISNR_DB

METHODS = {
    "original": [ROOT / "configs" / "selfdeblur.yaml", ROOT / "benchmarks" / "protocols" / "reduced_original.yaml"],
    "improved": [ROOT / "configs" / "improved.yaml", ROOT / "benchmarks" / "protocols" / "reduced_improved.yaml"],
}


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def make_dataset(work: Path, size: int, noise: float, kernel_scale: float) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from lightning_deblur.core.manifest import read_manifest
    from lightning_deblur.commands.synth import synthesize

    data = work / "data"
    if not (data / "manifest.csv").exists():
        synthesize(
            images=str(DATA / "kodak"), kernels=str(DATA / "levin" / "kernels"), output_dir=str(data),
            size=size, mode="textured", noise_std=noise, seed=0, pairs="diagonal", kernel_scale=kernel_scale,
        )  # fmt: skip
    return read_manifest(data / "manifest.csv")


def run_job(case: dict, method: str, seed: int, work: Path, threads: int, precision: str, channels: int | None) -> dict:
    """One fit in its own process; returns its metrics.json (or the error)."""
    label = method if channels is None else f"{method}_ch{channels}"
    label = label if precision == "32-true" else f"{label}_{precision}"
    run_dir = work / "runs" / label / case.name / f"seed{seed}"
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.exists():
        kh, kw = case.kernel_size
        configs = [arg for path in METHODS[method] for arg in ("--config", str(path))]
        command = [
            sys.executable, "-W", "ignore", "-m", "lightning_deblur", "fit", *configs,
            "--data.image", case.image, "--data.sharp", case.sharp, "--data.kernel_size", f"[{kh}, {kw}]",
            "--seed_everything", str(seed), "--trainer.precision", precision,
            *([] if channels is None else ["--model.image_net.channels", str(channels)]),
            "--trainer.logger.init_args.save_dir", str(run_dir.parent),
            "--trainer.logger.init_args.name", "", "--trainer.logger.init_args.version", run_dir.name,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not metrics_file.exists():
            return {"method": label, "name": case.name, "seed": seed, "error": done.stderr.strip()[-500:]}
    metrics = json.loads(metrics_file.read_text())
    return {"method": label, "name": case.name, "seed": seed, **metrics}


def summarize(results: list[dict]) -> dict:
    summary = {}
    for method in dict.fromkeys(r["method"] for r in results):
        rows = [r for r in results if r["method"] == method and "aligned_isnr" in r]
        per_input: dict[str, list[float]] = {}
        for row in rows:
            per_input.setdefault(row["name"], []).append(row["aligned_isnr"])
        summary[method] = {
            "runs": len(rows),
            "errors": sum(1 for r in results if r["method"] == method and "error" in r),
            "mean_isnr": statistics.fmean(r["aligned_isnr"] for r in rows),
            "median_isnr": statistics.median(r["aligned_isnr"] for r in rows),
            "mean_plain_isnr": statistics.fmean(r["isnr"] for r in rows),
            "mean_per_input_std": statistics.fmean(statistics.pstdev(v) for v in per_input.values()),
            "failure_rate": sum(r["aligned_isnr"] < FAILURE_ISNR_DB for r in rows) / len(rows),
            "mean_wall_time_s": statistics.fmean(r["wall_time_s"] for r in rows),
            "per_input_mean_isnr": {name: statistics.fmean(v) for name, v in sorted(per_input.items())},
        }
    return summary


def markdown(summary: dict) -> str:
    lines = [
        "| method | runs | mean ISNR (dB) | median | mean per-input std | failures (ISNR < 1 dB) | mean plain ISNR | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        lines.append(
            f"| {method} | {s['runs']} | {s['mean_isnr']:.2f} | {s['median_isnr']:.2f} | {s['mean_per_input_std']:.2f} "
            f"| {s['failure_rate']:.0%} | {s['mean_plain_isnr']:.2f} | {s['mean_wall_time_s']:.0f} |"
        )
    names = list(next(iter(summary.values()))["per_input_mean_isnr"])
    lines += ["", "| input | " + " | ".join(summary) + " |", "|---|" + "---|" * len(summary)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{s['per_input_mean_isnr'].get(name, float('nan')):.2f}" for s in summary.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=str(ROOT / "runs" / "compare_methods"), help="data and runs; reused")
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--kernel_scale", type=float, default=0.5)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2, help="jobs at once (one CPU thread each by default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--methods", default="original,improved", help="comma-separated: original, improved")
    parser.add_argument("--precision", default="32-true", help="trainer precision of every job, e.g. bf16-mixed")
    parser.add_argument("--channels", type=int, default=None, help="image net width instead of the protocol's 32")
    args = parser.parse_args()
    work = Path(args.work_dir)
    cases = make_dataset(work, args.size, args.noise, args.kernel_scale)
    methods = args.methods.split(",")
    jobs = [(case, method, seed) for seed in parse_seeds(args.seeds) for case in cases for method in methods]
    started = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        results = []
        for index, result in enumerate(pool.map(lambda job: run_job(*job, work, args.threads, args.precision, args.channels), jobs), 1):
            results.append(result)
            status = "error" if "error" in result else f"ISNR {result.get('aligned_isnr', float('nan')):+.2f} dB"
            print(f"[{index}/{len(jobs)}] {result['method']:8s} {result['name']} seed {result['seed']}: {status}", flush=True)
    summary = summarize(results)
    table = markdown(summary)
    print(table)
    tag = ("" if args.channels is None else f"_ch{args.channels}") + ("" if args.precision == "32-true" else f"_{args.precision}")
    path = save(f"compare_methods_{args.size}px_seeds{args.seeds}_{'_'.join(methods)}{tag}", {
        "config": vars(args), "elapsed_s": time.perf_counter() - started, "summary": summary, "runs": results,
        "markdown": table,
    })  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
