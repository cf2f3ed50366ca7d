"""Restarts on the no-blur verdict (``--model.restarts``): the plan, the run, the resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from conftest import CONF, KillAt, read_metrics, run_fit
from test_bad_input import run_expecting_error
from test_resume import large_case

from lightning_deblur.job import stages
from lightning_deblur.core.centring import centre_kernel
from lightning_deblur.commands.fit import main
from lightning_deblur.core.imagefiles import read_image
from lightning_deblur.job.deblur_job import DeblurJob
from lightning_deblur.core.planning import JobPlan, Scale, ScalesSpec, plan_scales
from lightning_deblur.core.verdict import Verdict

pytestmark = pytest.mark.usefixtures("one_thread")

PASS_STEPS = 8 + 8 + 20
"""Steps of one pass over tiny_improved.yaml's three scales."""


def test_a_restart_appends_a_pass_of_the_blind_scales_before_the_finishing_stages():
    spec = ScalesSpec(count=3, coarse_iterations=8)
    blind = plan_scales((96, 96), (9, 9), spec, finest_iterations=20, starts=2)
    tile = Scale(
        index=len(blind), image_size=(96, 96), kernel_size=(9, 9), iterations=10, start_step=blind[-1].end_step,
        finishing=True, channels=3,
    )  # fmt: skip
    plan = JobPlan((*blind, tile), blind_scale_count=len(blind), starts=2)
    assert plan.scale_count == 3 and plan.attempt_steps == PASS_STEPS

    once = plan.with_restart()
    twice = once.with_restart()
    assert once.attempts == 2 and twice.attempts == 3
    assert once.blind_scale_count == len(blind) + 3 and twice.scale_count == 3
    added = once.stages[len(blind) : len(blind) + 3]
    assert [s.index for s in added] == [4, 5, 6]
    assert [s.start_step for s in added] == [blind[-1].end_step, blind[-1].end_step + 8, blind[-1].end_step + 16]

    def shape(stage):
        return stage.image_size, stage.kernel_size, stage.iterations

    assert [shape(s) for s in added] == [shape(s) for s in blind[1:]]
    assert all(s.attempt == 1 and s.start is None for s in added)  # one start per restart
    # The finishing tile moves back by the pass.
    assert once.stages[-1].finishing and once.stages[-1].index == 7
    assert once.total_steps == plan.total_steps + PASS_STEPS and twice.total_steps == plan.total_steps + 2 * PASS_STEPS
    assert [once.scale_name(s) for s in once.stages[:-1]] == [
        "scale0_start0", "scale0_start1", "scale1", "scale2", "scale0_restart1", "scale1_restart1", "scale2_restart1",
    ]  # fmt: skip
    assert [once.begins_attempt(s) for s in once.stages] == [False] * 4 + [True, False, False, False]


def judge_as(labels: list[str], calls: list):
    """A stand-in for the verdict: ``labels`` in turn, then ``ok``; each call recorded."""

    def judge(observation, estimate, kernel):
        calls.append(kernel.clone())
        label = labels[len(calls) - 1] if len(calls) <= len(labels) else "ok"
        return Verdict(label, float(kernel.max()), 1.0, 0.0)

    return judge


def case_options(case) -> list[str]:
    return ["--data.image", str(case["image"]), "--data.sharp", str(case["sharp"]), "--data.kernel_size", "5"]


def fit_tiny(tmp_path, case, *extra):
    """Run tiny_improved.yaml on ``case`` with checkpoints every 5 steps; its run folder."""
    options = [*case_options(case), "--checkpoint.every_n_steps", "5", *extra]
    return run_fit(tmp_path, *options, config=CONF / "tiny_improved.yaml")


