"""channels_last against the default (contiguous) layout for the image net, side by side.

Times forward + backward + Adam step of the image generator on one input size, in
alternating rounds, and prints the ratio channels_last / contiguous (below 1: faster).

    .venv/bin/python benchmarks/cpu_step/memory_layout.py --size 255 --kernel 27 --steps 5
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

from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.physics import support_size


def steps(layout: torch.memory_format, size: tuple[int, int], count: int, device: str) -> list[float]:
    torch.manual_seed(0)
    net = ImageNetSpec().build().to(device=device, memory_format=layout)
    z = (torch.rand(1, 8, *size, device=device) * 0.1).contiguous(memory_format=layout)
    target = torch.rand(1, 1, *size, device=device)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    times = []
    for _ in range(count + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(z), target).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=255)
    parser.add_argument("--kernel", type=int, default=27)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    size = support_size((args.size, args.size), (args.kernel, args.kernel))
    contiguous, channels_last = [], []
    for _ in range(args.rounds):
        contiguous += steps(torch.contiguous_format, size, args.steps, args.device)
        channels_last += steps(torch.channels_last, size, args.steps, args.device)
    a, b = statistics.median(contiguous), statistics.median(channels_last)
    print(f"{args.size}×{args.size} + {args.kernel}: contiguous {a:.4f} s/step, channels_last {b:.4f} s/step, ratio {b / a:.3f}")
    print(f"saved {save(f'memory_layout_{args.size}_{args.device}', {'config': vars(args), 'contiguous': contiguous, 'channels_last': channels_last, 'ratio': b / a})}")


if __name__ == "__main__":
    main()
