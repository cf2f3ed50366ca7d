"""Numeric precision: float32 by default, bfloat16 autocast on request.

A job runs in ``32-true``, what both papers ran, unless ``--trainer.precision`` says
otherwise. ``bf16-mixed`` is faster per step on CPUs with native bfloat16 (AVX512-BF16 or
AMX) for image nets of 64 channels or more: 1.68× on an AMD EPYC and 2.11× on an Intel Xeon
with AMX at 255×255 with 128 channels, none at 32 channels
(``benchmarks/cpu_step/precision_crossover.py``). It was the default on such CPUs until
2026-12-06, when the paper-scale bank's Levin runs of the improved method in both precisions
(seed 0, seven of the eight pairs on one CPU) decided against it by a rule fixed before they
all landed: bf16 failed an input that float32 solved, and scored 1.65 dB lower on average
(``benchmarks/paper_scale/README.md``). The blur, SSIM and loss sums run in float32 under
either precision.
"""

from __future__ import annotations

DEFAULT_PRECISION = "32-true"
"""The Trainer precision of a job that names none (module docstring)."""


def activation_bytes(precision) -> int:
    """Bytes per activation value under a Trainer ``precision``: 2 under 16-bit autocast
    (``bf16-mixed``, ``16-mixed``, ``bf16-true``, …), else 4 (float32); what memory
    estimates and automatic tile sizes are computed with."""
    return 2 if str(precision).startswith(("bf16", "16")) else 4
