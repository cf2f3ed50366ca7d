"""Every user mistake gives one line on stderr naming the fix, exit code 2, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONF

from lightning_deblur.commands.fit import main
from lightning_deblur.core.imagefiles import write_image


def run_expecting_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONF / "tiny.yaml"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def image_40(tmp_path):
    write_image(tmp_path / "img.png", np.random.default_rng(0).random((40, 40)))
    return str(tmp_path / "img.png")


def test_missing_file(capsys, tmp_path):
    line = run_expecting_error(capsys, "--data.image", str(tmp_path / "nope.png"), "--data.kernel_size", "5")
    assert "not found" in line and "--data.image" in line


def test_not_an_image(capsys, tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    line = run_expecting_error(capsys, "--data.image", str(tmp_path / "notes.png"), "--data.kernel_size", "5")
    assert "not an image" in line and "PNG, JPEG or TIFF" in line


def test_folder_instead_of_file(capsys, tmp_path):
    line = run_expecting_error(capsys, "--data.image", str(tmp_path), "--data.kernel_size", "5")
    assert "folder" in line


def test_even_kernel_size(capsys, image_40):
    line = run_expecting_error(capsys, "--data.image", image_40, "--data.kernel_size", "6")
    assert "even" in line and "use 7" in line


def test_too_small_kernel_size(capsys, image_40):
    line = run_expecting_error(capsys, "--data.image", image_40, "--data.kernel_size", "1")
    assert "too small" in line and "at least 3" in line


def test_kernel_not_smaller_than_image(capsys, tmp_path):
    write_image(tmp_path / "small.png", np.random.default_rng(0).random((40, 20)))
    line = run_expecting_error(capsys, "--data.image", str(tmp_path / "small.png"), "--data.kernel_size", "21")
    assert "not smaller than the image" in line and "--data.kernel_size" in line


def test_image_too_small_for_the_net(capsys, tmp_path):
    write_image(tmp_path / "tiny.png", np.random.default_rng(0).random((20, 20)))
    line = run_expecting_error(capsys, "--data.image", str(tmp_path / "tiny.png"), "--data.kernel_size", "5")
    assert "5 levels" in line and "--model.image_net.levels" in line


def test_sharp_reference_of_another_size(capsys, image_40, tmp_path):
    write_image(tmp_path / "sharp.png", np.random.default_rng(0).random((30, 40)))
    line = run_expecting_error(
        capsys, "--data.image", image_40, "--data.sharp", str(tmp_path / "sharp.png"), "--data.kernel_size", "5"
    )
    assert "must match" in line


def test_unknown_bundled_example(capsys):
    line = run_expecting_error(capsys, "--data.image", "example:nothing.png", "--data.kernel_size", "5")
    assert "kodim05_blurred.png" in line


def test_nothing_is_written_for_bad_input(capsys, tmp_path):
    logs = tmp_path / "logs"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONF / "tiny.yaml"), "--trainer.logger.init_args.save_dir", str(logs),
              "--data.image", str(tmp_path / "nope.png"), "--data.kernel_size", "5"])  # fmt: skip
    assert not logs.exists()


@pytest.mark.slow
def test_the_real_command_line_prints_exactly_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    # The package may be installed (CI's editable install) or only importable from the repo.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "lightning_deblur", "fit", "--data.image", str(tmp_path / "missing.png"),
         "--data.kernel_size", "5"],  # fmt: skip
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: image file not found: '{tmp_path / 'missing.png'}'; check the path given to --data.image"
    ]
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--model.kernel_crop.size", "12"], ["kernel crop 12×12", "--model.kernel_crop.size"]),
        (["--model.kernel_crop.box", "[30, 0, 20, 20]"], ["does not lie inside the 40×40 image"]),
        (["--model.finish.tile_size", "5"], ["tile 5×5", "--model.finish.tile_size"]),
        (["--model.finish.tile_size", "20", "--model.finish.overlap", "20"], ["overlap", "smaller than the tile"]),
    ],
    ids=["crop-too-small", "box-outside", "tile-too-small", "overlap-too-large"],
)
def test_bad_crop_and_tile_settings_are_refused_before_any_run_folder(capsys, tmp_path, image_40, options, expected):
    logs = tmp_path / "logs"
    line = run_expecting_error(
        capsys, "--data.image", image_40, "--data.kernel_size", "5", "--trainer.logger.init_args.save_dir", str(logs),
        *options,
    )  # fmt: skip
    assert all(part in line for part in expected), line
    assert not logs.exists()


def test_a_kernel_file_with_nan_or_inf_is_refused(capsys, tmp_path, image_40):
    for value in (np.nan, np.inf):
        kernel = np.full((5, 5), 0.04)
        kernel[2, 2] = value
        np.save(tmp_path / "k.npy", kernel)
        line = run_expecting_error(
            capsys, "--data.image", image_40, "--data.kernel", str(tmp_path / "k.npy"), "--model.kernel_mode", "fixed",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        )  # fmt: skip
        assert "finite" in line and "--data.kernel" in line
    assert not (tmp_path / "logs").exists()


def test_an_even_kernel_file_is_blamed_and_its_fix_given(capsys, tmp_path, image_40):
    np.save(tmp_path / "k.npy", np.full((4, 4), 1 / 16))
    line = run_expecting_error(capsys, "--data.image", image_40, "--data.kernel", str(tmp_path / "k.npy"))
    assert "4×4" in line and "--data.kernel" in line and "5×5" in line and "--data.kernel_size" not in line


@pytest.mark.parametrize("value", [0.0, 0.5], ids=["black", "grey"])
def test_an_image_of_one_flat_colour_is_refused(capsys, tmp_path, value):
    write_image(tmp_path / "flat.png", np.full((40, 40), value))
    line = run_expecting_error(capsys, "--data.image", str(tmp_path / "flat.png"), "--data.kernel_size", "5")
    assert "nothing to deblur" in line


def test_a_two_pixel_image_is_told_to_be_larger_not_to_shrink_the_kernel(capsys, tmp_path):
    write_image(tmp_path / "dots.png", np.array([[0.2, 0.8], [0.8, 0.2]]))
    line = run_expecting_error(capsys, "--data.image", str(tmp_path / "dots.png"), "--data.kernel_size", "3")
    assert "larger image" in line and "smaller --data.kernel_size" not in line


def test_a_kernel_size_written_as_in_a_manifest_parses(tmp_path):
    from conftest import run_fit, read_metrics

    write_image(tmp_path / "img.png", np.random.default_rng(0).random((40, 40)))
    run = run_fit(tmp_path, "--data.image", str(tmp_path / "img.png"), "--data.kernel_size", "5x7",
                  "--trainer.max_steps", "1")  # fmt: skip
    assert read_metrics(run)["kernel_size"] == [5, 7]


@pytest.mark.parametrize(
    "options, named",
    [
        (["--model.image_net.levels", "0"], "--model.image_net.levels"),
        (["--model.image_net.channels", "0"], "--model.image_net.channels"),
        (["--model.image_net.skip_channels", "-1"], "--model.image_net.skip_channels"),
        (["--model.scales.count", "0"], "--model.scales.count"),
        (["--checkpoint.every_n_steps", "-1"], "--checkpoint.every_n_steps"),
    ],
    ids=["levels", "channels", "skip-channels", "scales", "checkpoint-interval"],
)
def test_impossible_option_values_are_one_line_naming_the_option(capsys, tmp_path, image_40, options, named):
    logs = tmp_path / "logs"
    line = run_expecting_error(
        capsys, "--data.image", image_40, "--data.kernel_size", "5", "--trainer.logger.init_args.save_dir", str(logs),
        *options,
    )  # fmt: skip
    assert named in line and "must be" in line
    assert not logs.exists()


def test_an_output_folder_that_cannot_be_written_is_one_line(capsys, tmp_path, image_40):
    (tmp_path / "a_file").write_text("")
    line = run_expecting_error(
        capsys, "--data.image", image_40, "--data.kernel_size", "5",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "a_file" / "logs"),
    )  # fmt: skip
    assert "cannot write into" in line and "--trainer.logger.init_args.save_dir" in line


def broken_deep_colour_files(folder):
    """A 16-bit RGB PNG and TIFF cut short, and a 'TIFF' that is only its signature."""
    import tifffile

    from lightning_deblur.core.high_bit_depth import write_deep_colour_png

    pixels = (np.random.default_rng(0).random((40, 40, 3)) * 65535).astype(np.uint16)
    write_deep_colour_png(folder / "whole.png", pixels)
    tifffile.imwrite(folder / "whole.tif", pixels)
    for name in ("whole.png", "whole.tif"):
        data = (folder / name).read_bytes()
        (folder / f"cut_{name}").write_bytes(data[: len(data) // 2])
    (folder / "fake.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    return [folder / "cut_whole.png", folder / "cut_whole.tif", folder / "fake.tif"]


def test_damaged_sixteen_bit_and_fake_tiff_files_are_one_line(capsys, tmp_path):
    for path in broken_deep_colour_files(tmp_path):
        line = run_expecting_error(capsys, "--data.image", str(path), "--data.kernel_size", "5")
        assert str(path) in line and "--data.image" in line
