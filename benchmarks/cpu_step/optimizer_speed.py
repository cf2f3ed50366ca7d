"""Time of one Adam update of the job's parameters: PyTorch's implementations side by side.

The job's optimizer updates both generators' parameters (146 tensors: the image net's
convolutions and batch norms, the kernel net's two layers) every step. PyTorch has three
implementations of the same update rule: a loop over the tensors (``single``, its default
on CPUs), multi-tensor operations (``foreach``, its default on GPUs) and one fused kernel
(``fused``). This times one update of each, taking turns within each round so drift hits
them alike, for several image-net widths; gradients are random (the update's cost does not
depend on their values).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cpu_step/optimizer_speed.py
    .venv/bin/python benchmarks/cpu_step/optimizer_speed.py --device cuda --channels 32 128

Result: ``benchmarks/cpu_step/results/optimizer_speed_<device>_k<kernel>_t<threads>_<machine>.json``.
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

from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec  # noqa: E402

IMPLEMENTATIONS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 32, 64, 128], help="image-net widths")
    parser.add_argument("--kernel", type=int, default=13, help="kernel side (the kernel net's output size)")
    parser.add_argument("--rounds", type=int, default=40, help="rounds timed, after 5 of warm-up")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="folder of the result file (default: this study's results/)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for channels in args.channels:
        torch.manual_seed(0)
        image_net = ImageNetSpec(channels=channels).build().to(device)
        kernel_net = KernelNetSpec().build((args.kernel, args.kernel)).to(device)
        for parameter in [*image_net.parameters(), *kernel_net.parameters()]:
            parameter.grad = torch.randn_like(parameter)
        optimizers = {
            name: torch.optim.Adam(
                [{"params": image_net.parameters(), "lr": 0.01}, {"params": kernel_net.parameters(), "lr": 1e-4}],
                **options,
            )
            for name, options in IMPLEMENTATIONS.items()
        }
        seconds: dict[str, list[float]] = {name: [] for name in optimizers}
        for _ in range(5 + args.rounds):
            for name, optimizer in optimizers.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                optimizer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(times[5:]) for name, times in seconds.items()}
        tensors = sum(1 for _ in [*image_net.parameters(), *kernel_net.parameters()])
        numbers = sum(p.numel() for p in [*image_net.parameters(), *kernel_net.parameters()])
        row = {"channels": channels, "tensors": tensors, "parameters": numbers, "median_s": medians}
        row["single_over_fused"] = medians["single"] / medians["fused"]
        rows.append(row)
        print(
            f"{channels:4d} channels ({numbers} parameters in {tensors} tensors): "
            + ", ".join(f"{name} {value * 1e3:.2f} ms" for name, value in medians.items())
            + f"; single/fused {row['single_over_fused']:.2f}",
            flush=True,
        )
    name = f"optimizer_speed_{device.type}_k{args.kernel}_t{torch.get_num_threads()}"
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    print(f"saved {save(name, {'config': config, 'rows': rows}, args.out)}")


if __name__ == "__main__":
    main()
