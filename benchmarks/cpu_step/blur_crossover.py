"""Direct vs FFT valid convolution, forward + backward, across kernel sizes (side by side).

Prints, per kernel size, both times and their ratio (FFT over direct); the first size at
which FFT wins is the crossover that `physics.FFT_MIN_KERNEL_PIXELS` should follow.

    .venv/bin/python benchmarks/cpu_step/blur_crossover.py --size 255 --device cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import save, time_blur  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=255)
    parser.add_argument("--kernels", default="7,13,19,27,35,45,61,81")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rows = []
    for side in (int(v) for v in args.kernels.split(",")):
        x = torch.rand(1, 1, args.size + side - 1, args.size + side - 1, device=args.device, requires_grad=True)
        k = torch.rand(side, side, device=args.device, requires_grad=True)
        direct, fft = time_blur("direct", x, k, args.repeats), time_blur("fft", x, k, args.repeats)
        rows.append({"kernel": side, "direct_s": direct, "fft_s": fft, "fft_over_direct": fft / direct})
        print(f"kernel {side:3d}: direct {direct * 1e3:8.3f} ms  fft {fft * 1e3:8.3f} ms  ratio {fft / direct:.2f}", flush=True)
    crossover = next((r["kernel"] for r in rows if r["fft_over_direct"] < 1), None)
    print(f"FFT faster from kernel {crossover}" if crossover else "direct faster at every size tried")
    print(f"saved {save(f'blur_crossover_{args.size}_{args.device}', {'config': vars(args), 'rows': rows, 'crossover': crossover})}")


if __name__ == "__main__":
    main()
