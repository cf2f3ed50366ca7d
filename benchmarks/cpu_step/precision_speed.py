"""float32 against bf16-mixed step time of the real `fit` job, side by side in one run.

Both precisions run the original configuration (configs/selfdeblur.yaml) on the same
Levin crop (255×255, kernel 27×27 by default) with the default layout and blur; rounds
alternate between the two so that drift of a shared machine hits both alike. Prints the
median step times and the speed-up float32/bf16; saves them under results/ beside this script,
in a file named by the size, the kernel and the CPU (the speed-up depends on the CPU's bf16).

    .venv/bin/python benchmarks/cpu_step/precision_speed.py --size 255 --kernel 27 --steps 6 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import save  # noqa: E402
from step_time import add_timing_arguments, lightning_steps, make_input

PRECISIONS = ("32-true", "bf16-mixed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser, steps=6)
    args = parser.parse_args()
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    with tempfile.TemporaryDirectory() as folder:
        image = make_input(Path(folder), args.size)
        for _ in range(args.rounds):
            for precision in PRECISIONS:
                times[precision] += lightning_steps(
                    image, args.kernel, args.steps, args.warmup, precision, args.ssim, Path(folder) / "logs"
                )
    medians = {precision: statistics.median(values) for precision, values in times.items()}
    speedup = medians["32-true"] / medians["bf16-mixed"]
    print(
        f"{args.size}x{args.size}, kernel {args.kernel}: float32 {medians['32-true']:.4f} s/step, "
        f"bf16-mixed {medians['bf16-mixed']:.4f} s/step, speed-up {speedup:.2f}x"
    )
    path = save(
        f"precision_speed_{args.size}_{args.kernel}{'_ssim' if args.ssim else ''}",
        {"config": vars(args), "s_per_step": times, "medians": medians, "speedup_fp32_over_bf16": speedup},
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
