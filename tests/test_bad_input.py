"""Every user mistake gives one line on stderr naming the fix, exit code 2, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONF

from lightning_deblur.cli import main
from lightning_deblur.imagefiles import write_image


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
