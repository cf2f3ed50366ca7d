"""``--data.kernel_size auto``: the probe's measure, the plan it replaces, the inputs that
ask for it (fit, manifest, batch), and whole jobs that choose their size and resume."""

from __future__ import annotations

import json
import numpy as np
import pytest
import torch
from conftest import CONF, KillAt, read_metrics, run_fit

from lightning_deblur.commands.batch.cli import bound_automatic_sizes
from lightning_deblur.commands.batch.jobs import BatchJob, fit_arguments
from lightning_deblur.commands.batch.summary import summary_row
from lightning_deblur.commands.fit import main
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import read_image
from lightning_deblur.core.kernel_crop import KernelCropSpec
from lightning_deblur.core.kernel_support import (
    KernelProbeSpec,
    centred_extent,
    default_max_kernel_size,
    size_from_probe,
)
from lightning_deblur.core.manifest import read_manifest, rows_from_folder, write_manifest
from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.planning import ScalesSpec, plan_job
from lightning_deblur.core.resample import odd_size
from lightning_deblur.core.tiles import FinishSpec
from lightning_deblur.job.data import Observation, load_observation
from lightning_deblur.job.deblur_job import DeblurJob


def line_kernel(size: int, length: int, offset: int = 0) -> torch.Tensor:
    """A horizontal line of ``length`` pixels on a ``size`` support, centred ``offset``
    pixels right of the support's centre, over a faint floor of 1e-4 of the peak."""
    k = torch.full((size, size), 1e-4)
    centre = size // 2
    start = centre + offset - length // 2
    k[centre, start : start + length] = 1.0
    return k / k.sum()


def test_the_extent_is_measured_about_the_centre_of_mass_and_ignores_a_faint_floor():
    # 9 px long, 4 px right of centre on a 31-px support: the support's centre would ask for 17.
    height, width = centred_extent(line_kernel(31, 9, offset=4), threshold=0.05)
    assert (height, width) == pytest.approx((1, 9), abs=0.2)  # the floor pulls the centre of mass a little
    # The floor (1e-4 of the peak per pixel, 9 % of the mass here) counts once it passes the threshold.
    assert centred_extent(line_kernel(31, 9), threshold=1e-5) == pytest.approx((31, 31))


def test_the_chosen_size_is_the_longer_extent_at_full_resolution_rounded_up_to_odd_within_its_bounds():
    k = line_kernel(21, 9)
    # Square, from the longer extent: 9 -> 18 -> 19 (the short axis, 1 px, would ask for 3).
    assert size_from_probe(k, (0.5, 0.5), (41, 41), 0.05) == (19, 19)
    assert size_from_probe(k, (0.5, 0.5), (41, 15), 0.05) == (19, 15)  # never above the bound
    assert size_from_probe(k, (128 / 255, 128 / 255), (41, 41), 0.05) == (19, 19)  # 9 / 0.502 = 17.9
    assert size_from_probe(line_kernel(5, 1), (0.5, 0.5), (41, 41), 0.05) == (3, 3)  # at least 3


def test_the_default_bound_is_a_sixth_of_the_short_side_rounded_down_to_odd():
    assert default_max_kernel_size((255, 255)) == 41
    assert default_max_kernel_size((96, 120)) == 15
    assert default_max_kernel_size((512, 700)) == 85
    assert default_max_kernel_size((12, 12)) == 3


def test_probe_settings_outside_their_range_are_refused():
    for bad in ({"scale": 0}, {"scale": 1.5}, {"iterations": 0}, {"threshold": 1.0}):
        with pytest.raises(InputError, match="kernel_probe"):
            KernelProbeSpec(**bad)


def automatic_observation(size=(96, 80), bound=None) -> Observation:
    y = torch.rand(1, 1, *size)
    return Observation(y=y, kernel_size=None, source=None, max_kernel_size=bound)


def plan(observation, count=3, starts=1, iterations=20, crop=KernelCropSpec()):
    return plan_job(
        observation, blind=True, colour="full", image_spec=ImageNetSpec(channels=8, skip_channels=4, levels=3),
        scales=ScalesSpec(count=count, min_kernel_size=5, coarse_iterations=8), iterations=iterations,
        kernel_crop=crop, finish=FinishSpec(), starts=starts, probe=KernelProbeSpec(iterations=6),
    )  # fmt: skip


