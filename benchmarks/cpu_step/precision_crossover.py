"""Where bfloat16 autocast starts to pay on this CPU: float32 against bf16-mixed step time
of the image and kernel nets (plain loop, the job's layout and blur) over image sizes and
net widths, side by side in one run. Prints the speed-up float32/bf16 per case; the
default precision rule (lightning_deblur/core/precision.py) is read off this table.

    .venv/bin/python benchmarks/cpu_step/precision_crossover.py --sizes 64,96,128,192 --channels 32,64,128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import save  # noqa: E402

from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec
from lightning_deblur.core.physics import blur_valid, support_size


def step_times(size: int, channels: int, kernel: int, bf16: bool, steps: int) -> list[float]:
    torch.manual_seed(0)
    image_net = ImageNetSpec(channels=channels).build().to(memory_format=torch.channels_last)
    kernel_net = KernelNetSpec().build((kernel, kernel))
    z_x = (torch.rand(1, 8, *support_size((size, size), (kernel, kernel))) * 0.1).contiguous(
        memory_format=torch.channels_last
    )
    z_k, y = torch.rand(200) * 0.1, torch.rand(1, 1, size, size)
    optimizer = torch.optim.Adam([*image_net.parameters(), *kernel_net.parameters()], lr=1e-3)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            x = image_net(z_x + 0.001 * torch.randn_like(z_x))
            k = kernel_net(z_k)
        torch.nn.functional.mse_loss(blur_valid(x, k), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,96,128,192")
    parser.add_argument("--channels", default="32,64,128")
    parser.add_argument("--kernel", type=int, default=13)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for size in map(int, args.sizes.split(",")):
        for channels in map(int, args.channels.split(",")):
            fp32, bf16 = [], []
            for _ in range(args.rounds):  # alternate, so drift hits both alike
                fp32 += step_times(size, channels, args.kernel, False, args.steps)
                bf16 += step_times(size, channels, args.kernel, True, args.steps)
            row = {"size": size, "channels": channels, "fp32_s": statistics.median(fp32), "bf16_s": statistics.median(bf16)}
            row["speedup"] = row["fp32_s"] / row["bf16_s"]
            rows.append(row)
            print(f"{size:4d}px {channels:4d}ch  float32 {row['fp32_s']:.4f} s  bf16 {row['bf16_s']:.4f} s  speed-up {row['speedup']:.2f}x", flush=True)
    save("precision_crossover", {"config": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
