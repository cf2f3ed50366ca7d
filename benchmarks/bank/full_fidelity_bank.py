"""The full-fidelity bank: the papers' methods, unchanged, on inputs this CPU can afford.

Protocol (benchmarks/protocols/full_fidelity/, made once by `synth`, see its README):
8 Kodak crops of 96×96 (grey, most textured window), image i blurred by Levin kernel i
resized by 1/2 (7×7 to 13×13), 1 % Gaussian noise, seed 0. Methods, every option as the
shipped config has it (128-channel image net, 500/500/5000 iterations, thresholds at
2000, learning-rate halvings at 2000/3000/4000), in float32 on every device:

- ``original``: configs/selfdeblur.yaml
- ``improved``: configs/improved.yaml (kernel ℓ2 as the mean of k²)
- ``improved_l2sum``: configs/improved.yaml with ``--model.kernel_l2_reduction sum``
  (the kernel ℓ2 as the paper writes it, ‖k‖²)
- ``fast``: configs/fast.yaml, this project's own method (32-channel net, 5× shorter
  schedules), not part of the 48 papers' runs, with PyTorch's default Adam (as banked
  before fast.yaml turned on the fused Adam); ``fast_fused``: fast.yaml as shipped
- ``fast600``: ``fast_fused`` with its finest scale stopped at 600 iterations, also ours
- ``fast_starts3``: ``fast`` with ``--model.starts 3`` (three starts of the coarsest
  scale, the best by a no-reference score continues), also ours
- ``fast_coarse500``: ``fast_fused`` with the improved method's coarse scales (500
  iterations each, full learning rate), also ours
- ``fast_ch64``: ``fast_fused`` with a 64-channel image net, also ours
- ``fast_x2``: ``fast_fused`` with every schedule 2× longer, also ours
- ``fast_ch64_x2``: both of the two above at once, also ours
- ``fast_kl2x10``, ``fast_kl2x3``: ``fast_fused`` with the kernel ℓ2 weight 1.0 or 0.3
  instead of 0.1, also ours
- ``improved_restarts1``, ``fast_restarts1``: configs/improved.yaml and ``fast_fused``
  with one restart on the no-blur verdict (``--model.restarts 1``), also ours
- ``improved_ch32``, ``improved_ch64``, ``improved_ch96``: configs/improved.yaml with a
  32-, 64- or 96-channel image net, every schedule unchanged (what width costs in quality)
- ``nonblind_fast``: not blind (configs/nonblind.yaml, the true kernel from the
  manifest) with fast's net and 5× shorter schedule: the ceiling of each input for fast

Each (method, input, seed) is one `batch` job under
benchmarks/results/full_fidelity_bank/<method>/<input>/seed<k>/; finished jobs are
skipped, so the command resumes, and slices can run on different machines. Only small
files are kept in git (metrics.json, curve.csv, kernel.npy/png, deblurred.png,
config.yaml); TensorBoard events and checkpoints are ignored.

    # run (resumable); on a GPU several jobs per device
    .venv/bin/python benchmarks/bank/full_fidelity_bank.py run --methods improved --seeds 2
    .venv/bin/python benchmarks/bank/full_fidelity_bank.py run --seeds 0-1 --jobs_per_device 5 --concurrent
    # a slice: the inputs where a long method's outcome is in question first
    .venv/bin/python benchmarks/bank/full_fidelity_bank.py run --methods improved_restarts1 --inputs kodim05_levin09_k5 --seeds 1
    # tables and figures from whatever is banked (or --methods a,b: a method still running left out)
    .venv/bin/python benchmarks/bank/full_fidelity_bank.py evaluate
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import BANK, PROTOCOL, ROOT  # noqa: E402

FAST_SCHEDULES_X2 = [
    "--model.iterations", "2000", "--model.scales.coarse_iterations", "200",
    "--lr_schedule.milestones", "[800, 1200, 1600]",
    "--schedule.weights", "{mse: {0: 1.0, 800: 0.0}, ssim: {800: 1.0}, tv: {800: 0.01}, kernel_l2: {0: 0.1, 800: 0.0}}",
]  # fmt: skip
"""fast.yaml's schedules all twice as long (its switch and milestones moved with them)."""