@pytest.mark.parametrize("count, starts", [(1, 1), (3, 1), (3, 2)])
def test_an_automatic_plan_probes_at_half_size_then_the_probe_chosen_size_replaces_the_bound(count, starts):
    observation = automatic_observation(bound=(21, 17))
    before = plan(observation, count, starts)
    probe = before.stages[0]
    assert probe.probe and probe.image_size == (48, 40) and probe.kernel_size == (11, 9) and probe.iterations == 6
    assert before.kernel_size == (21, 17)  # the bound holds the later stages' place
    assert before.scale_count == count and before.scale_name(probe) == "probe"

    given = Observation(y=observation.y, kernel_size=(9, 13), source=None)
    after = before.after_probe(plan(given, count, starts))
    expected = plan(given, count, starts)
    assert after.stages[0] == probe
    assert [(s.image_size, s.kernel_size, s.iterations, s.start) for s in after.stages[1:]] == [
        (s.image_size, s.kernel_size, s.iterations, s.start) for s in expected.stages
    ]
    assert [s.start_step for s in after.stages[1:]] == [s.start_step + 6 for s in expected.stages]
    assert after.total_steps == expected.total_steps + 6 and after.kernel_size == (9, 13)
    # The method's own stages keep their names and count; the first begins afresh.
    assert after.scale_count == count
    assert [after.scale_name(s) for s in after.stages[1:]] == [expected.scale_name(s) for s in expected.stages]
    assert after.begins_afresh(after.stages[1]) and not any(after.begins_afresh(s) for s in after.stages[starts + 1 :])
    restarted = after.with_restart()  # a restart repeats the method's scales, not the probe
    assert [s.probe for s in restarted.stages].count(True) == 1
    assert restarted.total_steps == after.total_steps + sum(s.iterations for s in expected.stages[starts - 1 :])


def test_the_default_bound_follows_the_kernel_crop_not_the_whole_image():
    observation = automatic_observation(size=(300, 260))
    assert plan(observation).kernel_size == (43, 43)  # 260 / 6
    cropped = plan(observation, crop=KernelCropSpec(size=128))
    assert cropped.stages[0].image_size == (64, 64) and cropped.kernel_size == (21, 21)  # 128 / 6


def test_auto_is_refused_with_a_known_kernel_and_a_bound_without_auto(blurred_case, tmp_path):
    np.save(tmp_path / "k.npy", blurred_case["kernel"])
    with pytest.raises(InputError, match="leave --data.kernel_size out, not auto"):
        load_observation(str(blurred_case["image"]), "auto", kernel=str(tmp_path / "k.npy"))
    with pytest.raises(InputError, match="add --data.kernel_size auto"):
        load_observation(str(blurred_case["image"]), 5, max_kernel_size=9)
    with pytest.raises(InputError, match="max_kernel_size must be odd|is even"):
        load_observation(str(blurred_case["image"]), "auto", max_kernel_size=10)
    with pytest.raises(InputError, match="e.g. 27, 27x31 or auto"):
        load_observation(str(blurred_case["image"]), "automatic")
    observation = load_observation(str(blurred_case["image"]), "AUTO", max_kernel_size="9x7")
    assert observation.kernel_size is None and observation.max_kernel_size == (9, 7)


def test_manifests_and_batch_carry_auto_and_its_bound(blurred_case, tmp_path):
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"name,image,kernel_size,max_kernel_size\na,{blurred_case['image']},auto,9\nb,{blurred_case['image']},5,\n")
    first, second = read_manifest(manifest)
    assert first.kernel_size is None and first.max_kernel_size == (9, 9) and second.kernel_size == (5, 5)
    rewritten = read_manifest(write_manifest(tmp_path / "again.csv", [first, second]))
    assert rewritten == [first, second]

    arguments = fit_arguments(BatchJob(0, first, 0), tmp_path, [])
    assert arguments[arguments.index("--data.kernel_size") + 1] == "auto"
    assert arguments[arguments.index("--data.max_kernel_size") + 1] == "9x9"
    known = fit_arguments(BatchJob(0, first, 0), tmp_path, [], known_kernel=True)
    assert known[known.index("--data.kernel_size") + 1] == "null" and "--data.max_kernel_size" not in known

    (folder_row,) = rows_from_folder(blurred_case["image"], "auto")
    assert folder_row.kernel_size is None
    (bounded,) = bound_automatic_sizes([folder_row], "11")
    assert bounded.max_kernel_size == (11, 11)
    assert bound_automatic_sizes([first], "11") == [first]  # a row's own bound wins
    with pytest.raises(InputError, match="no input has kernel_size auto"):
        bound_automatic_sizes([second], "11")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"image,kernel_size,max_kernel_size\n{blurred_case['image']},5,9\n")
    with pytest.raises(InputError, match="set its kernel_size to auto"):
        read_manifest(bad)


