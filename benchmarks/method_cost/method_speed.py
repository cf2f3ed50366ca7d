"""Whole-job wall time of two (or more) methods on the same input, side by side.

Each job is a real `python -m lightning_deblur fit` process with the same thread count;
the methods take turns (A B, then B A, ...) so that drift of a shared machine hits them
alike. Prints each method's median wall time (the job's own `wall_time_s` from
metrics.json, and the process's, start-up included) and every ratio to the first
method; saves them under results/ beside this script with the machine.

    .venv/bin/python benchmarks/method_cost/method_speed.py --configs improved fast --rounds 1
    .venv/bin/python benchmarks/method_cost/method_speed.py --configs improved fast \\
        --image benchmarks/protocols/full_fidelity/blurred/kodim05_levin09_k5.png --kernel_size 7
    .venv/bin/python benchmarks/method_cost/method_speed.py --configs fast "fast_starts3=fast --model.starts 3" --rounds 2

A method is a config name under configs/, or ``LABEL=CONFIG OPTIONS…``: the config with
extra ``fit`` options, reported under LABEL. (Result files from before seed batches were
removed also hold whole seed batches, ``--seeds``, timed per seed.)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import ROOT, save  # noqa: E402

DEFAULT_IMAGE = ROOT / "benchmarks" / "protocols" / "full_fidelity" / "blurred" / "kodim05_levin09_k5.png"


def parse_method(method: str) -> tuple[str, str, list[str]]:
    """``fast`` -> ``("fast", "fast", [])``; ``"label=fast --model.starts 3"`` ->
    ``("label", "fast", ["--model.starts", "3"])``."""
    label, _, spec = method.partition("=")
    if not spec:
        return method, method, []
    config, *options = shlex.split(spec)
    return label, config, options


def run_job(method: str, args, folder: Path) -> dict | None:
    """One whole job; returns its metrics.json plus the process's wall time (None: it failed)."""
    label, config, options = parse_method(method)
    command = [
        sys.executable, "-W", "ignore", "-m", "lightning_deblur", "fit",
        "--config", str(ROOT / "configs" / f"{config}.yaml"), *options,
        "--data.image", args.image, "--data.kernel_size", str(args.kernel_size),
        "--seed_everything", str(args.seed), "--trainer.enable_progress_bar", "false",
        "--image_logging.every_n_steps", "0", "--checkpoint.every_n_steps", "0",
        "--trainer.logger.init_args.save_dir", str(folder), "--trainer.logger.init_args.name", label,
        *(["--trainer.precision", args.precision] if args.precision else []),
    ]  # fmt: skip
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": pythonpath}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        # Reported and skipped, so one method's failure does not cost the others' figures.
        print(f"{label} failed (exit code {done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr, flush=True)
        return None
    (run,) = sorted(folder.glob(f"{label}/version_*"))[-1:]
    metrics = json.loads((run / "metrics.json").read_text())
    return {"process_s": elapsed, "job_s": metrics["wall_time_s"], "iterations": metrics["iterations"],
            "precision": metrics["precision"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["improved", "fast"], help="names under configs/, or LABEL=CONFIG OPTIONS…")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--kernel_size", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default=None, help="force one precision (default: each config's own)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the order alternates between rounds")
    parser.add_argument("--out", type=Path, default=None, help="folder of the result file (default: this study's results/)")
    args = parser.parse_args()
    labels = [parse_method(method)[0] for method in args.configs]
    times: dict[str, list[dict]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            order = args.configs if round_index % 2 == 0 else args.configs[::-1]
            for method in order:
                config = parse_method(method)[0]
                result = run_job(method, args, Path(scratch) / f"round{round_index}")
                if result is None:
                    continue
                times[config].append(result)
                print(f"round {round_index} {config}: job {result['job_s']:.1f} s, process {result['process_s']:.1f} s, "
                      f"{result['iterations']} iterations, {result['precision']}", flush=True)
                # Saved after every job, so a run cut short (a lent machine's time limit) keeps what finished.
                path, summary = save_summary(times, args)
    if not any(times.values()):
        sys.exit("every job failed")
    ratio = "speedup_over_" + labels[0]
    for config, timing in summary.items():
        print(f"{config}: median job {timing['job_s']:.1f} s, process {timing['process_s']:.1f} s"
              + (f", {timing[ratio]:.2f}x faster than {labels[0]} (whole process)" if ratio in timing else ""))
    print(f"saved {path}")


def save_summary(times: dict[str, list[dict]], args) -> tuple[Path, dict]:
    """Medians and ratios to the first method of the jobs finished so far: the result
    file's path and the per-method summary written to it."""
    labels = list(times)
    first = labels[0]
    summary = {}
    for config, runs in times.items():
        if runs:
            job = statistics.median(r["job_s"] for r in runs)
            process = statistics.median(r["process_s"] for r in runs)
            summary[config] = {"job_s": job, "process_s": process, "runs": runs}
    for config in summary:
        if first in summary:
            ratio = summary[first]["process_s"] / summary[config]["process_s"]
            summary[config]["speedup_over_" + first] = ratio
    size = Path(args.image).stem
    name = f"method_speed_{'_'.join(labels)}_{size}_k{args.kernel_size}_t{args.threads}_{args.precision or 'default'}"
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return save(name, {"config": config, "methods": summary}, args.out), summary


if __name__ == "__main__":
    main()
