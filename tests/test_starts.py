"""Several starts of the coarsest scale (``--model.starts``): the plan, the choice, the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CONF, read_metrics, run_fit
from test_bad_input import run_expecting_error

from lightning_deblur.job.data import Observation
from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec
from lightning_deblur.core.imagefiles import write_image
from lightning_deblur.job.deblur_job import DeblurJob
from lightning_deblur.core.planning import ScalesSpec, plan_scales

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_plan_repeats_the_coarsest_scale_once_per_start():
    spec = ScalesSpec(count=3, coarse_iterations=8)
    once = plan_scales((96, 96), (9, 9), spec, finest_iterations=20)
    thrice = plan_scales((96, 96), (9, 9), spec, finest_iterations=20, starts=3)
    assert [s.start for s in thrice] == [0, 1, 2, None, None]
    assert [s.index for s in thrice] == [0, 1, 2, 3, 4]
    assert [s.start_step for s in thrice] == [0, 8, 16, 24, 32]
    assert {s.image_size for s in thrice[:3]} == {once[0].image_size}
    assert [s.image_size for s in thrice[3:]] == [s.image_size for s in once[1:]]
    assert thrice[-1].end_step == once[-1].end_step + 2 * 8
    # One start: the plan as it always was.
    assert once == plan_scales((96, 96), (9, 9), spec, finest_iterations=20, starts=1)


def tiny_job(starts: int) -> DeblurJob:
    """A built 3-scale job on a 37×31 noise image (kernel 5×5), without a Trainer."""
    job = DeblurJob(
        image_net=ImageNetSpec(channels=8, skip_channels=4, levels=3), kernel_net=KernelNetSpec(hidden=64),
        scales=ScalesSpec(count=3, min_kernel_size=5, coarse_iterations=8), iterations=20, starts=starts,
    )  # fmt: skip
    observation = Observation(y=torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(0)), kernel_size=(5, 5), source=None)
    job.plan = job.plan_for(observation)
    job.build(observation)
    return job


def spread_kernel(border: float) -> torch.Tensor:
    """A 5×5 kernel (sums to 1) whose border-to-peak ratio is ``border``."""
    kernel = torch.full((5, 5), border)
    kernel[1:-1, 1:-1] = 1.0
    return kernel / kernel.sum()


def test_the_job_continues_from_the_best_scoring_start():
    torch.manual_seed(0)
    job = tiny_job(starts=3)
    borders = [0.5, 0.1, 0.9]  # start 1 has the kernel least held at its border: the best
    kept = {}
    for start, border in enumerate(borders):
        job.enter_scale(start)
        with torch.no_grad():
            x, _ = job(perturb=False)
        job.latest_x, job.latest_k = x, spread_kernel(border)
        kept[start] = (x.clone(), job.latest_k.clone(), job.z_k.clone(), {k: v.clone() for k, v in job.image_net.state_dict().items()})
        job.end_start()
    assert [round(r.kernel_border, 6) for r in job.start_records] == borders
    assert job.chosen_start == 1
    x, k, z_k, weights = kept[1]
    torch.testing.assert_close(job.latest_x, x, rtol=0, atol=0)
    torch.testing.assert_close(job.latest_k, k, rtol=0, atol=0)
    torch.testing.assert_close(job.z_k, z_k, rtol=0, atol=0)
    for name, value in job.image_net.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)
    # Each start had generators of its own.
    first_weights = [next(iter(kept[start][3].values())) for start in (0, 1)]
    assert not torch.equal(*first_weights)


@pytest.mark.slow
def test_a_run_with_three_starts_reports_each_and_continues_from_the_best(blurred_case, tmp_path):
    run = run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.sharp", str(blurred_case["sharp"]),
        "--data.kernel_size", "5", "--model.starts", "3", config=CONF / "tiny_improved.yaml",
    )  # fmt: skip
    metrics = read_metrics(run)
    assert metrics["iterations"] == 3 * 8 + 8 + 20
    scores = [start["score"] for start in metrics["starts"]]
    assert len(scores) == 3 and metrics["chosen_start"] == int(np.argmax(scores))
    assert all(start["score"] == -start["kernel_border"] for start in metrics["starts"])
    names = {path.name for path in (run / "scales").glob("*_kernel.npy")}
    assert names == {f"scale0_start{k}_kernel.npy" for k in range(3)} | {"scale1_kernel.npy", "scale2_kernel.npy"}
    curve_scales = [line.split(",")[1] for line in (run / "curve.csv").read_text().splitlines()[1:]]
    assert curve_scales == ["0", "1", "2", "3", "4"]  # one row at every stage's end


@pytest.mark.slow
def test_one_start_leaves_no_trace(blurred_case, tmp_path):
    run = run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5", config=CONF / "tiny_improved.yaml"
    )
    assert "starts" not in read_metrics(run) and "chosen_start" not in read_metrics(run)
    assert not list((run / "scales").glob("*start*"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model.starts", "0"], "model.starts must be at least 1"),
        (["--model.starts", "2"], "--model.scales.count 2 or more"),  # tiny.yaml has one scale
    ],
)
def test_bad_start_counts_are_one_line(capsys, tmp_path, args, words):
    write_image(tmp_path / "img.png", np.random.default_rng(0).random((40, 40)))
    line = run_expecting_error(capsys, "--data.image", str(tmp_path / "img.png"), "--data.kernel_size", "5", *args)
    assert words in line