METHODS = {
    "original": ["--config", str(ROOT / "configs" / "selfdeblur.yaml")],
    "improved": ["--config", str(ROOT / "configs" / "improved.yaml")],
    "improved_l2sum": ["--config", str(ROOT / "configs" / "improved.yaml"), "--model.kernel_l2_reduction", "sum"],
    # This project's own method, judged against the papers' on the same inputs and seeds;
    # banked with PyTorch's default Adam, before fast.yaml turned on the fused one.
    "fast": ["--config", str(ROOT / "configs" / "fast.yaml"), "--model.optimizer.fused", "false"],
    # fast with three starts of the coarsest scale, continuing from the best-scoring one.
    "fast_starts3": ["--config", str(ROOT / "configs" / "fast.yaml"), "--model.starts", "3", "--model.optimizer.fused", "false"],
    # fast.yaml as shipped: fused Adam.
    "fast_fused": ["--config", str(ROOT / "configs" / "fast.yaml")],
    # fast_fused with its finest scale stopped at iteration 600 (not 1000), where
    # fast_fused's curves peak on these 96x96 inputs (bank_stop_points.py); larger images
    # lose by it (docs/RESULTS.md), so fast.yaml keeps 1000.
    "fast600": ["--config", str(ROOT / "configs" / "fast.yaml"), "--model.iterations", "600", "--lr_schedule.milestones", "[400]"],
    # fast_fused with the improved method's coarse scales (500 iterations each at the full
    # learning rate, not 100): do the coarse scales, where the kernel takes shape, decide
    # fast's failures?
    "fast_coarse500": [
        "--config", str(ROOT / "configs" / "fast.yaml"), "--model.scales.coarse_iterations", "500",
        "--lr_schedule.coarse_milestones", "[]",
    ],
    # fast_fused with the improved method's image net width halved (64 channels,
    # not 32): does fast's narrow net decide its wrong-kernel failures (kodim04, kodim08)?
    "fast_ch64": ["--config", str(ROOT / "configs" / "fast.yaml"), "--model.image_net.channels", "64"],
    # fast_fused with every schedule 2x longer (200 iterations per coarse scale,
    # 2000 at the finest, its switch at 800, lr halved at 800/1200/1600): half way to the
    # papers' schedules; does schedule length decide fast's wrong-kernel failures?
    "fast_x2": ["--config", str(ROOT / "configs" / "fast.yaml"), *FAST_SCHEDULES_X2],
    # Both at once: the 64-channel net and every schedule 2x longer (about 4x fast's
    # cost, a third of the improved method's). The runs that solve kodim08 have the wide
    # net and the 5x schedule; neither alone at fast's scale does: is half of both enough?
    "fast_ch64_x2": [
        "--config", str(ROOT / "configs" / "fast.yaml"), "--model.image_net.channels", "64", *FAST_SCHEDULES_X2,
    ],
    # fast_fused with a 10x stronger kernel l2 term (weight 1.0, not 0.1, at the
    # coarse scales and in the finest scale's MSE phase): do fast's too compact kernels
    # (kodim04: peak 0.22-0.28 where the runs that succeed reach 0.15-0.19) need a
    # stronger pull towards spread kernels?
    "fast_kl2x10": [
        "--config", str(ROOT / "configs" / "fast.yaml"),
        "--schedule.weights", "{mse: {0: 1.0, 400: 0.0}, ssim: {400: 1.0}, tv: {400: 0.01}, kernel_l2: {0: 1.0, 400: 0.0}}",
        "--schedule.coarse_weights", "{mse: {0: 1.0}, kernel_l2: {0: 1.0}}",
    ],
    # Between the two: a 3x stronger kernel l2 term (0.3). fast_kl2x10 rescued kodim04
    # (0.28 -> 3.91 dB) and gained on kodim05/kodim07, but spread the kernels of kodim01,
    # kodim03 and kodim06 to their supports' borders (-4.49, -2.20, 0.61 dB): does a
    # milder pull keep the gains without the spread?
    "fast_kl2x3": [
        "--config", str(ROOT / "configs" / "fast.yaml"),
        "--schedule.weights", "{mse: {0: 1.0, 400: 0.0}, ssim: {400: 1.0}, tv: {400: 0.01}, kernel_l2: {0: 0.3, 400: 0.0}}",
        "--schedule.coarse_weights", "{mse: {0: 1.0}, kernel_l2: {0: 0.3}}",
    ],
    # Restarts on the no-blur verdict (--model.restarts 1): the papers' improved method and
    # fast_fused, each allowed one restart of its blind scales.
    "improved_restarts1": ["--config", str(ROOT / "configs" / "improved.yaml"), "--model.restarts", "1"],
    "fast_restarts1": ["--config", str(ROOT / "configs" / "fast.yaml"), "--model.restarts", "1"],
    # The improved method with a narrower image net, full schedules: what width costs in quality.
    # The improved method in bf16-mixed (autocast for the nets, the blur and the losses in
    # float32), 1.7-2.1x faster per step on CPUs with native bf16: does it cost quality?
    "improved_bf16": ["--config", str(ROOT / "configs" / "improved.yaml"), "--trainer.precision", "bf16-mixed"],
    "improved_ch32": ["--config", str(ROOT / "configs" / "improved.yaml"), "--model.image_net.channels", "32"],
    "improved_ch64": ["--config", str(ROOT / "configs" / "improved.yaml"), "--model.image_net.channels", "64"],
    "improved_ch96": ["--config", str(ROOT / "configs" / "improved.yaml"), "--model.image_net.channels", "96"],
    # Not blind: the true kernel given, fast's 32-channel net and 5x shorter schedule (the
    # non-blind schedule's switch to 1 - SSIM at 200, lr halved at 400/600/800): what the
    # image prior reaches on each input when the kernel is right, a ceiling for fast.
    "nonblind_fast": [
        "--config", str(ROOT / "configs" / "nonblind.yaml"), "--model.image_net.channels", "32",
        "--model.iterations", "1000", "--schedule.weights", "{mse: {0: 1.0, 200: 0.0}, ssim: {200: 1.0}}",
        "--lr_schedule.milestones", "[400, 600, 800]",
    ],
}
# The method whose runs are given the true kernel: the error ratio's reference.
TRUE_KERNEL_METHOD = "nonblind_fast"
# The methods of the PSNR-curve figure: the papers' three and fast.yaml as shipped (a
# dozen bands on one axes hide each other; the tables have every method).
CURVE_METHODS = ("original", "improved", "improved_l2sum", "fast_fused")
BANK_OPTIONS = [
    # The method unchanged: float32 everywhere, whatever the package's default precision.
    "--trainer.precision", "32-true",
    # Bookkeeping only: no pictures in TensorBoard, the curve every 100 steps.
    "--image_logging.every_n_steps", "0",
    "--curve.every_n_steps", "100",
]  # fmt: skip