@pytest.mark.slow
def test_a_no_blur_pass_restarts_until_one_is_ok(blurred_case, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(stages, "judge", judge_as(["no-blur", "no-blur"], calls))
    run = fit_tiny(tmp_path / "restarted", blurred_case, "--model.restarts", "5")
    metrics = read_metrics(run)
    # Two no-blur passes, each restarted; the third was ok and is the result.
    assert [a["verdict"] for a in metrics["attempts"]] == ["no-blur", "no-blur", "ok"]
    assert [a["attempt"] for a in metrics["attempts"]] == [0, 1, 2]
    assert [a["end_step"] for a in metrics["attempts"]] == [PASS_STEPS, 2 * PASS_STEPS, 3 * PASS_STEPS]
    assert metrics["restarts"] == 2 and metrics["iterations"] == 3 * PASS_STEPS
    names = {path.name for path in (run / "scales").glob("*_kernel.npy")}
    assert names == {f"scale{s}{suffix}_kernel.npy" for s in range(3) for suffix in ("", "_restart1", "_restart2")}
    # Each pass began from generators of its own: the coarsest kernels differ.
    coarsest = [np.load(run / "scales" / f"scale0{suffix}_kernel.npy") for suffix in ("", "_restart1", "_restart2")]
    assert not np.array_equal(coarsest[0], coarsest[1]) and not np.array_equal(coarsest[1], coarsest[2])
    # The result is the last pass's finest estimate (centred, as every blind result is).
    final_pass = torch.from_numpy(np.load(run / "scales" / "scale2_restart2_kernel.npy"))
    _, centred, _, _ = centre_kernel(torch.zeros(1, 1, 24, 24, dtype=final_pass.dtype), final_pass)
    np.testing.assert_allclose(np.load(run / "kernel.npy"), centred.numpy(), atol=1e-6)
    rows = [tuple(map(int, line.split(",")[:2])) for line in (run / "curve.csv").read_text().splitlines()[1:]]
    ends = [(step, scale) for step, scale in rows if step != 100]  # step 100: the curve's periodic row
    # A row at every stage's end.
    assert [scale for _, scale in ends] == list(range(9)) and ends[-1][0] == 3 * PASS_STEPS
    assert not (run / "checkpoints").exists()  # a finished job, however long it grew

    # The first pass is exactly what a job without restarts computes.
    plain = fit_tiny(tmp_path / "plain", blurred_case)
    first_pass = np.load(run / "scales" / "scale2_kernel.npy")
    np.testing.assert_array_equal(first_pass, np.load(plain / "scales" / "scale2_kernel.npy"))


class ImageNetAtRestart(Callback):
    """Keeps the image net's weights as the first pass ended them and as the restart's
    coarsest scale began."""

    def __init__(self):
        self.ended = self.began = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        weights = [p.detach().clone() for p in pl_module.image_net.parameters()]
        if trainer.global_step == PASS_STEPS - 1:
            self.ended = weights  # the last step's update is applied before the next batch
        if trainer.global_step == PASS_STEPS + 1:
            self.began = weights


@pytest.mark.slow
def test_a_restart_refits_the_kernel_and_goes_on_with_the_image_net(blurred_case, tmp_path, monkeypatch):
    """What a restart is (docs/METHOD.md): new input noise and the kernel fitted to the
    initial Gaussian again, while G_x is not re-drawn: one step into the restart its
    weights are one Adam step from where the first pass left them, not a fresh draw."""
    monkeypatch.setattr(stages, "judge", judge_as(["no-blur"], []))
    watcher = ImageNetAtRestart()
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), watcher])
    fit_tiny(tmp_path, blurred_case, "--model.restarts", "1")
    moved = max(float((a - b).abs().max()) for a, b in zip(watcher.began, watcher.ended))
    assert 0 < moved < 0.05  # two Adam steps at lr 0.01 move each weight by at most about 0.02


