"""A diverging job stops with a clear message and keeps its last good estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import CONF
from lightning.pytorch import Callback

from lightning_deblur.commands.fit import JOB_FAILED, main
from lightning_deblur.core.imagefiles import read_image


class PoisonAt(Callback):
    """Remembers the estimate at step ``keep`` and fills the image net with NaN after step ``poison``."""

    def __init__(self, keep: int, poison: int):
        self.keep, self.poison, self.kept = keep, poison, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.keep:
            self.kept = pl_module.estimate()[0].clone()
        if trainer.global_step == self.poison:
            with torch.no_grad():
                for parameter in pl_module.image_net.parameters():
                    parameter.fill_(float("nan"))


@pytest.mark.slow
def test_nan_stops_the_job_and_keeps_the_last_good_estimate(blurred_case, tmp_path, capsys, monkeypatch):
    poison = PoisonAt(keep=10, poison=12)
    from lightning_deblur.job.deblur_job import DeblurJob

    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), poison])
    logs = tmp_path / "logs"
    with pytest.raises(SystemExit) as exit_info:
        main([
            "fit", "--config", str(CONF / "tiny.yaml"), "--trainer.logger.init_args.save_dir", str(logs),
            "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
            "--model.iterations", "40", "--divergence.every_n_steps", "5",
        ])  # fmt: skip
    assert exit_info.value.code == JOB_FAILED
    err = capsys.readouterr().err
    assert "the job failed: the loss is not finite" in err and "step 10 is kept" in err
    (run,) = [p.parent for p in logs.glob("*/version_*/metrics.json")]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["iterations"] == 15
    kept = np.round(poison.kept[0, 0].double().numpy() * 255) / 255
    np.testing.assert_allclose(read_image(run / "deblurred.png").pixels, kept, atol=1e-9)


def test_a_collapsed_image_is_detected():
    from types import SimpleNamespace

    from lightning_deblur.job.divergence import DivergenceGuard

    guard = DivergenceGuard()
    flat = SimpleNamespace(latest_loss=torch.tensor(0.1), latest_x=torch.zeros(1, 1, 9, 9))
    assert "collapsed" in guard.problem(flat)
    healthy = SimpleNamespace(latest_loss=torch.tensor(0.1), latest_x=torch.rand(1, 1, 9, 9))
    assert guard.problem(healthy) is None
