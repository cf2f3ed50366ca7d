"""Throughput of one device with 1, 2, 4 … whole jobs at a time: jobs per minute.

For each count N, one `batch` runs N seeds of the full-fidelity protocol's first input
(`benchmarks/bank/full_fidelity_bank.py run`, ``--method`` as the bank runs it, float32; by
default ``fast``: an ``improved`` job there takes minutes even alone on an H200) with
``--jobs_per_device N`` on one device, and the batch's wall time (process start-up
included) gives N jobs / wall time. Each job's own ``wall_time_s`` is kept too. The counts
run one after another, so they do not share the device; the JSON file is rewritten after
each count, so a run cut short keeps what finished.

    python benchmarks/gpu/jobs_per_gpu.py --out results/jobs_per_gpu.json            # on a GPU
    python benchmarks/gpu/jobs_per_gpu.py --out /tmp/j.json --counts 1 2 \\
        --model.image_net.channels 8 --model.iterations 6 --model.scales.coarse_iterations 2   # smoke

Options after the known ones are passed to every job (smoke runs only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import machine, write_text  # noqa: E402

BANK_RUNNER = Path(__file__).resolve().parents[1] / "bank" / "full_fidelity_bank.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write; the runs go beside it")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4], help="jobs at a time on the device")
    parser.add_argument("--method", default="fast", help="a method of full_fidelity_bank.py")
    parser.add_argument("--seconds", type=float, default=None, help="stop starting counts after this many seconds")
    parser.add_argument("--mps", default="unknown", help="whether CUDA MPS was running (recorded only)")
    args, extra = parser.parse_known_args()
    runs = args.out.parent / f"{args.out.stem}_runs"
    results: dict = {"machine": machine(), "method": args.method, "mps": args.mps, "extra": extra, "counts": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    for count in args.counts:
        left = None if args.seconds is None else args.seconds - (time.perf_counter() - began)
        if left is not None and left <= 0:
            break
        root = runs / f"n{count}"
        command = [
            sys.executable, str(BANK_RUNNER), "run", "--methods", args.method, "--first_inputs", "1",
            "--seeds", f"0-{count - 1}", "--devices", "1", "--jobs_per_device", str(count), "--root", str(root),
            "--checkpoint.every_n_steps", "0", *extra,
        ]  # fmt: skip
        start = time.perf_counter()
        process = subprocess.Popen(command)
        try:
            code = process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            # SIGTERM, which the bank runner passes on to its batch, which stops its jobs:
            # a SIGKILL here would leave the jobs running and sharing the device with what
            # comes next (seen on a GPU machine). The batch gives its jobs up to
            # STOP_GRACE_S (30 s) to stop at a step before it kills them: wait longer.
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            code = "timeout"
        wall = time.perf_counter() - start
        jobs = [json.loads(p.read_text()) for p in sorted(root.glob(f"{args.method}/*/seed*/metrics.json"))]
        finished = [j for j in jobs if j.get("status") == "done"]
        row = {
            "jobs_at_a_time": count,
            "exit_code": code,
            "wall_s": wall,
            "jobs_finished": len(finished),
            "jobs_per_minute": 60 * len(finished) / wall,
            "job_wall_time_s": [j["wall_time_s"] for j in finished],
            "device": sorted({j.get("device", "?") for j in finished}),
        }
        results["counts"].append(row)
        write_text(args.out, json.dumps(results, indent=2) + "\n")
        print(f"{count} at a time: {len(finished)} jobs in {wall:.1f} s, {row['jobs_per_minute']:.2f} jobs/min", flush=True)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
