"""The Python API: ``deblur(image, kernel_size, config, seed, options)``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CONF, run_fit
from PIL import Image

from lightning_deblur import deblur
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import read_image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_a_file_through_the_api_gives_the_files_the_command_line_gives(blurred_case, tmp_path):
    logs = tmp_path / "api_logs"
    result = deblur(
        blurred_case["image"], 5, config=CONF / "tiny_improved.yaml", seed=3,
        options={"trainer.logger.init_args.save_dir": str(logs)},
    )  # fmt: skip
    cli_run = run_fit(tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
                      "--seed_everything", "3", config=CONF / "tiny_improved.yaml")  # fmt: skip
    assert result.folder.parent.parent == logs and result.metrics["status"] == "done"
    for name in ("deblurred.png", "kernel.npy"):
        assert (result.folder / name).read_bytes() == (cli_run / name).read_bytes(), name
    assert result.image.dtype == np.float32 and result.image.shape == (37, 31)
    # The in-memory image is the written one before its rounding to 8 bits.
    written = np.asarray(Image.open(result.folder / "deblurred.png"), dtype=np.float64) / 255
    assert np.abs(result.image - written).max() <= 0.5 / 255 + 1e-6
    assert result.kernel.dtype == np.float32 and result.kernel.shape == (5, 5)
    assert result.kernel.sum() == pytest.approx(1, abs=1e-5) and (result.kernel >= 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_arrays_in_every_accepted_type_and_colour_come_back_in_the_inputs_shape(blurred_case, tmp_path, dtype):
    grey = read_image(blurred_case["image"]).pixels
    colour = np.stack([grey, grey * 0.9, grey * 0.8], axis=-1)
    scale = {"uint8": 255, "uint16": 65535, "float32": 1}[dtype]
    pixels = (colour * scale).round().astype(dtype) if scale > 1 else colour.astype(dtype)
    result = deblur(
        pixels, (5, 5), config=CONF / "tiny_improved.yaml",
        options={"trainer.logger.init_args.save_dir": str(tmp_path), "model.iterations": 12, "model.finish.iterations": 4},
    )  # fmt: skip
    assert result.image.shape == (37, 31, 3) and result.image.dtype == np.float32
    assert 0 <= result.image.min() and result.image.max() <= 1
    assert result.metrics["iterations"] == 8 + 8 + 12 + 4
    # The array is kept as the run's input, named by its content, in its bit depth.
    stored = read_image(result.metrics["image"])
    assert stored.path.parent == tmp_path / "inputs" and stored.bit_depth == (8 if dtype == "uint8" else 16)
    assert np.abs(stored.pixels - pixels / scale).max() < 1e-4


@pytest.mark.parametrize(
    "image, config, message",
    [
        (np.zeros((4, 5, 2)), "improved", "must be (H, W) or (H, W, 3)"),
        (np.full((40, 40), 1.5), "improved", "finite values in [0, 1]"),
        (np.zeros((40, 40), dtype=np.int32), "improved", "uint8, uint16 or float"),
        (np.zeros((40, 40), dtype=np.uint8), "no_such_method", "neither a shipped one"),
    ],
)
def test_bad_arrays_and_configs_are_refused_with_the_fix(image, config, message, tmp_path):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        deblur(image, 5, config=config, options={"trainer.logger.init_args.save_dir": str(tmp_path)})


def test_an_option_that_does_not_parse_is_one_line_naming_it(blurred_case, tmp_path):
    with pytest.raises(InputError, match="model.iterations"):
        deblur(blurred_case["image"], 5, config=CONF / "tiny.yaml",
               options={"trainer.logger.init_args.save_dir": str(tmp_path), "model.iterations": "many"})  # fmt: skip


@pytest.mark.slow
def test_the_job_from_its_config_under_a_plain_trainer_writes_the_command_lines_files(blurred_case, tmp_path):
    """The method lives in the module: built from the YAML file and run by a Trainer with
    no callbacks of ours, the job writes the same result files as ``fit`` does."""
    from lightning.pytorch import Trainer, seed_everything

    from lightning_deblur.job.data import BlurredImage
    from lightning_deblur.job.deblur_job import DeblurJob

    cli_run = run_fit(tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
                      config=CONF / "tiny_improved.yaml")  # fmt: skip
    seed_everything(0)  # the config's seed_everything, which fit applies before it builds the job
    job = DeblurJob.from_config(CONF / "tiny_improved.yaml")
    folder = tmp_path / "python"
    Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            default_root_dir=folder).fit(job, datamodule=BlurredImage(str(blurred_case["image"]), 5))  # fmt: skip
    for name in ("deblurred.png", "kernel.npy", "kernel.png"):
        assert (folder / name).read_bytes() == (cli_run / name).read_bytes(), name
    ours, theirs = (json.loads((run / "metrics.json").read_text()) for run in (folder, cli_run))
    timing = {"wall_time_s", "seconds_per_iteration"}
    assert {k: v for k, v in ours.items() if k not in timing} == {k: v for k, v in theirs.items() if k not in timing}
    assert ours["iterations"] == 8 + 8 + 20 and ours["status"] == "done"
    # The last step ran with the finest scale's weights after the switch at 10.
    assert job.loss_weights == {"mse": 0.0, "ssim": 1.0, "tv": 0.01, "kernel_l2": 0.0}


def test_a_job_is_read_from_its_config_without_deprecated_parser_calls(monkeypatch):
    """``DeblurJob.from_config`` uses no jsonargparse call that a later release removes."""
    import warnings

    from lightning_deblur.job.deblur_job import DeblurJob

    # jsonargparse shows each deprecation once per process, and the command line's own
    # parsing in earlier tests may have used it up: ask for every one.
    monkeypatch.setenv("JSONARGPARSE_DEPRECATION_WARNINGS", "all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job = DeblurJob.from_config(CONF / "tiny_improved.yaml")
    assert isinstance(job, DeblurJob)
    from_jsonargparse = [str(w.message) for w in caught if type(w.message).__module__.startswith("jsonargparse")]
    assert not from_jsonargparse, from_jsonargparse


def test_every_shipped_config_name_is_found():
    from lightning_deblur.commands.api import SHIPPED_CONFIGS, config_path

    for name in SHIPPED_CONFIGS:
        assert config_path(name).is_file() and config_path(name).name == f"{name}.yaml"