def test_the_batch_summary_gives_the_size_an_automatic_job_chose(blurred_case, tmp_path):
    (case,) = rows_from_folder(blurred_case["image"], "auto")
    job = BatchJob(0, case, 0)
    run_dir = job.run_dir(tmp_path)
    run_dir.mkdir(parents=True)
    choice = {"kernel_size": [19, 17], "probe_extent": [8.6, 4.2]}
    (run_dir / "metrics.json").write_text(json.dumps({"kernel_size": [19, 17], "kernel_size_choice": choice, "psnr": 20.0}))
    row = summary_row(job, tmp_path, "done")
    assert row["kernel_size"] == "auto" and row["chosen_kernel_size"] == "19x17" and row["psnr"] == 20.0
    (run_dir / "metrics.json").write_text(json.dumps({"kernel_size": [5, 5], "psnr": 20.0}))  # a size given
    assert "chosen_kernel_size" not in summary_row(job, tmp_path, "done")


def auto_fit(tmp_path, image, *extra, config="tiny_improved.yaml"):
    # Three levels: a 5-level net needs 33 px, more than the probe's half of 37x31.
    return run_fit(
        tmp_path, "--data.image", str(image), "--data.kernel_size", "auto", "--data.max_kernel_size", "9",
        "--model.kernel_probe.iterations", "6", "--model.image_net.levels", "3", *extra, config=CONF / config,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, starts", [("tiny.yaml", 1), ("tiny_improved.yaml", 1), ("tiny_improved.yaml", 2)],
    ids=["one-scale", "three-scales", "three-scales-two-starts"],
)  # fmt: skip
def test_an_automatic_job_probes_chooses_and_runs_the_method_with_the_size_it_chose(blurred_case, tmp_path, config, starts):
    # With starts, a probe at 3/4 size: the best start's holders must take the coarsest
    # scale's sizes, not the probe's.
    probe_scale = "0.5" if starts == 1 else "0.75"
    run = auto_fit(tmp_path, blurred_case["image"], "--model.starts", str(starts), "--model.kernel_probe.scale", probe_scale, config=config)
    metrics = read_metrics(run)
    choice = metrics["kernel_size_choice"]
    chosen = tuple(choice["kernel_size"])
    probe_size, probe_kernel = ([19, 16], [5, 5]) if starts == 1 else ([28, 23], [7, 7])
    assert choice["max_kernel_size"] == [9, 9] and choice["probe_image_size"] == probe_size
    assert choice["probe_kernel_size"] == probe_kernel and 3 <= min(chosen) and max(chosen) <= 9
    assert tuple(metrics["kernel_size"]) == chosen == np.load(run / "kernel.npy").shape
    assert list(np.load(run / "scales" / "probe_kernel.npy").shape) == probe_kernel
    # The method's own stages ran with the chosen size: the finest scale's kernel has it,
    # and the job took the probe's steps on top of the method's.
    finest = "scale0" if config == "tiny.yaml" else "scale2"
    assert np.load(run / "scales" / f"{finest}_kernel.npy").shape == chosen
    method_steps = 20 if config == "tiny.yaml" else 8 * starts + 8 + 20  # a grey input: no colour stage
    assert metrics["iterations"] == 6 + method_steps
    if starts > 1:  # both starts ran at the coarsest size planned from the chosen one
        coarsest = tuple(min(side, max(5, odd_size(side / 2))) for side in chosen)  # tiny_improved's floor: 5
        for start in (0, 1):
            assert np.load(run / "scales" / f"scale0_start{start}_kernel.npy").shape == coarsest
        assert metrics["chosen_start"] in (0, 1)
    events = b"".join(p.read_bytes() for p in run.glob("events.out.tfevents.*"))
    assert b"kernel_size/height" in events and b"kernel_size/probe_extent_width" in events


@pytest.mark.slow
@pytest.mark.parametrize("config", ["tiny.yaml", "tiny_improved.yaml"], ids=["one-scale", "three-scales"])
def test_after_its_probe_an_automatic_job_is_the_job_given_the_size_it_chose(blurred_case, tmp_path, config):
    """The method after the probe draws its generators from the random stream as the job
    began, so on a CPU it computes bit for bit what the job given that size computes: a
    comparison of sizes is not one of random draws too."""
    auto = auto_fit(tmp_path / "auto", blurred_case["image"], config=config)
    height, width = read_metrics(auto)["kernel_size"]
    given = run_fit(
        tmp_path / "given", "--data.image", str(blurred_case["image"]), "--data.kernel_size", f"[{height}, {width}]",
        "--model.image_net.levels", "3", config=CONF / config,
    )  # fmt: skip
    np.testing.assert_array_equal(np.load(auto / "kernel.npy"), np.load(given / "kernel.npy"))
    np.testing.assert_array_equal(read_image(auto / "deblurred.png").pixels, read_image(given / "deblurred.png").pixels)
    assert read_metrics(auto)["final_loss"] == read_metrics(given)["final_loss"]


