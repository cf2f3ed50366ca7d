"""Reading real-world files: orientation, alpha, palettes, bit depths, odd paths."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import read_metrics, run_fit
from lightning_deblur.io import read_image, write_image


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 30), dtype=np.uint8)
    pixels[0, :] = 255  # a bright top row
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    loaded = read_image(tmp_path / "rotated.jpg")
    assert loaded.size == (30, 20)
    assert loaded.pixels[:, -1].mean() > 0.8  # the top row is now the right column


def test_alpha_is_dropped_with_a_warning(tmp_path):
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    with pytest.warns(UserWarning, match="alpha channel is dropped"):
        loaded = read_image(tmp_path / "alpha.png")
    assert loaded.pixels.shape == (10, 12, 3) and loaded.pixels[0, 0, 0] == pytest.approx(200 / 255)


def test_palette_image_is_expanded(tmp_path):
    Image.fromarray((np.arange(120).reshape(10, 12) % 7 * 30).astype(np.uint8)).convert("P").save(tmp_path / "p.png")
    loaded = read_image(tmp_path / "p.png")
    assert loaded.bit_depth == 8 and loaded.pixels.shape[:2] == (10, 12)


def test_sixteen_bit_grey_keeps_its_precision(tmp_path):
    values = np.linspace(0, 1, 37 * 31).reshape(37, 31)
    write_image(tmp_path / "g16.png", values, bit_depth=16)
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.bit_depth == 16
    assert np.abs(loaded.pixels - values).max() <= 0.5 / 65535 + 1e-12


def test_paths_with_spaces_and_unicode_work(blurred_case, tmp_path):
    folder = tmp_path / "my photos ünïcødé"
    folder.mkdir()
    image = folder / "blurred image ☀.png"
    image.write_bytes(blurred_case["image"].read_bytes())
    run = run_fit(folder, "--data.image", str(image), "--data.kernel_size", "5")
    assert read_metrics(run)["image"] == str(image)
    assert (run / "deblurred.png").is_file()


def test_results_never_overwrite_an_input(blurred_case, tmp_path, capsys):
    from conftest import CONF
    from lightning_deblur.cli import main

    run = tmp_path / "logs" / "x" / "v"
    run.mkdir(parents=True)
    image = run / "deblurred.png"
    image.write_bytes(blurred_case["image"].read_bytes())
    before = image.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONF / "tiny.yaml"), "--data.image", str(image), "--data.kernel_size", "5",
              "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
              "--trainer.logger.init_args.name", "x", "--trainer.logger.init_args.version", "v"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "never overwrite inputs" in capsys.readouterr().err
    assert image.read_bytes() == before
