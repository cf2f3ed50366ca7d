"""R seeds of one image as one batched image net against R separate nets, side by side.

The question behind batched seeds: does stacking R generators (``torch.func``:
``stack_module_state`` + ``vmap`` over ``functional_call``) and running them as one
batched step give more seed-steps per second than running the R nets one after the
other? Times forward + backward (gradients of an MSE against a fixed target) of the
image net, in alternating rounds, and checks that the batched gradients equal the
separate ones (up to float32 summation order). Prints and saves the ratio
separate / batched (above 1: batching pays).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seed_batches/batched_seeds.py --seeds 4 --size 96 --kernel 9 --channels 32
    .venv/bin/python benchmarks/seed_batches/batched_seeds.py --device cuda --seeds 8 --size 255 --kernel 27 --channels 128

Result: ``benchmarks/seed_batches/results/batched_seeds_<device>_<size>_<kernel>_<channels>ch_R<seeds>_<machine>.json``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import save  # noqa: E402
from torch.func import functional_call, grad, stack_module_state, vmap

from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.physics import support_size


def separate_nets(seeds: int, channels: int, device: str) -> list[torch.nn.Module]:
    """One image net per seed, each initialized from its own seed. Batch norm keeps no
    running statistics (a job's steps use the batch statistics anyway), so the nets can
    be stacked."""
    nets = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        net = ImageNetSpec(channels=channels).build().to(device)
        torch.func.replace_all_batch_norm_modules_(net)
        nets.append(net)
    return nets


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4, help="R, the seeds batched together")
    parser.add_argument("--size", type=int, default=96, help="image side, pixels")
    parser.add_argument("--kernel", type=int, default=9, help="kernel side, pixels (the net runs on the support)")
    parser.add_argument("--channels", type=int, default=32, help="image net width")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds timed (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="folder of the result file (default: this study's results/)")
    args = parser.parse_args()

    nets = separate_nets(args.seeds, args.channels, args.device)
    template = copy.deepcopy(nets[0]).to("meta")
    params, buffers = stack_module_state(nets)
    support = support_size((args.size, args.size), (args.kernel, args.kernel))
    generator = torch.Generator().manual_seed(0)
    z = (torch.rand(args.seeds, 1, 8, *support, generator=generator) * 0.1).to(args.device)
    target = torch.rand(args.seeds, 1, 1, *support, generator=generator).to(args.device)

    def loss(parameters, buffer_values, net_input, wanted):
        return torch.nn.functional.mse_loss(functional_call(template, (parameters, buffer_values), (net_input,)), wanted)

    batched_gradients = vmap(grad(loss))

    def batched_step():
        return batched_gradients(params, buffers, z, target)

    def separate_steps():
        gradients = []
        for seed, net in enumerate(nets):
            net.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(z[seed]), target[seed]).backward()
            gradients.append({name: p.grad for name, p in net.named_parameters()})
        return gradients

    stacked, one_by_one = batched_step(), separate_steps()
    largest = max(float(p.grad.abs().max()) for net in nets for p in net.parameters())
    difference = max(
        float((stacked[name][seed] - gradients[name]).detach().abs().max())
        for seed, gradients in enumerate(one_by_one)
        for name in gradients
    )
    times = {"batched": [], "separate": []}
    for _ in range(args.rounds):
        for name, step in (("batched", batched_step), ("separate", separate_steps)):
            synchronize(args.device)
            start = time.perf_counter()
            step()
            synchronize(args.device)
            times[name].append(time.perf_counter() - start)
    batched, separate = statistics.median(times["batched"]), statistics.median(times["separate"])
    result = {
        "settings": {**vars(args), "out": str(args.out)},
        "support": list(support),
        "seconds_per_round": times,
        "median_batched_s": batched,
        "median_separate_s": separate,
        "seed_steps_per_s_batched": args.seeds / batched,
        "seed_steps_per_s_separate": args.seeds / separate,
        "ratio_separate_over_batched": separate / batched,
        "max_gradient_difference": difference,
        "max_gradient": largest,
    }
    name = f"batched_seeds_{args.device}_{args.size}_{args.kernel}_{args.channels}ch_R{args.seeds}"
    path = save(name, result, args.out)
    print(
        f"R={args.seeds}, {args.size}×{args.size} (support {support[0]}), {args.channels} channels, {args.device}: "
        f"batched {batched:.3f} s, separate {separate:.3f} s per round of R steps; separate/batched "
        f"{separate / batched:.2f}; gradients differ by at most {difference:.1e} (largest {largest:.1e}); {path}"
    )


if __name__ == "__main__":
    main()
