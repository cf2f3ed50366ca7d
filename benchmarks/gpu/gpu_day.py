"""Step-level GPU measurements, side by side in one process: one JSON file.

Part of benchmarks/gpu/gpu_day.sh (which also runs the full-fidelity bank's jobs there).
Measures, on the device at hand, for the job's step (image net forward and backward,
kernel net, valid blur, MSE, Adam), median seconds per step:

- blur: direct (conv2d) against FFT, forward + backward, across kernel sizes (the
  crossover that `physics.FFT_MIN_KERNEL_PIXELS` follows);
- step: float32 against bf16 autocast, contiguous against channels_last, each with
  cuDNN's autotuner off (the default) and on (``torch.backends.cudnn.benchmark``,
  Lightning's ``Trainer(benchmark=True)``), at ``--size``/``--kernel`` (255/27 by default,
  the paper's Levin setting);
- compile: ``torch.compile`` of the image net against eager, in the modes given
  (``reduce-overhead`` replays the step's kernels as CUDA graphs; optional: each costs a
  compile of tens of seconds).

The JSON file is rewritten after each part, so a run cut short keeps what it finished.

``--smoke`` shrinks every size so the whole script runs on a CPU in seconds (the test
suite runs it that way).

    python benchmarks/gpu/gpu_day.py --out results.json
    python benchmarks/gpu/gpu_day.py --smoke --out /tmp/smoke.json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import machine, time_blur, write_text  # noqa: E402

from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec  # noqa: E402
from lightning_deblur.core.physics import blur_valid, support_size  # noqa: E402


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
    cudnn_benchmark: bool = False,
    compile_mode: str | None = None,
) -> float:
    """Median wall time of one optimization step of both generators, seconds."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
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
    forward = torch.compile(image_net, mode=compile_mode) if compile_mode else image_net
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
    parser.add_argument("--parts", default="blur,step", help="comma-separated: blur, step, compile")
    parser.add_argument(
        "--compile_modes", nargs="+", default=["reduce-overhead"], help="torch.compile modes of the compile part"
    )
    parser.add_argument("--size", type=int, default=255)
    parser.add_argument("--kernel", type=int, default=27)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        args.size, args.kernel, args.channels, args.steps = 40, 7, 8, 3
    parts = set(args.parts.split(","))
    blur_kernels = ([7, 13] if args.smoke else [7, 13, 19, 27, 35, 45, 61, 81]) if "blur" in parts else []
    results: dict = {"machine": machine(), "device": str(device), "config": vars(args), "blur": [], "step": []}
    out = Path(args.out)

    def save() -> None:
        write_text(out, json.dumps(results, indent=2) + "\n")

    for side in blur_kernels:
        x = torch.rand(1, 1, args.size + side - 1, args.size + side - 1, device=device, requires_grad=True)
        k = torch.rand(side, side, device=device, requires_grad=True)
        direct, fft = time_blur("direct", x, k, args.steps), time_blur("fft", x, k, args.steps)
        results["blur"].append({"kernel": side, "direct_s": direct, "fft_s": fft, "fft_over_direct": fft / direct})
        print(f"blur {side:3d}: direct {direct * 1e3:.3f} ms, fft {fft * 1e3:.3f} ms", flush=True)
    save()

    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    for precision in ("32-true", "bf16-mixed") if "step" in parts else ():
        for layout, memory_format in layouts.items():
            for benchmark in (False, True):
                seconds = step_seconds(
                    device, args.size, args.kernel, args.channels, precision, memory_format, args.steps, warmup=3,
                    cudnn_benchmark=benchmark,
                )  # fmt: skip
                row = {"precision": precision, "layout": layout, "cudnn_benchmark": benchmark, "s_per_step": seconds}
                results["step"].append(row)
                print(f"step {precision:10s} {layout:13s} cudnn.benchmark={benchmark!s:5s}: {seconds * 1e3:.2f} ms",
                      flush=True)  # fmt: skip
    for row in results["step"]:
        row["over_float32_contiguous"] = row["s_per_step"] / results["step"][0]["s_per_step"]
    save()

    results["compile"] = []
    if "compile" in parts:
        # The eager step in the same setting (float32, channels_last, autotuner on), same process.
        eager = step_seconds(
            device, args.size, args.kernel, args.channels, "32-true", torch.channels_last, args.steps, warmup=3,
            cudnn_benchmark=True,
        )  # fmt: skip
        results["compile_eager_s_per_step"] = eager
        print(f"eager float32 channels_last cudnn.benchmark=True: {eager * 1e3:.2f} ms", flush=True)
        save()  # the compiler may outlast the part's time limit
    for mode in args.compile_modes if "compile" in parts else ():
        start = time.perf_counter()
        row: dict = {"mode": mode, "precision": "32-true", "layout": "channels_last", "cudnn_benchmark": True}
        try:
            compiled = step_seconds(
                device, args.size, args.kernel, args.channels, "32-true", torch.channels_last, args.steps,
                warmup=5, cudnn_benchmark=True, compile_mode=mode,
            )  # fmt: skip
        except Exception as error:  # a compiler failure is a finding, not a reason to lose the rest
            row["error"] = f"{type(error).__name__}: {str(error)[:500]}"
            print(f"compile {mode}: failed: {row['error']}", flush=True)
        else:
            row.update(s_per_step=compiled, over_eager=compiled / eager)
            print(f"compile {mode}: {compiled * 1e3:.2f} ms ({compiled / eager:.2f}x eager)", flush=True)
        row["wall_s_including_compile"] = time.perf_counter() - start
        results["compile"].append(row)
        save()
    print(f"saved {out}")


if __name__ == "__main__":
    main()
