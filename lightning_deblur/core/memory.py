"""How much memory a job needs, and the check that refuses jobs that cannot fit.

The estimate runs the image generator once on PyTorch's ``meta`` device (no memory, no
arithmetic) and adds up the tensors a training step keeps alive: every module output
(autograd saves most of them for the backward pass), the parameters with their
gradients and the two Adam moments, and the input noise. A factor covers the
temporaries of the backward pass; it was calibrated against measured peaks
(``benchmarks/memory/memory.py``, figures in docs/RESULTS.md).
"""

from __future__ import annotations

import os

import torch

from lightning_deblur.core.errors import InputError

BACKWARD_FACTOR = 2.0
"""Peak step memory over the memory of the saved forward outputs (see module docstring)."""


def step_bytes(image_spec, support: tuple[int, int], output_channels: int = 1, bytes_per_value: int = 4) -> int:
    """Estimated peak bytes of one training step of the image generator on ``support``.

    Args:
        image_spec: the job's :class:`~lightning_deblur.core.generators.ImageNetSpec`.
        support: ``(H', W')`` of the estimated image, pixels.
        output_channels: image channels.
        bytes_per_value: 4 for float32 activations, 2 under bfloat16 autocast.
    """
    with torch.device("meta"):
        net = image_spec.build(output_channels=output_channels)
        z = torch.empty(1, image_spec.input_channels, *support)
    saved = 0

    def count(module, inputs, output):
        nonlocal saved
        if isinstance(output, torch.Tensor) and not list(module.children()):
            saved += output.numel()

    handles = [m.register_forward_hook(count) for m in net.modules()]
    try:
        net(z)
    finally:
        for handle in handles:
            handle.remove()
    parameters = sum(p.numel() for p in net.parameters())
    # Each non-local block also keeps an (HW × N) attention map, made by torch.bmm,
    # which is not a module: the hooks miss it, so it is added here.
    attention = _attention_values(image_spec, support)
    activations = (saved + attention) * bytes_per_value * BACKWARD_FACTOR
    return int(activations + parameters * 4 * 4 + z.numel() * 4)


def _attention_values(image_spec, support: tuple[int, int]) -> int:
    total = 0
    height, width = support
    for level in range(1, image_spec.levels + 1):
        height, width = (height + 1) // 2, (width + 1) // 2
        if level >= image_spec.non_local_from_level:
            pooled = (height // 2) * (width // 2)
            total += height * width * pooled
    return total


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` in bytes (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def check_fits(image_spec, support: tuple[int, int], device: torch.device, bytes_per_value: int = 4) -> int:
    """Raise :class:`InputError` when a step on ``support`` cannot fit on ``device``.

    Returns the estimate in bytes. Set ``LIGHTNING_DEBLUR_SKIP_MEMORY_CHECK=1`` to skip.
    """
    needed = step_bytes(image_spec, support, bytes_per_value=bytes_per_value)
    if os.environ.get("LIGHTNING_DEBLUR_SKIP_MEMORY_CHECK") == "1":
        return needed
    free = available_bytes(device)
    if free is not None and needed > free:
        raise InputError(
            f"a {support[0]}×{support[1]} estimate needs about {needed / 2**30:.1f} GiB per step but {device} has "
            f"{free / 2**30:.1f} GiB free; estimate the kernel on a smaller crop (--model.kernel_crop.size 256), "
            "use smaller tiles (--model.finish.tile_size), a narrower image net (--model.image_net.channels) "
            "or, with --seeds, fewer seeds at once"
        )
    return needed
