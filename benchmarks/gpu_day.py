"""Step-level GPU measurements, side by side in one process: one JSON file.

Part of benchmarks/gpu_day.sh (which also runs the full-fidelity bank's jobs there).
Measures, on the device at hand, for the job's step (image net forward and backward,
kernel net, valid blur, MSE, Adam), median seconds per step:

- blur: direct (conv2d) against FFT, forward + backward, across kernel sizes (the
  crossover that `physics.FFT_MIN_KERNEL_PIXELS` follows);
- step: float32 against bf16 autocast, contiguous against channels_last, at
  ``--size``/``--kernel`` (255/27 by default, the paper's Levin setting);
- compile: ``torch.compile`` of the image net against eager (optional: it costs a
  compile of tens of seconds).

``--smoke`` shrinks every size so the whole script runs on a CPU in seconds (the test
suite runs it that way).

    python benchmarks/gpu_day.py --out results.json
    python benchmarks/gpu_day.py --smoke --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from blur_crossover import time_blur  # noqa: E402

from lightning_deblur.generators import ImageNetSpec, KernelNetSpec  # noqa: E402
from lightning_deblur.physics import blur_valid, support_size  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_seconds(
    device: torch.device,
    size: int,
    kernel: int,
    channels: int,
    precision: str,
    layout: torch.memory_format,
    steps: int,
    warmup: int,
    compiled: bool = False,
) -> float:
    """Median wall time of one optimization step of both generators, seconds."""
    torch.manual_seed(0)
    image_net = ImageNetSpec(channels=channels).build().to(device).to(memory_format=layout)
    kernel_net = KernelNetSpec().build((kernel, kernel)).to(device)
    height, width = support_size((size, size), (kernel, kernel))
    z_x = (0.1 * torch.rand(1, 8, height, width, device=device)).contiguous(memory_format=layout)
    z_k = 0.1 * torch.rand(200, device=device)
    y = torch.rand(1, 1, size, size, device=device)
    optimizer = torch.optim.Adam(
        [{"params": image_net.parameters(), "lr": 0.01}, {"params": kernel_net.parameters(), "lr": 1e-4}]
    )
    forward = torch.compile(image_net) if compiled else image_net
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()
    )
    times = []
    for _ in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        with autocast:
            x = forward(z_x + 0.001 * torch.randn_like(z_x))
            k = kernel_net(z_k)
        loss = torch.nn.functional.mse_loss(blur_valid(x.float(), k.float()), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device (seconds on a CPU)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the image net")
    parser.add_argument("--size", type=int, default=255)
    parser.add_argument("--kernel", type=int, default=27)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        args.size, args.kernel, args.channels, args.steps = 40, 7, 8, 3
    blur_kernels = [7, 13] if args.smoke else [7, 13, 19, 27, 35, 45, 61, 81]
    results: dict = {"machine": machine(), "device": str(device), "config": vars(args), "blur": [], "step": []}

    for side in blur_kernels:
        x = torch.rand(1, 1, args.size + side - 1, args.size + side - 1, device=device, requires_grad=True)
        k = torch.rand(side, side, device=device, requires_grad=True)
        direct, fft = time_blur("direct", x, k, args.steps), time_blur("fft", x, k, args.steps)
        results["blur"].append({"kernel": side, "direct_s": direct, "fft_s": fft, "fft_over_direct": fft / direct})
        print(f"blur {side:3d}: direct {direct * 1e3:.3f} ms, fft {fft * 1e3:.3f} ms", flush=True)

    cases = [(p, layout) for p in ("32-true", "bf16-mixed") for layout in ("contiguous", "channels_last")]
    for precision, layout in cases:
        memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        seconds = step_seconds(
            device, args.size, args.kernel, args.channels, precision, memory_format, args.steps, warmup=3
        )
        results["step"].append({"precision": precision, "layout": layout, "s_per_step": seconds})
        print(f"step {precision:10s} {layout:13s}: {seconds * 1e3:.2f} ms", flush=True)
    baseline = results["step"][0]["s_per_step"]
    for row in results["step"]:
        row["over_float32_contiguous"] = row["s_per_step"] / baseline

    if args.compile:
        start = time.perf_counter()
        compiled = step_seconds(
            device, args.size, args.kernel, args.channels, "32-true", torch.contiguous_format, args.steps,
            warmup=3, compiled=True,
        )  # fmt: skip
        results["compile"] = {
            "s_per_step": compiled,
            "over_eager": compiled / baseline,
            "wall_s_including_compile": time.perf_counter() - start,
        }
        print(f"compiled float32 contiguous: {compiled * 1e3:.2f} ms ({compiled / baseline:.2f}x eager)", flush=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
