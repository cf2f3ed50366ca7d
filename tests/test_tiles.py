"""Large images: the kernel crop, the tile layout and blend, and tiled non-blind jobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CONF, blur, gaussian_kernel, read_metrics, run_fit, synthetic_sharp

from lightning_deblur.core import tiles
from lightning_deblur.core.errors import InputError
from lightning_deblur.job.image_logging import preview
from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.imagefiles import read_image, write_image
from lightning_deblur.core.kernel_crop import KernelCropSpec, choose_crop, most_textured_box
from lightning_deblur.core.memory import step_bytes
from lightning_deblur.core.metrics import psnr_per_image
from lightning_deblur.core.physics import support_size
from lightning_deblur.core.tiles import Box, add_tile, blend_weights, blended, tile_boxes


@pytest.mark.parametrize("size, tile, overlap", [((37, 31), 16, 5), ((40, 40), 20, 10), ((9, 50), 64, 8), ((33, 17), 12, 0)])
def test_tiles_cover_the_image_with_at_least_the_overlap(size, tile, overlap):
    boxes = tile_boxes(size, tile, overlap)
    covered = np.zeros(size, dtype=int)
    for box in boxes:
        assert 0 <= box.top and box.top + box.height <= size[0] and 0 <= box.left and box.left + box.width <= size[1]
        assert box.size == (min(tile, size[0]), min(tile, size[1]))
        covered[box.rows(), box.columns()] += 1
    assert covered.min() >= 1
    for axis, length in enumerate(size):
        starts = sorted({(box.top, box.left)[axis] for box in boxes})
        ends = [start + min(tile, length) for start in starts]
        assert starts[0] == 0 and ends[-1] == length
        assert all(end - nxt >= overlap for end, nxt in zip(ends, starts[1:]))


def test_an_overlap_as_large_as_the_tile_is_refused():
    with pytest.raises(InputError, match="overlap"):
        tile_boxes((64, 64), 16, 16)


def test_blending_identical_tiles_gives_the_image_back_exactly():
    image = torch.rand(1, 3, 45, 38, dtype=torch.float64)
    weighted, weights = torch.zeros_like(image), torch.zeros(1, 1, 45, 38, dtype=torch.float64)
    for box in tile_boxes((45, 38), 20, 7):
        add_tile(weighted, weights, image[..., box.rows(), box.columns()], box, 7)
    torch.testing.assert_close(blended(weighted, weights, torch.zeros_like(image)), image)


def test_the_blend_has_no_seam_where_tiles_disagree():
    """Two tiles that disagree by a constant meet in a ramp over the overlap, never a step."""
    size, overlap = (8, 40), 10
    boxes = tile_boxes(size, 25, overlap)
    assert len(boxes) == 2
    weighted, weights = torch.zeros(1, 1, *size), torch.zeros(1, 1, *size)
    for value, box in zip((0.0, 1.0), boxes):
        add_tile(weighted, weights, torch.full((1, 1, *box.size), value), box, overlap)
    row = blended(weighted, weights, torch.zeros(1, 1, *size))[0, 0, 0]
    steps = row.diff()
    assert row[0] == 0 and row[-1] == 1
    assert (steps >= 0).all() and steps.max() <= 1.5 / (overlap + 1)


def test_blend_weights_are_one_inside_and_at_image_edges():
    weights = blend_weights(Box(0, 10, 20, 20), (30, 50), 4)
    assert weights[:16, 4:16].eq(1).all()  # inside, and along the image's top edge: no ramp
    assert weights[-1, 4:16].lt(1).all()  # a neighbour below: ramped
    assert weights[0, 0] < weights[0, 1] < weights[0, 4] and weights[-1, -1] < weights[-5, -5]


def test_the_most_textured_window_is_chosen():
    rng = np.random.default_rng(0)
    image = torch.full((1, 1, 120, 150), 0.5, dtype=torch.float64)
    image[..., :, 10:30] += 0.4 * torch.from_numpy(np.tile([0.0, 1.0], 10)).view(1, 1, 1, 20)  # strong vertical stripes
    image[..., 70:102, 100:132] += torch.from_numpy(rng.uniform(-0.2, 0.2, (32, 32)))  # edges in every direction
    box = most_textured_box(image.clamp(0, 1), (40, 40))
    assert box.top <= 70 and box.top + 40 >= 102 and box.left <= 100 and box.left + 40 >= 132


def test_clipped_texture_loses_to_unclipped_texture():
    rng = np.random.default_rng(1)
    image = torch.full((1, 1, 64, 160), 0.5, dtype=torch.float64)
    image[..., 10:42, 10:42] = torch.from_numpy(rng.uniform(0, 1, (32, 32))).round()  # saturated black/white
    image[..., 10:42, 110:142] = 0.5 + torch.from_numpy(rng.uniform(-0.3, 0.3, (32, 32)))
    box = most_textured_box(image, (40, 40))
    assert box.left >= 102


def test_crop_only_when_the_image_is_larger_than_the_crop_size():
    small, large = torch.rand(1, 1, 60, 50), torch.rand(1, 1, 60, 90)
    assert choose_crop(small, KernelCropSpec(size=64)) is None
    assert choose_crop(large, KernelCropSpec(size=None)) is None
    assert choose_crop(large, KernelCropSpec(size=64)).size == (60, 64)
    assert choose_crop(large, KernelCropSpec(box=[5, 6, 30, 40])) == Box(5, 6, 30, 40)
    with pytest.raises(InputError, match="inside"):
        choose_crop(large, KernelCropSpec(box=[40, 0, 30, 40]))


def nonblind_case(root, height=48, width=44):
    kernel = gaussian_kernel(7, 2.0)
    support = synthetic_sharp(height + 6, width + 6, seed=0)
    write_image(root / "blurred.png", blur(support, kernel), 16)
    write_image(root / "sharp.png", support[3:-3, 3:-3], 16)
    np.save(root / "kernel.npy", kernel.astype(np.float32))
    return ["--data.image", str(root / "blurred.png"), "--data.kernel", str(root / "kernel.npy"),
            "--data.sharp", str(root / "sharp.png"), "--model.kernel_mode", "fixed"]  # fmt: skip


NONBLIND_SHORT = ["--model.iterations", "120", "--model.image_net.levels", "3", "--model.image_net.channels", "16",
                  "--schedule.weights", '{"mse": {"0": 1.0}}', "--lr_schedule.milestones", "[100]"]  # fmt: skip


def pixels(run):
    return torch.from_numpy(read_image(run / "deblurred.png").pixels)[None, None]


def psnr(a, b):
    return float(psnr_per_image(a, b)[0])


def tiled_and_untiled(root, seed: int = 0, extra=()) -> dict:
    """Runs the non-blind case untiled with seeds ``seed`` and ``seed + 1`` and tiled (6
    tiles) with ``seed``. Returns the tile counts, each run's PSNR gain over the blurred
    input (dB), the PSNR of the tiled result against the untiled one and that of the two
    untiled seeds against each other (the seed spread, dB)."""
    case = nonblind_case(root)
    runs = {}
    for name, options in {
        "untiled0": ["--seed_everything", str(seed)],
        "untiled1": ["--seed_everything", str(seed + 1)],
        "tiled0": ["--seed_everything", str(seed), "--model.finish.tile_size", "28", "--model.finish.overlap", "12"],
    }.items():
        (root / name).mkdir()
        runs[name] = run_fit(root / name, *case, *NONBLIND_SHORT, *options, *extra)
    images = {name: pixels(run) for name, run in runs.items()}
    sharp = torch.from_numpy(read_image(root / "sharp.png").pixels)[None, None]
    blurred = torch.from_numpy(read_image(root / "blurred.png").pixels)[None, None]
    return {
        "tiles": {name: read_metrics(run)["tiles"] for name, run in runs.items()},
        "gains": {name: psnr(image, sharp) - psnr(blurred, sharp) for name, image in images.items()},
        "tiled_vs_untiled": psnr(images["tiled0"], images["untiled0"]),
        "seed_spread": psnr(images["untiled0"], images["untiled1"]),
    }


@pytest.mark.slow
def test_a_tiled_run_equals_the_untiled_one_within_the_seed_spread(tmp_path):
    """The tiled result differs from the untiled one no more than two untiled seeds
    differ from each other, and both deblur."""
    figures = tiled_and_untiled(tmp_path)
    assert figures["tiles"] == {"untiled0": 1, "untiled1": 1, "tiled0": 6}
    # Measured on an AMD EPYC (docs/RESULTS.md "Test margins"), seeds 0-4 (and 1-5) with
    # float32 AVX-512 and AVX2 kernels and bf16-mixed: the smallest gain of the three runs
    # is +0.72 to +1.45 dB (a run that does not deblur gains 0), and tiled-against-untiled
    # minus the seed spread is −0.36 to +1.62 dB.
    for name, gain in figures["gains"].items():
        assert gain > 0.3, name
    assert figures["tiled_vs_untiled"] >= figures["seed_spread"] - 1.0


@pytest.mark.slow
def test_a_large_blind_job_estimates_on_a_crop_and_deblurs_the_whole_image(tmp_path):
    kernel = gaussian_kernel(5, 1.2)
    support = synthetic_sharp(50 + 4, 72 + 4, seed=4)
    write_image(tmp_path / "blurred.png", blur(support, kernel))
    run = run_fit(
        tmp_path, "--data.image", str(tmp_path / "blurred.png"), "--data.kernel_size", "5",
        "--model.kernel_crop.size", "40", "--model.finish.tile_size", "40", "--model.finish.overlap", "12",
        config=CONF / "tiny_improved.yaml",
    )  # fmt: skip
    metrics = read_metrics(run)
    crop = Box(*metrics["kernel_crop"])
    assert crop.size == (40, 40) and crop.top + 40 <= 50 and crop.left + 40 <= 72
    assert metrics["tiles"] == 6  # rows 0 and 10, columns 0, 28 and 32
    assert metrics["iterations"] == 8 + 8 + 20 + 6 * 10
    assert read_image(run / "deblurred.png").size == (50, 72)
    assert read_image(run / "scales" / "scale2_image.png").size == (40, 40)  # the blind estimate of the crop
    kernel_estimate = np.load(run / "kernel.npy")
    assert kernel_estimate.shape == (5, 5) and abs(kernel_estimate.sum() - 1) < 1e-5


def test_finishing_is_required_after_a_crop(tmp_path):
    support = synthetic_sharp(50 + 4, 72 + 4, seed=4)
    write_image(tmp_path / "blurred.png", blur(support, gaussian_kernel(5, 1.2)))
    with pytest.raises(SystemExit) as exit_info:
        run_fit(tmp_path, "--data.image", str(tmp_path / "blurred.png"), "--data.kernel_size", "5",
                "--model.kernel_crop.size", "40", "--model.finish.iterations", "0")  # fmt: skip
    assert exit_info.value.code == 2


def test_tensorboard_previews_of_large_estimates_are_shrunk():
    large = torch.rand(1, 3, 3000, 2000)
    assert preview(large).shape == (3, 1024, 683)
    small = torch.rand(1, 1, 40, 30)
    torch.testing.assert_close(preview(small), small[0])


@pytest.mark.slow
def test_automatic_tiles_are_the_largest_that_fit_the_free_memory(monkeypatch):
    spec, image, kernel = ImageNetSpec(channels=16, levels=3), (300, 200), (9, 9)
    free = 3 * step_bytes(spec, support_size((60, 60), kernel), 3)
    monkeypatch.setattr(tiles, "available_bytes", lambda device: free)
    side = tiles.largest_fitting_tile(spec, image, kernel, torch.device("cpu"), 3, 4, smallest=8)

    def fits(tile):
        return step_bytes(spec, support_size((min(tile, 300), min(tile, 200)), kernel), 3) <= free * tiles.MEMORY_HEADROOM

    assert 60 < side < 200 and fits(side) and not fits(side + 1)
    monkeypatch.setattr(tiles, "available_bytes", lambda device: 10**15)
    assert tiles.largest_fitting_tile(spec, image, kernel, torch.device("cpu"), 3, 4, smallest=8) == 300