@pytest.mark.slow
def test_restarts_stop_at_the_limit_and_keep_the_last_pass(blurred_case, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(stages, "judge", judge_as(["no-blur"] * 10, calls))
    metrics = read_metrics(fit_tiny(tmp_path, blurred_case, "--model.restarts", "1"))
    assert [a["verdict"] for a in metrics["attempts"]] == ["no-blur", "no-blur"]
    assert metrics["restarts"] == 1 and metrics["iterations"] == 2 * PASS_STEPS


@pytest.mark.slow
def test_an_ok_pass_changes_nothing_but_the_record(blurred_case, tmp_path, monkeypatch):
    """A job with restarts whose pass is judged ok computes exactly what a job without
    restarts does; only metrics.json tells them apart."""
    monkeypatch.setattr(stages, "judge", judge_as([], []))
    with_restarts = fit_tiny(tmp_path / "with", blurred_case, "--model.restarts", "1")
    without = fit_tiny(tmp_path / "without", blurred_case)
    metrics = read_metrics(with_restarts)
    assert [a["verdict"] for a in metrics["attempts"]] == ["ok"] and metrics["restarts"] == 0
    assert "attempts" not in read_metrics(without) and "restarts" not in read_metrics(without)
    assert metrics["iterations"] == read_metrics(without)["iterations"] == PASS_STEPS
    np.testing.assert_array_equal(np.load(with_restarts / "kernel.npy"), np.load(without / "kernel.npy"))
    pixels = [read_image(run / "deblurred.png").pixels for run in (with_restarts, without)]
    np.testing.assert_array_equal(*pixels)


@pytest.mark.slow
@pytest.mark.parametrize("restarted", [0, 1])
def test_a_trainer_used_directly_stops_at_the_end_of_the_plan(blurred_case, monkeypatch, restarted):
    """Without the command line, the job itself limits the Trainer to its plan's steps,
    as planned or grown by a restart, not to the data loader's length (which holds a
    pass more for each restart allowed and not made)."""
    from lightning import Trainer
    from test_multiscale import tiny_improved_job

    from lightning_deblur.job.data import BlurredImage

    monkeypatch.setattr(stages, "judge", judge_as(["no-blur"] * restarted, []))
    job = tiny_improved_job(restarts=2)
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_epochs=1,
    )  # fmt: skip
    trainer.fit(job, datamodule=BlurredImage(str(blurred_case["image"]), 5))
    assert job.plan.attempts == 1 + restarted
    assert trainer.global_step == job.plan.total_steps == (1 + restarted) * job.plan.attempt_steps
    assert job.most_steps == 3 * job.plan.attempt_steps > trainer.global_step  # the loader's length


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [41, 70], ids=["early-in-the-restart", "late-in-the-restart"])
def test_a_job_killed_in_a_restart_resumes_to_the_same_result(blurred_case, tmp_path, monkeypatch, kill_at):
    monkeypatch.setattr(stages, "judge", judge_as(["no-blur"], []))
    whole = fit_tiny(tmp_path / "whole", blurred_case, "--model.restarts", "2")

    monkeypatch.setattr(stages, "judge", judge_as(["no-blur"], []))
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), KillAt(kill_at)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit_tiny(tmp_path / "killed", blurred_case, "--model.restarts", "2")
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    (run,) = list((tmp_path / "killed" / "logs").glob("*/version_*"))
    # The verdict on the first pass was given before the kill; a resumed job does not ask again.
    monkeypatch.setattr(stages, "judge", judge_as([], []))
    # The resumed job, the killed one's command plus --ckpt_path, writes into its run folder.
    main(["fit", "--config", str(CONF / "tiny_improved.yaml"), *case_options(blurred_case), "--model.restarts", "2",
          "--checkpoint.every_n_steps", "5", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])  # fmt: skip
    resumed, uninterrupted = read_metrics(run), read_metrics(whole)
    assert resumed["iterations"] == uninterrupted["iterations"] == 2 * PASS_STEPS
    assert resumed["attempts"] == uninterrupted["attempts"]
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(whole / "kernel.npy"))
    np.testing.assert_array_equal(read_image(run / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model.restarts", "-1"], "model.restarts must be 0 or more"),
        (
            ["--model.restarts", "1", "--model.kernel_mode", "fixed", "--data.kernel", "{kernel}"],
            "--model.restarts 0 with a known kernel",
        ),
    ],
)
def test_bad_restart_settings_are_one_line(capsys, blurred_case, args, words):
    np.save(blurred_case["root"] / "kernel.npy", blurred_case["kernel"])
    args = [arg.format(kernel=blurred_case["root"] / "kernel.npy") for arg in args]
    line = run_expecting_error(capsys, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5", *args)
    assert words in line


@pytest.mark.slow
@pytest.mark.parametrize("colour", [False, True], ids=["grey-crop", "colour-whole"])
def test_a_restart_comes_before_the_finishing_tiles_which_take_its_kernel(tmp_path, monkeypatch, colour):
    """With a kernel crop (grey) or a colour stage, tiled: the finishing tiles follow the
    last pass and deblur with its kernel."""
    image, options = large_case(tmp_path, colour)
    calls: list = []
    monkeypatch.setattr(stages, "judge", judge_as(["no-blur"], calls))
    run = run_fit(
        tmp_path, "--data.image", str(image), "--data.kernel_size", "5", "--model.restarts", "1", *options,
        config=CONF / "tiny_improved.yaml",
    )  # fmt: skip
    metrics = read_metrics(run)
    assert metrics["restarts"] == 1 and len(calls) == 2  # judged at the end of each pass, not after the tiles
    assert metrics["iterations"] == 2 * PASS_STEPS + 6 * 10 and metrics["tiles"] == 6
    last_pass = torch.from_numpy(np.load(run / "scales" / "scale2_restart1_kernel.npy"))
    _, centred, _, _ = centre_kernel(torch.zeros(1, 1, 24, 24, dtype=last_pass.dtype), last_pass)
    np.testing.assert_allclose(np.load(run / "kernel.npy"), centred.numpy(), atol=1e-6)