def batch_command(
    method: str,
    seeds: str,
    devices: str,
    jobs_per_device: int,
    timeout: float | None,
    root: Path,
    manifest: Path,
    extra: list[str],
) -> list[str]:
    """The `python -m lightning_deblur batch` command line of one method's slice. The
    method's own options follow the bank's (``improved_bf16`` sets its precision);
    ``extra`` fit options come last (smoke runs only: a bank run changes nothing of the method)."""
    command = [
        sys.executable, "-W", "ignore", "-m", "lightning_deblur", "batch", *METHODS[method][:2],
        "--manifest", str(manifest), "--output_dir", str(root / method), "--seeds", seeds, "--devices", devices, "--jobs_per_device", str(jobs_per_device),
        *(["--timeout", str(timeout)] if timeout else []),
        *BANK_OPTIONS, *METHODS[method][2:], *extra,
    ]  # fmt: skip
    return command


def input_slice(protocol: Path, first: int, names: list[str], root: Path) -> Path:
    """The ``protocol`` manifest, or a slice of it written under ``root``: its first ``first``
    inputs (smoke runs) and/or the inputs named in ``names`` (a long method run where its
    outcome is in question first). Exits with one line on a name the protocol lacks."""
    from lightning_deblur.core.manifest import read_manifest, write_manifest

    if not first and not names:
        return protocol
    rows = read_manifest(protocol)  # paths made absolute
    known = [row.name for row in rows]
    unknown = [name for name in names if name not in known]
    if unknown:
        sys.exit(f"unknown input '{unknown[0]}': choose from {', '.join(known)}")
    rows = rows[:first] if first else rows
    rows = [row for row in rows if row.name in names] if names else rows
    label = "_".join([f"first{first}"] * bool(first) + names)
    return write_manifest(root / f"manifest_{label}.csv", rows)


def run(args, extra: list[str]) -> int:
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"unknown method '{unknown[0]}': choose from {', '.join(METHODS)}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    root = Path(args.root).resolve()
    manifest = input_slice(Path(args.protocol).resolve(), args.first_inputs, [n for n in args.inputs.split(",") if n], root)
    commands = [
        batch_command(m, args.seeds, args.devices, args.jobs_per_device, args.timeout, root, manifest, extra)
        for m in methods
    ]
    return max(run_batches(commands, env, args.concurrent))


