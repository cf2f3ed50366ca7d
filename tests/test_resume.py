"""A job killed mid-run resumes from its checkpoint and ends exactly as an uninterrupted run."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF, KillAt, StopAt, blur, gaussian_kernel, read_metrics, synthetic_sharp
from lightning.pytorch import Callback

from lightning_deblur.commands.batch.summary import read_finished
from lightning_deblur.commands.fit import JOB_STOPPED, main
from lightning_deblur.core.imagefiles import read_image, write_image
from lightning_deblur.job.deblur_job import DeblurJob


def fit(logs, image, *extra):
    main([
        "fit", "--config", str(CONF / "tiny_improved.yaml"), "--trainer.logger.init_args.save_dir", str(logs),
        "--data.image", str(image), "--data.kernel_size", "5", "--checkpoint.every_n_steps", "5", *extra,
    ])  # fmt: skip


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(blurred_case, tmp_path, monkeypatch):
    fit(tmp_path / "whole", blurred_case["image"])
    (whole,) = [p.parent for p in (tmp_path / "whole").glob("*/version_*/metrics.json")]
    assert not (whole / "checkpoints").exists()  # a finished job drops its checkpoint

    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), KillAt(22)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "killed", blurred_case["image"])
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    (run,) = list((tmp_path / "killed").glob("*/version_*"))
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file() and not (run / "metrics.json").exists()

    # Step 22 lies in the finest scale (scales of 8, 8, 20 steps); the checkpoint is step 20.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path / "ignored", blurred_case["image"], "--ckpt_path", str(checkpoint))
    # Lightning's warnings of a mid-epoch checkpoint and of a non-empty checkpoint folder
    # do not apply to a job resumed in its own run folder, and are not shown.
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "dataloader is not resumable" in m or "exists and is not empty" in m], said
    assert read_metrics(run)["iterations"] == read_metrics(whole)["iterations"] == 36
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(whole / "kernel.npy"))
    np.testing.assert_array_equal(read_image(run / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)
    assert read_metrics(run)["final_loss"] == read_metrics(whole)["final_loss"]
    # Rows taken before the kill (scale ends at 8 and 16) come back from the checkpoint.
    assert (run / "curve.csv").read_text() == (whole / "curve.csv").read_text()
    assert len((run / "curve.csv").read_text().splitlines()) == 1 + 3
    assert not (tmp_path / "ignored").exists()  # the resumed job wrote into its own run folder


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [22, 31], ids=["in-the-last-start", "after-the-starts"])
def test_a_job_with_several_starts_resumes_to_the_same_result(blurred_case, tmp_path, monkeypatch, kill_at):
    """Three starts of 8 steps, then scales of 8 and 20. Killed at 22, the checkpoint (step
    20) lies in the last start with the best start so far (start 1, not the last) kept
    aside, to be taken back after the resume; killed at 31 (step 30), past the choice."""
    starts = ["--model.starts", "3"]
    fit(tmp_path / "whole", blurred_case["image"], *starts)
    (whole,) = [p.parent for p in (tmp_path / "whole").glob("*/version_*/metrics.json")]

    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), KillAt(kill_at)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "killed", blurred_case["image"], *starts)
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    (run,) = list((tmp_path / "killed").glob("*/version_*"))
    fit(tmp_path / "ignored", blurred_case["image"], *starts, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))
    resumed, uninterrupted = read_metrics(run), read_metrics(whole)
    assert resumed["iterations"] == uninterrupted["iterations"] == 3 * 8 + 8 + 20
    assert resumed["starts"] == uninterrupted["starts"]
    assert resumed["chosen_start"] == uninterrupted["chosen_start"] == 1
    assert resumed["final_loss"] == uninterrupted["final_loss"]
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(whole / "kernel.npy"))
    np.testing.assert_array_equal(read_image(run / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)


def test_a_missing_checkpoint_is_a_clear_error(blurred_case, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path, blurred_case["image"], "--ckpt_path", str(tmp_path / "nope.ckpt"))
    assert exit_info.value.code == 2
    assert "checkpoint" in capsys.readouterr().err


def large_case(root, colour: bool):
    """A 50×72 blurred picture (colour or grey) and the options that tile its finishing stage."""
    kernel = gaussian_kernel(5, 1.2)
    planes = [blur(synthetic_sharp(54, 76, seed=seed), kernel) for seed in ((4, 5, 6) if colour else (4,))]
    write_image(root / "large.png", np.stack(planes, axis=-1) if colour else planes[0])
    # Colour: no crop (the tiles start from the full-size blind estimate); grey: a crop.
    crop = ["--model.kernel_crop.size", "null"] if colour else ["--model.kernel_crop.size", "40"]
    return root / "large.png", [*crop, "--model.finish.tile_size", "40", "--model.finish.overlap", "12"]


@pytest.mark.slow
@pytest.mark.parametrize("colour", [False, True], ids=["grey-crop", "colour-whole"])
def test_a_job_killed_in_a_finishing_tile_resumes_to_the_same_result(tmp_path, monkeypatch, colour):
    image, options = large_case(tmp_path, colour)
    fit(tmp_path / "whole", image, *options)
    (whole,) = [p.parent for p in (tmp_path / "whole").glob("*/version_*/metrics.json")]

    original = DeblurJob.configure_callbacks
    # Blind scales end at step 36; tiles of 10 steps follow: step 53 is inside the third tile.
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), KillAt(53)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "killed", image, *options)
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    (run,) = list((tmp_path / "killed").glob("*/version_*"))
    fit(tmp_path / "ignored", image, *options, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))
    assert read_metrics(run)["iterations"] == read_metrics(whole)["iterations"] == 36 + 6 * 10
    np.testing.assert_array_equal(read_image(run / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(whole / "kernel.npy"))
    # Centring happened before the kill, at the end of the blind scales: still reported.
    centring = ("kernel_centroid_offset", "kernel_shift", "verdict")
    assert [read_metrics(run)[key] for key in centring] == [read_metrics(whole)[key] for key in centring]


@pytest.mark.slow
def test_a_run_folders_config_repeats_the_run(blurred_case, tmp_path):
    """README: `fit --config <run>/config.yaml` repeats a run (same machine and seed)."""
    fit(tmp_path / "first", blurred_case["image"])
    (first,) = [p.parent for p in (tmp_path / "first").glob("*/version_*/metrics.json")]
    main(["fit", "--config", str(first / "config.yaml"), "--trainer.logger.init_args.save_dir", str(tmp_path / "again")])
    (again,) = [p.parent for p in (tmp_path / "again").glob("*/version_*/metrics.json")]
    np.testing.assert_array_equal(np.load(again / "kernel.npy"), np.load(first / "kernel.npy"))
    np.testing.assert_array_equal(read_image(again / "deblurred.png").pixels, read_image(first / "deblurred.png").pixels)
    assert read_metrics(again)["final_loss"] == read_metrics(first)["final_loss"]


def test_a_checkpoint_reloads_as_a_job_with_its_settings_and_estimates(blurred_case, tmp_path, monkeypatch):
    original = DeblurJob.configure_callbacks
    # Killed at step 12 (the second of three scales): the checkpoint of step 10 stays.
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), KillAt(12)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "killed", blurred_case["image"], "--model.iterations", "24")
    (run,) = list((tmp_path / "killed").glob("*/version_*"))
    job = DeblurJob.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert job.iterations == 24 and job.image_spec.channels == 8 and job.lr_schedule.milestones == [15]
    assert job.plan.total_steps == 8 + 8 + 24 and job.scale_index == 1
    with torch.no_grad():
        x, k = job(perturb=False)
    scale = job.current_scale
    assert tuple(x.shape[-2:]) == scale.support and tuple(k.shape) == scale.kernel_size
    assert float(k.sum()) == pytest.approx(1, abs=1e-5)
    # A fresh interpreter reads it with the checkpoint reader alone (the job's module not imported first).
    read = "import sys; from lightning_deblur.job.checkpointing import load_checkpoint_file as load; print(load(sys.argv[1])['global_step'])"
    done = subprocess.run([sys.executable, "-c", read, str(run / "checkpoints" / "last.ckpt")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "10", done.stderr[-500:]


@pytest.mark.slow
def test_a_job_told_to_stop_early_says_so_and_resumes_to_the_uninterrupted_result(blurred_case, tmp_path, monkeypatch):
    fit(tmp_path / "whole", blurred_case["image"])
    (whole,) = [p.parent for p in (tmp_path / "whole").glob("*/version_*/metrics.json")]

    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), StopAt(22)])
    with pytest.raises(SystemExit) as stopped:
        fit(tmp_path / "stopped", blurred_case["image"])
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    assert stopped.value.code == JOB_STOPPED
    (run,) = list((tmp_path / "stopped").glob("*/version_*"))
    metrics = read_metrics(run)
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert metrics["status"] == "stopped" and metrics["iterations"] == 22 and str(checkpoint) in metrics["error"]
    # Not complete for batch (it resumes such runs), and the checkpoint is where it stopped.
    assert read_finished(run) is None
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 22

    fit(tmp_path / "ignored", blurred_case["image"], "--ckpt_path", str(checkpoint))
    assert read_metrics(run)["status"] == "done" and read_metrics(run)["iterations"] == 36
    # With checkpoints off, the record does not promise a resume.
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), StopAt(22)])
    with pytest.raises(SystemExit):
        fit(tmp_path / "unsaved", blurred_case["image"], "--checkpoint.every_n_steps", "0")
    (unsaved,) = list((tmp_path / "unsaved").glob("*/version_*"))
    assert "no checkpoint to resume from" in read_metrics(unsaved)["error"]
    assert not (unsaved / "checkpoints").exists()
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(whole / "kernel.npy"))
    np.testing.assert_array_equal(read_image(run / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)


def test_a_spent_time_limit_stops_the_job_with_its_own_exit_code(blurred_case, tmp_path, capsys):
    # Lightning's Timer with a zero duration stops the fit before its first step.
    with pytest.raises(SystemExit) as stopped:
        fit(tmp_path, blurred_case["image"], "--timer.duration", "00:00:00:00")
    assert stopped.value.code == JOB_STOPPED
    assert "told to stop after 0 of 36 steps" in capsys.readouterr().err
    assert not list(tmp_path.glob("*/version_*/metrics.json"))  # no step ran: nothing to report as done


def checkpoint_of(folder):
    (run,) = list(folder.glob("*/version_*"))
    return run, run / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_trainer_max_steps_limits_the_job_and_the_advised_command_finishes_it(blurred_case, tmp_path):
    fit(tmp_path / "limited", blurred_case["image"], "--trainer.max_steps", "12")  # exits normally, as Lightning does
    run, checkpoint = checkpoint_of(tmp_path / "limited")
    metrics = read_metrics(run)
    assert metrics["iterations"] == 12 and metrics["status"] == "stopped"
    assert "--trainer.max_steps 12" in metrics["error"] and torch.load(checkpoint, weights_only=True)["global_step"] == 12
    advice = metrics["error"].split("resume with ", 1)[1].split()
    main(["fit", *advice])
    assert read_metrics(run)["status"] == "done" and read_metrics(run)["iterations"] == 36


def test_trainer_max_time_is_the_jobs_time_budget(blurred_case, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        fit(tmp_path, blurred_case["image"], "--trainer.max_time", "00:00:00:00")
    assert stopped.value.code == JOB_STOPPED
    assert "told to stop after 0 of 36 steps" in capsys.readouterr().err


@pytest.mark.slow
def test_a_job_the_timer_stopped_resumes_to_its_end_with_the_advised_command(blurred_case, tmp_path, monkeypatch):
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), StopAt(22)])
    with pytest.raises(SystemExit):
        fit(tmp_path / "stopped", blurred_case["image"], "--timer.duration", "00:01:00:00")
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    run, checkpoint = checkpoint_of(tmp_path / "stopped")
    # As if the job had spent ten hours before its checkpoint: more than its one-hour budget.
    state = torch.load(checkpoint, weights_only=True)
    (timer,) = [key for key in state["callbacks"] if "Timer" in key]
    state["callbacks"][timer]["time_elapsed"]["train"] = 36000.0
    torch.save(state, checkpoint)
    advice = read_metrics(run)["error"].split("resume with ", 1)[1].split()
    main(["fit", *advice])  # the run's config.yaml holds the one-hour budget: this process gets it whole
    metrics = read_metrics(run)
    assert metrics["status"] == "done" and metrics["iterations"] == 36
    assert metrics["wall_time_s"] >= 36000  # the job's time counts every process


class SignalAt(Callback):
    """Sends this process ``signum`` after step ``step``, as a scheduler or Ctrl-C would."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_job_at_a_step_with_its_checkpoint_and_a_non_zero_exit(
    blurred_case, tmp_path, monkeypatch, capsys, signum, code
):
    fit(tmp_path / "whole", blurred_case["image"])
    (whole,) = [p.parent for p in (tmp_path / "whole").glob("*/version_*/metrics.json")]
    # Python's default, or SIG_IGN where the suite runs in a background job of a shell.
    handlers_before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), SignalAt(22, signum)])
    with pytest.raises(SystemExit) as stopped:
        fit(tmp_path / "signalled", blurred_case["image"])
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    assert stopped.value.code == code
    assert {signum: signal.getsignal(signum) for signum in handlers_before} == handlers_before  # given back
    run, checkpoint = checkpoint_of(tmp_path / "signalled")
    metrics = read_metrics(run)
    step = metrics["iterations"]
    assert metrics["status"] == "stopped" and 22 <= step <= 23 and signal.Signals(signum).name in metrics["error"]
    assert torch.load(checkpoint, weights_only=True)["global_step"] == step and read_finished(run) is None
    main(["fit", *metrics["error"].split("resume with ", 1)[1].split()])
    assert read_metrics(run)["status"] == "done"
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(whole / "kernel.npy"))


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["max_steps", "SIGTERM"])
def test_a_job_stopped_at_a_scales_end_gives_that_scale_and_resumes_to_the_same_result(
    blurred_case, tmp_path, monkeypatch, stop
):
    """Scales of 8, 8 and 20 steps, stopped right after step 8: the first scale's last."""
    fit(tmp_path / "whole", blurred_case["image"])
    (whole,) = [p.parent for p in (tmp_path / "whole").glob("*/version_*/metrics.json")]
    if stop == "max_steps":
        fit(tmp_path / "stopped", blurred_case["image"], "--trainer.max_steps", "8")
    else:  # sent after step 7, noted at step 8's end, before the scale transition looks
        original = DeblurJob.configure_callbacks
        monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), SignalAt(7, signal.SIGTERM)])
        with pytest.raises(SystemExit):
            fit(tmp_path / "stopped", blurred_case["image"])
        monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    run, checkpoint = checkpoint_of(tmp_path / "stopped")
    metrics = read_metrics(run)
    assert metrics["status"] == "stopped" and metrics["iterations"] == 8
    # The results are the ended scale's estimate, not the next scale's freshly fitted nets.
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(run / "scales" / "scale0_kernel.npy"))
    scale0 = read_image(run / "scales" / "scale0_image.png").pixels
    np.testing.assert_array_equal(read_image(run / "deblurred.png").pixels, scale0)
    assert not (run / "scales" / "scale1_kernel.npy").exists()
    main(["fit", *metrics["error"].split("resume with ", 1)[1].split()])  # enters scale 1 first
    assert read_metrics(run)["status"] == "done" and read_metrics(run)["iterations"] == 36
    np.testing.assert_array_equal(np.load(run / "kernel.npy"), np.load(whole / "kernel.npy"))
    np.testing.assert_array_equal(read_image(run / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)
    assert (run / "curve.csv").read_text() == (whole / "curve.csv").read_text()


def test_a_corrupt_checkpoint_is_one_line_naming_it(blurred_case, tmp_path, capsys):
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path / "logs", blurred_case["image"], "--ckpt_path", str(checkpoint))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert str(checkpoint) in line and "cannot be read" in line


