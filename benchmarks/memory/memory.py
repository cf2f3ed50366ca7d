"""Peak memory of one training step against the estimate of `lightning_deblur.core.memory`.

Each size runs in a fresh process: build the image and kernel nets, run three steps
(forward, blur, MSE, backward, Adam), and report the peak resident memory above the
process's baseline (CPU) or `torch.cuda.max_memory_allocated` (GPU), next to the estimate.

    .venv/bin/python benchmarks/memory/memory.py --sizes 64,128,255 --kernel 27
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import ROOT, save  # noqa: E402



def measure(size: int, kernel: int, channels: int, device: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec
    from lightning_deblur.core.memory import step_bytes
    from lightning_deblur.core.physics import blur_valid, support_size

    spec = ImageNetSpec(channels=channels)
    support = support_size((size, size), (kernel, kernel))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    image_net, kernel_net = spec.build().to(device), KernelNetSpec().build((kernel, kernel)).to(device)
    optimizer = torch.optim.Adam([*image_net.parameters(), *kernel_net.parameters()])
    z_x, z_k = torch.rand(1, 8, *support, device=device) * 0.1, torch.rand(200, device=device) * 0.1
    y = torch.rand(1, 1, size, size, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(blur_valid(image_net(z_x), kernel_net(z_k)), y)
        loss.backward()
        optimizer.step()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"size": size, "kernel": kernel, "channels": channels, "device": device,
            "measured_bytes": peak, "estimated_bytes": step_bytes(spec, support)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128,255")
    parser.add_argument("--kernel", type=int, default=27)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.kernel, args.channels, args.device)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(size), "--kernel", str(args.kernel),
                   "--channels", str(args.channels), "--device", args.device]  # fmt: skip
        row = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        rows.append(row)
        ratio = row["estimated_bytes"] / row["measured_bytes"]
        print(f"{size}×{size} (kernel {args.kernel}): measured {row['measured_bytes'] / 2**20:8.1f} MiB, "
              f"estimated {row['estimated_bytes'] / 2**20:8.1f} MiB, estimate/measured {ratio:.2f}", flush=True)  # fmt: skip
    print(f"saved {save(f'memory_{args.device}_{args.channels}ch', {'config': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