@pytest.mark.slow
def test_an_automatic_job_killed_after_its_probe_resumes_with_the_size_it_chose(blurred_case, tmp_path, monkeypatch):
    """The probe's choice lives in the checkpoint: the resumed job rebuilds the chosen plan
    (its kernel net has the chosen size, not the bound) and ends exactly as an
    uninterrupted run."""
    whole = auto_fit(tmp_path / "whole", blurred_case["image"], "--checkpoint.every_n_steps", "5")
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), KillAt(12)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        auto_fit(tmp_path / "killed", blurred_case["image"], "--checkpoint.every_n_steps", "5")
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    (killed,) = list((tmp_path / "killed" / "logs").glob("*/version_*"))
    checkpoint = killed / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 10  # after the probe's 6 steps
    main([
        "fit", "--config", str(killed / "config.yaml"), "--ckpt_path", str(checkpoint),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "killed" / "logs"),
    ])  # fmt: skip
    assert read_metrics(killed)["kernel_size_choice"] == read_metrics(whole)["kernel_size_choice"]
    np.testing.assert_array_equal(np.load(killed / "kernel.npy"), np.load(whole / "kernel.npy"))
    np.testing.assert_array_equal(read_image(killed / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)


@pytest.mark.slow
def test_a_probe_only_run_gives_the_probe_and_its_choice_and_resumes_to_the_whole_job(blurred_case, tmp_path):
    """``--trainer.max_steps`` at the probe's last step (6) stops the job between the probe
    and the method: the results are the probe's, the choice is made and kept, and the
    resumed job begins the method as the uninterrupted one did."""
    whole = auto_fit(tmp_path / "whole", blurred_case["image"])
    probe = auto_fit(tmp_path / "probe", blurred_case["image"], "--trainer.max_steps", "6")
    metrics = read_metrics(probe)
    assert metrics["status"] == "stopped" and metrics["iterations"] == 6
    assert metrics["kernel_size_choice"] == read_metrics(whole)["kernel_size_choice"]
    np.testing.assert_array_equal(np.load(probe / "kernel.npy"), np.load(probe / "scales" / "probe_kernel.npy"))
    main(["fit", *metrics["error"].split("resume with ", 1)[1].split()])
    np.testing.assert_array_equal(np.load(probe / "kernel.npy"), np.load(whole / "kernel.npy"))
    np.testing.assert_array_equal(read_image(probe / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)


def test_a_probe_too_small_for_the_image_net_says_so_and_how_to_fix_it(blurred_case, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_fit(tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "auto")
    assert exit_info.value.code == 2
    assert "kernel-size probe" in capsys.readouterr().err


def test_the_final_line_says_the_size_and_how_it_was_chosen(tmp_path):
    from lightning_deblur.job.outputs import summary_line

    metrics = {
        "iterations": 36, "wall_time_s": 1.0, "status": "done",
        "kernel_size_choice": {"kernel_size": [19, 17], "max_kernel_size": [41, 41], "probe_image_size": [128, 128]},
    }  # fmt: skip
    assert "kernel size 19x17, chosen by a probe at 128 px (at most 41x41)" in summary_line(tmp_path, metrics)


def test_the_probe_runs_500_steps_unless_told_otherwise():
    observation = automatic_observation()
    settings = dict(
        blind=True, colour="full", image_spec=ImageNetSpec(channels=8, skip_channels=4, levels=3), iterations=20,
        kernel_crop=KernelCropSpec(), finish=FinishSpec(), scales=ScalesSpec(count=1, coarse_iterations=37),
    )  # fmt: skip
    default = plan_job(observation, **settings)
    assert default.stages[0].iterations == 500 and default.stages[1].start_step == 500
    assert plan_job(observation, probe=KernelProbeSpec(iterations=5), **settings).stages[0].iterations == 5


@pytest.mark.slow
def test_the_python_api_takes_auto(blurred_case, tmp_path):
    from lightning_deblur import deblur

    options = {"data.max_kernel_size": 9, "model.kernel_probe.iterations": 6, "model.image_net.levels": 3,
               "trainer.logger.init_args.save_dir": str(tmp_path)}  # fmt: skip
    result = deblur(blurred_case["image"], "auto", config=CONF / "tiny_improved.yaml", options=options)
    assert result.kernel.shape == tuple(result.metrics["kernel_size"]) == tuple(result.metrics["kernel_size_choice"]["kernel_size"])


def test_the_progress_line_names_the_probe_and_counts_the_methods_scales_without_it():
    from types import SimpleNamespace

    from lightning_deblur.job.progress import JobProgressBar

    before = plan(automatic_observation(bound=(21, 17)))
    after = before.after_probe(plan(Observation(y=torch.rand(1, 1, 96, 80), kernel_size=(9, 9), source=None)))
    words = [JobProgressBar.description(SimpleNamespace(plan=after, current_scale=stage)) for stage in after.stages]
    assert words == ["probing the kernel size"] + [f"deblurring, scale {s}/3" for s in (1, 2, 3)]
