"""Step time of a `fit` job against a plain PyTorch loop doing the same work, side by side.

Both run the original method's step (same nets, loss, optimizer, input perturbation) on
the same image: a Levin et al. blurred image (255×255) with a 27×27 kernel by default.
The Lightning side is the real CLI configuration (configs/selfdeblur.yaml: logger,
callbacks, progress bar and all), built in-process. Rounds alternate between the two so
that drift of a shared machine hits both alike; the script prints the median step
times and their ratio and saves them under results/ beside this script.

    .venv/bin/python benchmarks/cpu_step/step_time.py --size 255 --kernel 27 --steps 10
    .venv/bin/python benchmarks/cpu_step/step_time.py --size 128 --kernel 15 --steps 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import DATA, ROOT, save  # noqa: E402
from lightning.pytorch import Callback

from lightning_deblur.commands.fit import DeblurCLI
from lightning_deblur.core.colour import luminance
from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec
from lightning_deblur.core.imagefiles import read_image, write_image
from lightning_deblur.core.losses import ssim
from lightning_deblur.core.metrics import ssim_window
from lightning_deblur.core.physics import blur_valid, support_size



class StepClock(Callback):
    """Timestamps the start of every step; differences include all per-step overhead."""

    def __init__(self):
        self.starts = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        self.starts.append(time.perf_counter())


def make_input(folder: Path, size: int) -> Path:
    """A ``size``×``size`` crop of a Levin blurred image (random pixels if the data is absent)."""
    source = DATA / "levin" / "im1_kernel4_img.png"
    if source.exists():
        pixels = luminance(read_image(source).pixels)
        if pixels.shape[0] < size:
            pixels = np.pad(pixels, ((0, size - pixels.shape[0]), (0, size - pixels.shape[1])), mode="reflect")
        pixels = pixels[:size, :size]
    else:
        pixels = np.random.default_rng(0).random((size, size))
    return write_image(folder / f"blurred_{size}.png", pixels)


def lightning_steps(image: Path, kernel: int, steps: int, warmup: int, precision: str, ssim_phase: bool, logs: Path):
    args = [
        "--config", str(ROOT / "configs" / "selfdeblur.yaml"),
        "--data.image", str(image), "--data.kernel_size", str(kernel),
        "--model.iterations", str(warmup + steps),
        "--trainer.precision", precision,
        "--trainer.logger.init_args.save_dir", str(logs),
        "--trainer.enable_model_summary", "false",
        "--outputs.verbose", "false",
    ]  # fmt: skip
    if ssim_phase:
        args += ["--schedule.weights", '{"ssim": {"0": 1.0}}']
    cli = DeblurCLI(args=args, run=False)
    clock = StepClock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return np.diff(clock.starts)[warmup:].tolist()


def plain_steps(image: Path, kernel: int, steps: int, warmup: int, precision: str, ssim_phase: bool) -> list[float]:
    """The same step, written as a bare PyTorch loop."""
    torch.manual_seed(0)
    y = torch.from_numpy(luminance(read_image(image).pixels)).float()[None, None]
    size = support_size(tuple(y.shape[-2:]), (kernel, kernel))
    image_net, kernel_net = ImageNetSpec().build(), KernelNetSpec().build((kernel, kernel))
    z_x, z_k = torch.rand(1, 8, *size) * 0.1, torch.rand(200) * 0.1
    # The same layout as the job's default on CPU (model.memory_format: auto).
    image_net.to(memory_format=torch.channels_last)
    z_x = z_x.contiguous(memory_format=torch.channels_last)
    window = ssim_window()
    optimizer = torch.optim.Adam(
        [{"params": image_net.parameters(), "lr": 0.01}, {"params": kernel_net.parameters(), "lr": 1e-4}]
    )
    use_bf16 = precision.startswith("bf16")
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            x = image_net(z_x + 0.001 * torch.randn_like(z_x))
            k = kernel_net(z_k)
        y_hat = blur_valid(x, k)
        loss = 1 - ssim(y_hat, y, window) if ssim_phase else torch.nn.functional.mse_loss(y_hat, y)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[warmup:]


def add_timing_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    """Image and kernel size, steps, warm-up, rounds and phase: shared by the step-time scripts."""
    parser.add_argument("--size", type=int, default=255, help="image side, pixels")
    parser.add_argument("--kernel", type=int, default=27, help="kernel side, pixels (odd)")
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each side")
    parser.add_argument("--ssim", action="store_true", help="time the 1-SSIM phase instead of the MSE phase")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser, steps=10)
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        image = make_input(Path(folder), args.size)
        plain, ours = [], []
        for _ in range(args.rounds):
            plain += plain_steps(image, args.kernel, args.steps, args.warmup, args.precision, args.ssim)
            ours += lightning_steps(image, args.kernel, args.steps, args.warmup, args.precision, args.ssim, Path(folder) / "logs")
    plain_median, ours_median = statistics.median(plain), statistics.median(ours)
    ratio = ours_median / plain_median
    label = f"{args.size}x{args.size}, kernel {args.kernel}, {args.precision}, {'ssim' if args.ssim else 'mse'} phase"
    print(f"{label}: plain loop {plain_median:.4f} s/step, lightning_deblur fit {ours_median:.4f} s/step, ratio {ratio:.3f}")
    path = save(
        f"step_time_{args.size}_{args.kernel}_{args.precision}{'_ssim' if args.ssim else ''}",
        {"config": vars(args), "plain_s_per_step": plain, "fit_s_per_step": ours,
         "plain_median": plain_median, "fit_median": ours_median, "ratio_fit_over_plain": ratio},
    )  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
