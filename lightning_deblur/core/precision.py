"""The default numeric precision of a job: bfloat16 autocast where it was measured to pay.

On a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX), ``bf16-mixed`` ran the
paper's image net (128 channels) faster per step than float32 at 255×255 / 27×27, 1.68× on
an AMD EPYC and 2.11× on an Intel Xeon with AMX, with the same quality over seeds on the
reduced protocol (docs/RESULTS.md). The gain comes from the convolutions, so it grows with
the net's width: from 64 channels on it was 1.13–1.43×, at 32 channels none (0.88–1.11×,
the casts cost as much as they save;
``benchmarks/cpu_step/precision_crossover.py``). So ``bf16-mixed`` is the default for image nets
of at least :data:`BF16_MIN_CHANNELS` channels on such CPUs. CPUs without native
bfloat16 emulate it, and on GPUs it is not measured yet: those default to ``32-true``.
The blur, SSIM and loss sums run in float32 under either precision. An explicit
``--trainer.precision`` always wins.
"""

from __future__ import annotations

from pathlib import Path

import torch

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU flags list native bfloat16 instructions (Linux; ``False`` elsewhere)."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in NATIVE_BF16_CPU_FLAGS)


def runs_on_cpu(accelerator) -> bool:
    """Whether a Trainer with this ``accelerator`` setting would run on the CPU."""
    if accelerator == "cpu":
        return True
    if accelerator in (None, "auto"):
        return not torch.cuda.is_available() and not (torch.backends.mps.is_available())
    return False


BF16_MIN_CHANNELS = 64
"""Narrowest image net for which bfloat16 is the default (module docstring)."""


def default_precision(accelerator, image_channels: int) -> str:
    """``bf16-mixed`` for image nets of at least :data:`BF16_MIN_CHANNELS` channels on a
    CPU with native bfloat16, ``32-true`` otherwise."""
    pays = image_channels >= BF16_MIN_CHANNELS and runs_on_cpu(accelerator) and cpu_has_native_bf16()
    return "bf16-mixed" if pays else "32-true"


def activation_bytes(precision) -> int:
    """Bytes per activation value under a Trainer ``precision``: 2 under 16-bit autocast
    (``bf16-mixed``, ``16-mixed``, ``bf16-true``, …), else 4 (float32); what memory
    estimates and automatic tile sizes are computed with."""
    return 2 if str(precision).startswith(("bf16", "16")) else 4
