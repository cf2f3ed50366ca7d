"""Memory estimates, and the refusal of jobs that cannot fit."""

from __future__ import annotations

import pytest
from conftest import CONF

from lightning_deblur.commands.fit import main
from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.memory import step_bytes


def test_estimate_grows_with_the_image_and_shrinks_with_half_precision():
    spec = ImageNetSpec()
    small, large = step_bytes(spec, (100, 100)), step_bytes(spec, (300, 300))
    assert large > 5 * small
    assert step_bytes(spec, (300, 300), bytes_per_value=2) < large
    # measured on the development CPU (benchmarks/memory/memory.py): 958 MiB at 255×255 + 27×27
    assert 0.7 < step_bytes(spec, (281, 281)) / (958 * 2**20) < 1.5


def test_a_job_that_cannot_fit_is_refused_with_the_memory_it_needs(blurred_case, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lightning_deblur.core.memory.available_bytes", lambda device: 1024)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONF / "tiny.yaml"), "--data.image", str(blurred_case["image"]),
              "--data.kernel_size", "5", "--trainer.logger.init_args.save_dir", str(tmp_path)])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "GiB" in err and "kernel_crop.size" in err and "tile_size" in err and "Traceback" not in err
