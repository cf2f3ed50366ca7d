"""``python -m lightning_deblur figures …``: every kind writes a readable PNG."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib  # noqa: F401  (a dev dependency: a missing one must fail, not skip)
import numpy as np
import pytest
import torch
from conftest import blur, gaussian_kernel, synthetic_sharp
from PIL import Image

from lightning_deblur.commands.fit import main
from lightning_deblur.core.errors import InputError
from lightning_deblur.commands.evaluate_tables import RUN_FIELDS
from lightning_deblur.commands.figures.curves import curves
from lightning_deblur.commands.figures.evaluated import histogram, inputs, seeds
from lightning_deblur.core.fit_experiment import fit_rmse
from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.imagefiles import write_image

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
        image.load()
    assert not list(path.parent.glob(f".{path.stem}.*"))  # no temporary left behind


@pytest.fixture
def runs_csv(tmp_path: Path) -> Path:
    """A runs.csv as ``evaluate`` writes it: 2 methods × 3 inputs × 5 seeds."""
    rng = np.random.default_rng(0)
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_FIELDS)
        writer.writeheader()
        for method, centre in (("original", 2.0), ("improved", 5.0)):
            for name in ("a", "b", "c"):
                for seed in range(5):
                    isnr = centre + rng.normal()
                    writer.writerow({
                        "method": method, "input": name, "seed": seed, "aligned_isnr": isnr,
                        "aligned_psnr": 20 + isnr, "input_aligned_psnr": 20.0, "failed": int(isnr < 1),
                        "error_ratio": "",
                    })  # fmt: skip
    return path


def test_histogram_and_seeds_from_runs_csv(runs_csv, tmp_path, capsys):
    main(["figures", "histogram", "--runs", str(runs_csv), "--output", str(tmp_path / "h.png"),
          "--methods", "original", "improved"])  # fmt: skip
    assert capsys.readouterr().out.strip() == str(tmp_path / "h.png")
    assert_png(tmp_path / "h.png")
    main(["figures", "seeds", "--runs", str(runs_csv), "--input", "b", "--output", str(tmp_path / "s.png")])
    assert_png(tmp_path / "s.png")
    assert_png(seeds(str(runs_csv), "a", str(tmp_path / "s2.png"), metric="aligned_isnr", methods="improved"))
    with pytest.raises(InputError, match="not in"):
        histogram(str(runs_csv), str(tmp_path / "x.png"), methods=["original", "nope"])
    with pytest.raises(InputError, match="no column"):
        histogram(str(runs_csv), str(tmp_path / "x.png"), metric="nope")
    with pytest.raises(InputError, match="input 'zzz'"):
        seeds(str(runs_csv), "zzz", str(tmp_path / "x.png"))
    with pytest.raises(InputError, match="no finite"):
        histogram(str(runs_csv), str(tmp_path / "x.png"), metric="error_ratio")
    assert not (tmp_path / "x.png").exists()


def test_inputs_figure_draws_every_input_of_the_chosen_methods(runs_csv, tmp_path, capsys):
    main(["figures", "inputs", "--runs", str(runs_csv), "--output", str(tmp_path / "i.png"),
          "--methods", "improved", "original"])  # fmt: skip
    assert capsys.readouterr().out.strip() == str(tmp_path / "i.png")
    assert_png(tmp_path / "i.png")
    assert_png(inputs(str(runs_csv), str(tmp_path / "i2.png"), metric="aligned_psnr", methods="original"))
    with pytest.raises(InputError, match="not in"):
        inputs(str(runs_csv), str(tmp_path / "x.png"), methods=["nope"])
    with pytest.raises(InputError, match="no finite"):
        inputs(str(runs_csv), str(tmp_path / "x.png"), metric="error_ratio")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_fit_speed_fits_sharp_and_blurred_and_writes_curves(tmp_path, capsys):
    kernel = gaussian_kernel(7, 2.0)
    support = synthetic_sharp(46, 46)
    write_image(tmp_path / "sharp.png", support[3:-3, 3:-3])
    write_image(tmp_path / "blurred.png", blur(support, kernel))
    output = tmp_path / "fit" / "fit.png"
    main(["figures", "fit_speed", "--sharp", str(tmp_path / "sharp.png"), "--blurred", str(tmp_path / "blurred.png"),
          "--iterations", "20", "--channels", "8", "--skip_channels", "4", "--output", str(output)])  # fmt: skip
    printed = capsys.readouterr().out.split()
    assert printed == [str(output), str(output.with_suffix(".csv"))]
    assert_png(output)
    with output.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == list(range(20))
    for column in ("rmse_sharp", "rmse_blurred"):
        values = np.array([float(r[column]) for r in rows])
        # The fit makes progress: the last RMSE is 0.21-0.43 of the first (seeds 0-4, AVX-512
        # and AVX2 kernels, AMD EPYC).
        assert np.isfinite(values).all() and values[-1] < 0.8 * values[0]
    # One seed, one start: the same fit twice gives the same curve.
    target = torch.from_numpy(support[3:-3, 3:-3]).float()[None, None]
    spec = ImageNetSpec(channels=8, skip_channels=4)
    first = fit_rmse(target, spec, 3, seed=4)
    np.testing.assert_array_equal(first, fit_rmse(target, spec, 3, seed=4))
    assert first[0] == pytest.approx(float(rows[0]["rmse_sharp"]), rel=0.5)  # same scale as the command's
    with pytest.raises(SystemExit):
        main(["figures", "fit_speed", "--sharp", str(tmp_path / "sharp.png"), "--output", str(tmp_path / "y.png")])
    assert "--blurred" in capsys.readouterr().err
    with pytest.raises(InputError, match="levels"):
        fit_rmse(target[..., :20, :20], spec, 2)


def test_fit_speed_from_a_manifest_row(tmp_path):
    from lightning_deblur.core.manifest import ManifestRow, write_manifest

    support = synthetic_sharp(44, 44, seed=3)
    write_image(tmp_path / "s.png", support[2:-2, 2:-2])
    write_image(tmp_path / "b.png", blur(support, gaussian_kernel(5, 1.0)))
    write_manifest(tmp_path / "manifest.csv", [ManifestRow("one", "b.png", (5, 5), "s.png")])
    main(["figures", "fit_speed", "--manifest", str(tmp_path / "manifest.csv"), "--input", "one",
          "--iterations", "3", "--channels", "8", "--skip_channels", "4", "--output", str(tmp_path / "m.png")])  # fmt: skip
    assert_png(tmp_path / "m.png")
    with pytest.raises(SystemExit):
        main(["figures", "fit_speed", "--manifest", str(tmp_path / "manifest.csv"), "--input", "two"])


def test_curves_from_tensorboard_logs(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    for run, gain in (("original/img/seed0", 0.5), ("improved/img/seed0", 1.0)):
        writer = SummaryWriter(str(tmp_path / "logs" / run))
        for step in range(0, 50, 5):
            writer.add_scalar("psnr", 20 + gain * np.log1p(step), step)
        writer.add_scalar("loss", 1.0, 0)
        writer.close()
    main(["figures", "curves", "--logs", str(tmp_path / "logs" / "original" / "img" / "seed0"),
          str(tmp_path / "logs" / "improved"), "--labels", "[original, improved]", "--output", str(tmp_path / "c.png")])  # fmt: skip
    assert capsys.readouterr().out.strip() == str(tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    assert_png(curves(str(tmp_path / "logs"), str(tmp_path / "c2.png")))  # both runs found below one folder
    with pytest.raises(InputError, match="no scalar 'ssim'.*loss, psnr"):
        curves(str(tmp_path / "logs"), str(tmp_path / "x.png"), tag="ssim")
    with pytest.raises(InputError, match="labels"):
        curves(str(tmp_path / "logs"), str(tmp_path / "x.png"), labels=["one"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no TensorBoard event files"):
        curves(str(tmp_path / "empty"), str(tmp_path / "x.png"))
    with pytest.raises(InputError, match="not found"):
        curves(str(tmp_path / "missing"), str(tmp_path / "x.png"))


def test_missing_matplotlib_is_a_one_line_error(runs_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes `import matplotlib.figure` fail
    with pytest.raises(SystemExit) as exit_info:
        main(["figures", "histogram", "--runs", str(runs_csv), "--output", str(tmp_path / "h.png")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: matplotlib is needed for figures: pip install 'lightning-deblur[plots]'"
    )
    assert not (tmp_path / "h.png").exists()


def test_curve_bands_draw_median_and_quartiles_from_the_runs_curves(tmp_path, capsys):
    from lightning_deblur.core.curve_table import write_curve

    for method, offset in (("a", 0.0), ("b", 2.0)):
        for seed in range(3):
            rows = [
                {"step": step, "scale": 0 if step <= 20 else 1, "step_in_scale": step, "aligned_psnr": offset + seed + step / 10}
                for step in range(10, 60, 10)
            ]
            write_curve(tmp_path / method / "img" / f"seed{seed}" / "curve.csv", rows)
    output = tmp_path / "bands.png"
    main(["figures", "curve_bands", "--results", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--output", str(output)])
    assert_png(output)
    assert str(output) in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["figures", "curve_bands", "--results", f"a={tmp_path / 'nothing'}", "--output", str(output)])
    assert exit_info.value.code == 2
    assert "no curve.csv" in capsys.readouterr().err


def _fake_run(folder: Path, pixels: np.ndarray, sharp: Path | None, metrics: dict) -> Path:
    """A run folder as ``fit`` leaves it, with made-up results (no job is run)."""
    import json

    folder.mkdir(parents=True)
    write_image(folder / "input.png", pixels)
    write_image(folder / "deblurred.png", np.clip(pixels * 1.1, 0, 1))
    np.save(folder / "kernel.npy", gaussian_kernel(7, 1.5).astype(np.float32))
    (folder / "config.yaml").write_text(f"data:\n  sharp: {sharp or 'null'}\n  kernel: null\n")
    (folder / "metrics.json").write_text(json.dumps({"status": "done", "image": str(folder / "input.png"), **metrics}))
    return folder


def test_gallery_draws_runs_side_by_side_and_names_a_missing_run(tmp_path, capsys):
    grey = synthetic_sharp(40, 48, seed=1)
    write_image(tmp_path / "sharp.png", grey)
    colour = np.stack([grey, grey[::-1], grey[:, ::-1]], axis=-1)
    np.save(tmp_path / "true.npy", gaussian_kernel(9, 2.0))
    measured = {"psnr": 24.5, "input_psnr": 21.0, "input_aligned_psnr": 22.0, "aligned_isnr": 3.25}
    runs = [
        _fake_run(tmp_path / "grey" / "version_0", grey, tmp_path / "sharp.png", measured),
        _fake_run(tmp_path / "colour" / "version_0", colour, None, {}),  # no sharp reference: no figures
    ]
    output = tmp_path / "pictures" / "gallery.png"
    main(["figures", "gallery", "--runs", *map(str, runs), "--true_kernels", str(tmp_path / "true.npy"), "none",
          "--labels", "grey", "colour", "--output", str(output)])  # fmt: skip
    assert capsys.readouterr().out.strip() == str(output)
    assert_png(output)
    with Image.open(output) as picture:
        assert picture.mode in ("RGB", "RGBA")
        assert picture.size[0] > picture.size[1]  # five panels across, two rows
    missing = tmp_path / "nowhere" / "version_0"
    with pytest.raises(SystemExit) as exit_info:
        main(["figures", "gallery", "--runs", str(runs[0]), str(missing), "--output", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(missing) in error
    assert not (tmp_path / "x.png").exists()