def run_batches(commands: list[list[str]], env: dict, concurrent: bool) -> list[int]:
    """Run the methods' ``batch`` commands, side by side or one after the other; their exit codes.

    A SIGTERM to this script is passed on to the running batches, which stop the way
    ``batch`` stops on its own SIGTERM (jobs stopped at their next step with their
    checkpoints, summary written, resumable); batches not started yet are not started.
    Without this, a batch would run on after the script that started it was killed.
    """
    running: list[subprocess.Popen] = []
    stopping = threading.Event()

    def pass_on(signum, frame) -> None:
        stopping.set()
        for process in running:
            if process.poll() is None:
                process.send_signal(signum)

    def run_one(command: list[str]) -> int:
        if stopping.is_set():
            return 143
        process = subprocess.Popen(command, env=env)
        running.append(process)
        if stopping.is_set():  # the signal came between the check above and the start
            process.send_signal(signal.SIGTERM)
        return process.wait()

    previous = signal.signal(signal.SIGTERM, pass_on)
    try:
        if concurrent:
            with ThreadPoolExecutor(len(commands)) as pool:
                return list(pool.map(run_one, commands))
        return [run_one(command) for command in commands]
    finally:
        signal.signal(signal.SIGTERM, previous)


def evaluate(args) -> int:
    """`evaluate` over every banked run, then the ISNR histogram and the PSNR curves.

    The true-kernel runs (``nonblind_fast``), where banked, are both a row of the tables
    (what the prior reaches with the right kernel) and every blind run's reference for
    Levin's error ratio (``--true_kernel_results``); the curves show :data:`CURVE_METHODS`.
    """
    root = Path(args.root).resolve()
    chosen = args.methods.split(",") if args.methods else list(METHODS)
    present = [m for m in chosen if m in METHODS and (root / m).is_dir()]
    results = [f"{m}={(root / m).relative_to(ROOT)}" for m in present]
    curves = [r for m, r in zip(present, results) if m in CURVE_METHODS]
    true_kernel = ["--true_kernel_results", str((root / TRUE_KERNEL_METHOD).relative_to(ROOT))]
    out = (root / "eval").relative_to(ROOT)
    manifest = Path(args.protocol).resolve().relative_to(ROOT)
    figures = ROOT / "docs" / "figures"
    suffix = "" if root == BANK else f"_{root.name}"  # another root's figures beside the bank's
    commands = [
        ["evaluate", "--manifest", str(manifest), "--output_dir", str(out), "--results", *results,
         *(true_kernel if TRUE_KERNEL_METHOD in present else [])],
        ["figures", "histogram", "--runs", str(out / "runs.csv"), "--output", str(figures / f"bank_isnr_histogram{suffix}.png")],
        ["figures", "curve_bands", "--results", *curves, "--output", str(figures / f"bank_psnr_curves{suffix}.png")],
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for command in commands:
        # Relative paths, so the tables name the bank's files the same on every clone.
        code = subprocess.run([sys.executable, "-W", "ignore", "-m", "lightning_deblur", *command], env=env, cwd=ROOT)
        if code.returncode:
            return code.returncode
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    runner = sub.add_parser("run", help="run the missing jobs of a slice (resumable)")
    runner.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ", ".join(METHODS))
    runner.add_argument("--seeds", default="0-1", help="seeds of every input: 0-1, 2 or 0,3")
    runner.add_argument("--devices", default="auto", help="batch --devices: N or auto")
    runner.add_argument("--jobs_per_device", type=int, default=1)
    runner.add_argument("--timeout", type=float, default=None, help="seconds after which a job is stopped at its checkpoint (batch --timeout)")
    runner.add_argument("--concurrent", action="store_true", help="run the methods' batches side by side")
    runner.add_argument("--root", default=str(BANK), help="where the bank lives")
    runner.add_argument("--protocol", default=str(PROTOCOL / "manifest.csv"), help="the inputs' manifest")
    runner.add_argument("--first_inputs", type=int, default=0, help="only the first N inputs (smoke runs)")
    runner.add_argument("--inputs", default="", help="comma-separated input names: only these (default: all)")
    scorer = sub.add_parser("evaluate", help="tables of every banked run (writes <root>/eval/)")
    scorer.add_argument("--root", default=str(BANK))
    scorer.add_argument("--protocol", default=str(PROTOCOL / "manifest.csv"), help="the inputs' manifest")
    scorer.add_argument("--methods", default="", help="comma-separated (default: every banked one); leave out one still running")
    args, extra = parser.parse_known_args()
    if extra and args.action != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    sys.exit(run(args, extra) if args.action == "run" else evaluate(args))


if __name__ == "__main__":
    main()
