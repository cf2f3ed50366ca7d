"""Eager against `torch.compile`d image net: step time and compile time, side by side.

The job's step (image and kernel nets, the job's layout on CPU, FFT/direct blur by the
job's rule, MSE, Adam) is run eagerly and with the image net compiled by
`torch.compile` (inductor, default mode), in alternating rounds after one warm-up step
each; the first compiled step's time is reported as the compile time. Prints the
medians and the ratio compiled/eager (below 1: compiling pays).

    .venv/bin/python benchmarks/cpu_step/compile_speed.py --size 128 --precision bf16-mixed
    .venv/bin/python benchmarks/cpu_step/compile_speed.py --size 256 --kernel 31 --device cuda
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


class Step:
    """One job-like training step on fixed data, eager or with the image net compiled."""

    def __init__(self, size: int, kernel: int, device: str, bf16: bool, compiled: bool) -> None:
        torch.manual_seed(0)
        layout = torch.channels_last if device == "cpu" else torch.contiguous_format
        self.image_net = ImageNetSpec().build().to(device, memory_format=layout)
        self.kernel_net = KernelNetSpec().build((kernel, kernel)).to(device)
        self.forward = torch.compile(self.image_net) if compiled else self.image_net
        support = support_size((size, size), (kernel, kernel))
        self.z_x = (torch.rand(1, 8, *support, device=device) * 0.1).contiguous(memory_format=layout)
        self.z_k = torch.rand(200, device=device) * 0.1
        self.y = torch.rand(1, 1, size, size, device=device)
        self.optimizer = torch.optim.Adam([*self.image_net.parameters(), *self.kernel_net.parameters()], lr=1e-3)
        self.device, self.bf16 = device, bf16

    def __call__(self) -> float:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            x = self.forward(self.z_x + 0.001 * torch.randn_like(self.z_x))
            k = self.kernel_net(self.z_k)
        torch.nn.functional.mse_loss(blur_valid(x, k), self.y).backward()
        self.optimizer.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--kernel", type=int, default=15)
    parser.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bf16 = args.precision == "bf16-mixed"
    eager = Step(args.size, args.kernel, args.device, bf16, compiled=False)
    compiled = Step(args.size, args.kernel, args.device, bf16, compiled=True)
    compile_seconds = compiled()  # compiles
    eager()
    times = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        times["eager"] += [eager() for _ in range(args.steps)]
        times["compiled"] += [compiled() for _ in range(args.steps)]
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["compiled"] / medians["eager"]
    print(
        f"{args.size}x{args.size}, kernel {args.kernel}, {args.precision}, {args.device}: eager {medians['eager']:.4f} "
        f"s/step, compiled {medians['compiled']:.4f} s/step (ratio {ratio:.2f}), first compiled step {compile_seconds:.1f} s"
    )
    save(f"compile_speed_{args.device}_{args.size}_{args.precision}", {
        "config": vars(args), "s_per_step": times, "medians": medians, "ratio_compiled_over_eager": ratio,
        "first_compiled_step_s": compile_seconds,
    })  # fmt: skip


if __name__ == "__main__":
    main()