@pytest.mark.slow
def test_every_checkpoint_read_is_weights_only(blurred_case, tmp_path, monkeypatch):
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), KillAt(12)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "killed", blurred_case["image"])
    monkeypatch.setattr(DeblurJob, "configure_callbacks", original)
    run, checkpoint = checkpoint_of(tmp_path / "killed")
    asked = []
    load = torch.load

    def recording_load(*args, **kwargs):
        asked.append(kwargs.get("weights_only"))  # torch 2.3-2.5 take None as False: code may run
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    DeblurJob.load_from_checkpoint(checkpoint)
    fit(tmp_path / "ignored", blurred_case["image"], "--ckpt_path", str(checkpoint))
    assert asked and all(value is True for value in asked)


def test_a_checkpoint_write_that_fails_leaves_the_last_one_whole(blurred_case, tmp_path, monkeypatch, capsys):
    saved = []
    save = torch.save

    def full_disk_on_the_second(payload, target, *args, **kwargs):
        saved.append(target)
        if len(saved) == 2:
            if isinstance(target, (str, os.PathLike)):
                Path(target).write_bytes(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(payload, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_on_the_second)
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path, blurred_case["image"])
    assert exit_info.value.code == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "No space left" in line and "resume" in line
    run, checkpoint = checkpoint_of(tmp_path)
    # Written beside its final name (a rename, never a copy across filesystems), and the
    # failed write left neither a partial file nor a broken last.ckpt.
    assert all(isinstance(path, (str, os.PathLike)) and Path(path).parent == checkpoint.parent for path in saved)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.ckpt"]
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 5
