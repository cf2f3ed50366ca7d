"""`synth` writes a reproducible dataset whose sharp references match pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blur, gaussian_kernel, synthetic_sharp

from lightning_deblur.commands.fit import main
from lightning_deblur.core.imagefiles import read_image, write_image
from lightning_deblur.core.manifest import read_manifest


@pytest.fixture
def sources(tmp_path):
    images, kernels = tmp_path / "images", tmp_path / "kernels"
    images.mkdir(), kernels.mkdir()
    for seed in range(2):
        write_image(images / f"pic{seed}.png", synthetic_sharp(70, 64, seed=seed))
    np.save(kernels / "gauss.npy", gaussian_kernel(5, 1.0))
    asymmetric = np.zeros((7, 5))
    asymmetric[1, 0], asymmetric[5, 4], asymmetric[3, 2] = 0.5, 0.3, 0.2
    np.save(kernels / "lopsided.npy", asymmetric)
    return images, kernels


def synth(sources, out, *extra):
    images, kernels = sources
    main(["synth", "--images", str(images), "--kernels", str(kernels), "--output_dir", str(out),
          "--size", "40", "--frame", "2", *extra])  # fmt: skip
    return read_manifest(out / "manifest.csv")


def test_same_seed_reproduces_the_dataset_exactly(sources, tmp_path):
    first = synth(sources, tmp_path / "a", "--seed", "7")
    second = synth(sources, tmp_path / "b", "--seed", "7")
    assert len(first) == 4  # 2 images × 2 kernels
    assert [row.name for row in second] == [row.name for row in first]
    assert (tmp_path / "a" / "manifest.csv").read_text() == (tmp_path / "b" / "manifest.csv").read_text()
    for name in ("blurred", "sharp"):
        for row in first:
            relative = f"{name}/{row.name}.png"
            assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    other = synth(sources, tmp_path / "c", "--seed", "8")
    assert (tmp_path / "a" / "blurred" / f"{first[0].name}.png").read_bytes() != (
        tmp_path / "c" / "blurred" / f"{other[0].name}.png"
    ).read_bytes()


def test_sharp_reference_lines_up_with_the_blurred_image(sources, tmp_path):
    rows = synth(sources, tmp_path / "d", "--noise_std", "0", "--pairs", "diagonal")
    for row in rows:
        kernel = np.load(row.kernel)
        kh, kw = kernel.shape
        assert row.kernel_size == (kh, kw)
        sharp, blurred = read_image(row.sharp).pixels, read_image(row.image).pixels
        assert sharp.shape == blurred.shape == (40, 40)
        # The valid blur of the sharp crop is the blurred image's interior.
        interior = blurred[(kh - 1) // 2 : 40 - (kh - 1) // 2, (kw - 1) // 2 : 40 - (kw - 1) // 2]
        np.testing.assert_allclose(blur(sharp, kernel), interior, atol=1.5 / 255)


def test_noise_level_is_the_requested_one(sources, tmp_path):
    clean = synth(sources, tmp_path / "e", "--noise_std", "0")
    noisy = synth(sources, tmp_path / "f", "--noise_std", "0.05")
    difference = read_image(noisy[0].image).pixels - read_image(clean[0].image).pixels
    assert difference.std() == pytest.approx(0.05, rel=0.15)


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--images", str(tmp_path / "nope"), "--kernels", str(tmp_path), "--output_dir", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err
