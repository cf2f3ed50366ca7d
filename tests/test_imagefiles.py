"""Reading real-world files: orientation, alpha, palettes, bit depths, odd paths."""

from __future__ import annotations

import numpy as np
import png
import pytest
import tifffile
import torch
from conftest import read_metrics, run_fit
from PIL import Image, ImageOps

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.high_bit_depth import orient
from lightning_deblur.core.colour import luminance
from lightning_deblur.core.imagefiles import read_grey, read_image, write_csv, write_image


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


def deep_colour(height=23, width=17):
    """uint16 RGB whose low bytes differ from pixel to pixel (lost at 8 bits)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 65536, (height, width, 3), dtype=np.uint16)


def test_sixteen_bit_colour_png_keeps_its_precision_both_ways(tmp_path):
    values = deep_colour()
    png.from_array(values.reshape(23, -1), "RGB;16").save(tmp_path / "rgb16.png")
    loaded = read_image(tmp_path / "rgb16.png")
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (23, 17, 3)
    np.testing.assert_array_equal(np.round(loaded.pixels * 65535).astype(np.uint16), values)
    write_image(tmp_path / "out.png", loaded.pixels, bit_depth=16)  # the writer keeps all 16 bits too
    np.testing.assert_array_equal(read_image(tmp_path / "out.png").pixels, loaded.pixels)


@pytest.mark.parametrize("planar", [False, True])
def test_sixteen_bit_colour_tiff_keeps_its_precision(tmp_path, planar):
    values = deep_colour()
    stored = np.moveaxis(values, -1, 0) if planar else values
    tifffile.imwrite(tmp_path / "rgb16.tif", stored, photometric="rgb", planarconfig="separate" if planar else "contig")
    loaded = read_image(tmp_path / "rgb16.tif")
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(np.round(loaded.pixels * 65535).astype(np.uint16), values)


def test_sixteen_bit_rgba_png_drops_alpha_with_a_warning(tmp_path):
    values = np.concatenate([deep_colour(), np.full((23, 17, 1), 40000, dtype=np.uint16)], axis=-1)
    png.from_array(values.reshape(23, -1), "RGBA;16").save(tmp_path / "rgba16.png")
    with pytest.warns(UserWarning, match="alpha channel is dropped"):
        loaded = read_image(tmp_path / "rgba16.png")
    np.testing.assert_array_equal(np.round(loaded.pixels * 65535).astype(np.uint16), values[..., :3])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientations_match_what_pillow_does(orientation):
    pixels = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(orient(pixels, orientation), expected)


@pytest.mark.slow
def test_a_sixteen_bit_colour_job_writes_a_sixteen_bit_colour_result(tmp_path):
    rng = np.random.default_rng(1)
    values = (rng.uniform(0.2, 0.8, (37, 31, 3)) * 65535).astype(np.uint16)
    png.from_array(values.reshape(37, -1), "RGB;16").save(tmp_path / "photo16.png")
    run = run_fit(tmp_path, "--data.image", str(tmp_path / "photo16.png"), "--data.kernel_size", "5")
    reader = png.Reader(filename=str(run / "deblurred.png"))
    width, height, _, info = reader.read()
    assert (height, width, info["bitdepth"], info["planes"]) == (37, 31, 16, 3)
    assert read_metrics(run)["colour"] == "full"


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

    from lightning_deblur.commands.fit import main

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


def test_a_decompression_bomb_is_refused_with_one_line(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40×40 counts as more than twice this
    with pytest.raises(InputError, match="too large to decode safely"):
        read_image(tmp_path / "huge.png")


def test_write_csv_writes_exact_line_ends_and_replaces_the_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    write_csv(path, ["a", "b"], [{"a": 1, "b": "x,y"}, {"a": 2}])
    assert path.read_bytes() == b'a,b\n1,"x,y"\n2,\n'
    write_csv(path, ["a"], [{"a": "1"}], line_end="\r\n")
    assert path.read_bytes() == b"a\r\n1\r\n"

    def failing_rows():
        yield {"a": "2"}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_csv(path, ["a"], failing_rows())
    assert path.read_bytes() == b"a\r\n1\r\n"  # the old table, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]  # no temporary left


def test_read_grey_gives_the_luminance_as_a_float64_batch(tmp_path):
    pixels = np.random.default_rng(0).random((9, 11, 3))
    write_image(tmp_path / "colour.png", pixels)
    grey = read_grey(tmp_path / "colour.png")
    assert grey.shape == (1, 1, 9, 11) and grey.dtype == torch.float64
    np.testing.assert_array_equal(grey[0, 0].numpy(), luminance(read_image(tmp_path / "colour.png").pixels))
