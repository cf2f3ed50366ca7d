"""The default numeric precision of a job: bfloat16 autocast where it was measured to pay.

On a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX), ``bf16-mixed`` ran a step
1.68× faster than float32 at 255×255 / 27×27 and gave the same quality on the reduced
protocol (docs/RESULTS.md), so it is the default there. CPUs without native bfloat16
emulate it (slower than float32), and on GPUs it is not measured yet: those default to
``32-true``. The blur, SSIM and loss sums run in float32 under either precision. An
explicit ``--trainer.precision`` always wins.
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
    if accelerator in ("cpu",):
        return True
    if accelerator in (None, "auto"):
        return not torch.cuda.is_available() and not (torch.backends.mps.is_available())
    return False


def default_precision(accelerator) -> str:
    """``bf16-mixed`` on a CPU with native bfloat16, ``32-true`` elsewhere."""
    return "bf16-mixed" if runs_on_cpu(accelerator) and cpu_has_native_bf16() else "32-true"
