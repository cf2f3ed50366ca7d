"""Spread of the test suite's quality figures over seeds and CPU code paths.

The same seed takes a different trajectory on another kind of CPU (other vector kernels,
other summation orders), so every quality assertion in tests/ needs a margin that holds
over seeds and code paths, not only for the one trajectory of the machine it was written
on. This script reruns each asserted case over seeds under several code paths of this
CPU, which stand in for other CPUs:

- ``native``: one thread, every instruction set this CPU has;
- ``threads2``: two intra-op threads (other reduction splits);
- ``avx512_no_bf16``: oneDNN limited to AVX-512 without bf16/VNNI/AMX, as on the Intel
  Xeon of the bug report;
- ``avx2``: PyTorch's and oneDNN's AVX2 kernels, as on a CPU without AVX-512;
- ``bf16``: ``--trainer.precision bf16-mixed`` for the ``fit`` cases (another numeric path).

Each variant runs in a subprocess of its own, since the instruction-set limits are read
when the libraries load. Prints one JSON line per (variant, case, seed) and a summary
table (minimum, maximum of each figure); the rows go to
``benchmarks/test_margins/results/test_margins_<variants>_<machine>.json``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/test_margins/test_margins.py --seeds 0-4
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/test_margins/test_margins.py --seeds 0-4 --cases colour,blind
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # conftest's synthetic cases and run_fit

VARIANTS = {
    "native": ({}, 1, []),
    "threads2": ({}, 2, []),
    "avx512_no_bf16": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, 1, []),
    "avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}, 1, []),
    "bf16": ({}, 1, ["--trainer.precision", "bf16-mixed"]),
}
"""name -> (environment, torch threads, extra ``fit`` options)."""


def gains(metrics: dict) -> dict:
    """PSNR gain (dB) of a ``fit`` run's result over its input, grey or per RGB channel."""
    if "psnr_rgb" in metrics:
        return {f"gain_{c}": a - b for c, a, b in zip("rgb", metrics["psnr_rgb"], metrics["input_psnr_rgb"])}
    return {"gain": metrics["psnr"] - metrics["input_psnr"]}


def case_blind(root: Path, seed: int, extra: list[str]) -> dict:
    """tests/test_fit_cli.py::test_tiny_blind_run_raises_psnr_on_an_easy_case."""
    from conftest import read_metrics, run_fit, write_easy_case
    from test_fit_cli import easy_case_args

    write_easy_case(root)
    return gains(read_metrics(run_fit(root, *easy_case_args(root), "--seed_everything", str(seed), *extra)))


def case_nonblind(root: Path, seed: int, extra: list[str]) -> dict:
    """tests/test_fit_cli.py::test_non_blind_mode_keeps_the_given_kernel_and_trains_the_image_net_only."""
    from conftest import read_metrics, run_fit, write_easy_case
    from test_fit_cli import non_blind_args

    write_easy_case(root)
    return gains(read_metrics(run_fit(root, *non_blind_args(root), "--seed_everything", str(seed), *extra)))


def case_colour(root: Path, seed: int, extra: list[str]) -> dict:
    """tests/test_fit_cli.py::test_colour_stage_sharpens_the_colour_image."""
    from conftest import read_metrics, run_fit
    from test_fit_cli import colour_case_args, write_colour_case

    write_colour_case(root)
    figures = gains(read_metrics(run_fit(root, *colour_case_args(root), "--seed_everything", str(seed), *extra)))
    figures["gain_mean"] = sum(figures.values()) / 3
    return figures


def case_tiles(root: Path, seed: int, extra: list[str]) -> dict:
    """tests/test_tiles.py::test_a_tiled_run_equals_the_untiled_one_within_the_seed_spread,
    with seeds ``seed`` and ``seed + 1``."""
    from test_tiles import tiled_and_untiled

    figures = tiled_and_untiled(root, seed, extra)
    return {
        "min_gain": min(figures["gains"].values()),
        "tiled_vs_untiled_minus_seed_spread": figures["tiled_vs_untiled"] - figures["seed_spread"],
    }


def case_transitions(root: Path, seed: int, extra: list[str]) -> dict:
    """tests/test_multiscale.py::test_after_a_transition_the_nets_reproduce_the_upsampled_estimates
    (RMSE in 8-bit grey levels)."""
    import torch
    from conftest import blur, gaussian_kernel, synthetic_sharp
    from test_multiscale import transition_rmses

    from lightning_deblur.core.imagefiles import write_image

    support = synthetic_sharp(37 + 4, 31 + 4)
    write_image(root / "blurred.png", blur(support, gaussian_kernel(5, 1.2)))
    torch.manual_seed(seed)
    rmses = transition_rmses(root / "blurred.png")
    return {
        "max_image_rmse_255": 255 * max(image for image, _ in rmses.values()),
        "max_kernel_rmse_255": 255 * max(kernel for _, kernel in rmses.values()),
    }


