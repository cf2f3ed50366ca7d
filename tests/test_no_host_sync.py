"""Logging reads values back to the host only at its intervals, never every step."""

from __future__ import annotations

import pytest
import sys

import torch
from conftest import run_fit


READS_TO_HOST = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy")
"""Every way a tensor's value reaches Python: each is a device sync on a GPU."""


@pytest.mark.slow
def test_values_are_read_back_only_at_logging_intervals(blurred_case, tmp_path, monkeypatch):
    reads = {"count": 0}

    def counting(original):
        def read(self, *args, **kwargs):
            # Adam keeps its step counter on the host (non-capturable Adam, on every device),
            # so reading it is not a device sync: only other reads count.
            caller = sys._getframe(1).f_code.co_filename
            if "torch/optim" not in caller.replace("\\", "/"):
                reads["count"] += 1
            return original(self, *args, **kwargs)

        return read

    for name in READS_TO_HOST:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    common = (
        "--data.image", str(blurred_case["image"]), "--data.sharp", str(blurred_case["sharp"]),
        "--data.kernel_size", "5", "--trainer.log_every_n_steps", "50", "--image_logging.every_n_steps", "0",
        "--progress_bar.refresh_rate", "50", "--trainer.enable_progress_bar", "true",
    )  # fmt: skip
    run_fit(tmp_path / "short", *common, "--model.iterations", "100")
    short = reads["count"]
    reads["count"] = 0
    run_fit(tmp_path / "long", *common, "--model.iterations", "300")
    long = reads["count"]
    # 200 more steps may add reads only at the 4 extra logging/progress points: a few
    # values each, far below one read per step.
    assert long - short < 60, (short, long)