def case_fit_speed(root: Path, seed: int, extra: list[str]) -> dict:
    """tests/test_figures.py::test_fit_speed_fits_sharp_and_blurred_and_writes_curves:
    last RMSE over the first, 20 iterations of an 8-channel net."""
    import torch
    from conftest import blur, gaussian_kernel, synthetic_sharp

    from lightning_deblur.core.fit_experiment import fit_rmse
    from lightning_deblur.core.generators import ImageNetSpec

    support = synthetic_sharp(46, 46)
    spec = ImageNetSpec(channels=8, skip_channels=4)
    figures = {}
    for name, target in (("sharp", support[3:-3, 3:-3]), ("blurred", blur(support, gaussian_kernel(7, 2.0)))):
        curve = fit_rmse(torch.from_numpy(target).float()[None, None], spec, 20, seed=seed)
        figures[f"ratio_{name}"] = float(curve[-1] / curve[0])
    return figures


def case_refit(root: Path, seed: int, extra: list[str]) -> dict:
    """tests/test_multiscale.py::test_fit_generator_reaches_the_tolerance: iterations used
    (of 2000) to reach RMSE 0.01."""
    import torch

    from lightning_deblur.core.fitting import fit_generator

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 9))
    report = fit_generator(net, torch.rand(4), torch.rand(9), tolerance=0.01, lr=0.01, max_iterations=2000)
    return {"iterations": report.iterations if report.converged else float("inf")}


CASES = {
    "blind": case_blind,
    "nonblind": case_nonblind,
    "colour": case_colour,
    "tiles": case_tiles,
    "transitions": case_transitions,
    "fit_speed": case_fit_speed,
    "refit": case_refit,
}
FIT_CASES = {"blind", "nonblind", "colour", "tiles"}
"""Cases that run ``fit``, where a precision option means something."""


def seeds_of(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def run_variant(variant: str, cases: list[str], seeds: list[int]) -> None:
    """Run every case and seed under one variant, in this process; one JSON line each."""
    import torch

    environment, threads, extra = VARIANTS[variant]
    torch.set_num_threads(threads)
    for case in cases:
        if variant == "bf16" and case not in FIT_CASES:
            continue
        for seed in seeds:
            with tempfile.TemporaryDirectory() as folder:
                figures = CASES[case](Path(folder), seed, extra)
            print(json.dumps({"variant": variant, "case": case, "seed": seed, **figures}), flush=True)


def summarize(rows: list[dict]) -> None:
    """Minimum and maximum of every figure per case, over all seeds and variants."""
    spread: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ("variant", "case", "seed"):
                spread.setdefault((row["case"], key), []).append(value)
    print("\n| case | figure | runs | min | max |\n|---|---|---|---|---|")
    for (case, key), values in spread.items():
        print(f"| {case} | {key} | {len(values)} | {min(values):.3f} | {max(values):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-4", help="first-last or one seed")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # a child process: run this one variant
    options = parser.parse_args()
    cases, seeds = options.cases.split(","), seeds_of(options.seeds)
    if options.variant:
        run_variant(options.variant, cases, seeds)
        return
    rows = []
    for variant in options.variants.split(","):
        environment = {**os.environ, "OMP_NUM_THREADS": str(VARIANTS[variant][1]), **VARIANTS[variant][0]}
        # Lines are passed on as they come, so a long variant's partial results are kept.
        with subprocess.Popen(
            [sys.executable, __file__, "--variant", variant, "--cases", options.cases, "--seeds", options.seeds],
            env=environment, cwd=ROOT, stdout=subprocess.PIPE, text=True,
        ) as child:  # fmt: skip
            for line in child.stdout:
                if line.startswith("{"):
                    print(line, end="", flush=True)
                    rows.append(json.loads(line))
        if child.returncode:
            raise SystemExit(f"variant {variant} failed with exit code {child.returncode}")
    summarize(rows)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
    from _common import save

    print(save(f"test_margins_{options.variants.replace(',', '_')}", {"seeds": options.seeds, "rows": rows}))


if __name__ == "__main__":
    main()
