"""Several seeds as one batched job (``fit --seeds``): what each seed computes, its files,
its resume, and the batched call of the image nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CONF, KillAt, blur, gaussian_kernel, read_metrics, synthetic_sharp, write_easy_case
from test_bad_input import run_expecting_error

from lightning_deblur.cli import JOB_FAILED, main
from lightning_deblur.data import Observation
from lightning_deblur.divergence import DivergenceGuard
from lightning_deblur.errors import InputError
from lightning_deblur.generators import ImageNetSpec, KernelNetSpec
from lightning_deblur.imagefiles import read_image, write_image
from lightning_deblur.job import DeblurJob
from lightning_deblur.memory import step_bytes
from lightning_deblur.planning import ScalesSpec
from lightning_deblur.seed_batch import RandomStreams, SeedBatchJob

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = (0, 1)
RESULT_FILES = ("deblurred.png", "kernel.npy", "kernel.png", "curve.csv")
TIMES = ("wall_time_s", "seconds_per_iteration")


def fit(logs, case, *extra):
    """The improved method's tiny test config with two starts of the coarsest scale, so the
    run passes through starts, re-fits, both schedules, centring and the verdict."""
    main([
        "fit", "--config", str(CONF / "tiny_improved.yaml"), "--trainer.logger.init_args.save_dir", str(logs),
        "--data.image", str(case / "blurred.png"), "--data.sharp", str(case / "sharp.png"),
        "--data.kernel_size", "7", "--model.starts", "2", "--curve.every_n_steps", "1", *extra,
    ])  # fmt: skip


def run_folder(logs):
    (run,) = [path for path in logs.glob("*/version_*") if path.is_dir()]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Separate jobs for seeds 0 and 1, and the same seeds as a batch, vectorized and one by one."""
    root = tmp_path_factory.mktemp("seed_batch")
    write_easy_case(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for seed in SEEDS:
        fit(root / f"separate{seed}", root, "--seed_everything", str(seed))
    fit(root / "one_by_one", root, "--seeds", "0-1", "--seeds_one_by_one", "true")
    fit(root / "batched", root, "--seeds", "0,1")
    torch.set_num_threads(threads)
    return {
        "separate": {seed: run_folder(root / f"separate{seed}") for seed in SEEDS},
        "one_by_one": run_folder(root / "one_by_one"),
        "batched": run_folder(root / "batched"),
        "case": root,
    }


def without_times(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in TIMES}


def test_each_seed_of_a_batch_computes_what_its_separate_job_computes(runs):
    """Image nets called one by one, everything else as batched: equal bit for bit, so the
    random streams, stage changes, re-fits, starts, schedules, centring, verdict and files
    are each seed's own."""
    for seed in SEEDS:
        separate, member = runs["separate"][seed], runs["one_by_one"] / f"seed{seed}"
        metrics = read_metrics(member)
        assert metrics["seed"] == seed and metrics["batched_seeds"] == list(SEEDS)
        del metrics["seed"], metrics["batched_seeds"]
        assert without_times(metrics) == without_times(read_metrics(separate))
        assert "verdict" in metrics and len(metrics["starts"]) == 2
        for name in RESULT_FILES:
            assert (member / name).read_bytes() == (separate / name).read_bytes(), name
        scales = sorted(path.name for path in (separate / "scales").iterdir())
        assert scales == sorted(path.name for path in (member / "scales").iterdir()) and scales
    # Two seeds, two different runs: each job draws from its own stream.
    first, second = (np.load(runs["one_by_one"] / f"seed{seed}" / "kernel.npy") for seed in SEEDS)
    assert not np.array_equal(first, second)


def test_the_batched_image_nets_start_as_the_separate_jobs_do(runs):
    """With the image nets as one batched call, convolutions add in another order; the
    first steps agree to float32 precision (later ones drift apart, as runs of one seed do
    on different CPUs), and every seed ends with complete results."""
    for seed in SEEDS:
        member = runs["batched"] / f"seed{seed}"
        rows = (member / "curve.csv").read_text().splitlines()
        reference = (runs["separate"][seed] / "curve.csv").read_text().splitlines()
        column = rows[0].split(",").index("loss")
        for row, expected in zip(rows[1:3], reference[1:3]):
            assert float(row.split(",")[column]) == pytest.approx(float(expected.split(",")[column]), rel=1e-4)
        metrics = read_metrics(member)
        assert metrics["status"] == "done" and metrics["iterations"] == read_metrics(runs["separate"][seed])["iterations"]
        assert metrics["verdict"] in ("ok", "no-blur", "kernel-at-border")
        assert all((member / name).is_file() for name in RESULT_FILES)


def test_tensorboard_holds_every_seed_under_its_own_tags(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = runs["batched"].glob("events.out.tfevents.*")
    tags = EventAccumulator(str(events)).Reload().Tags()
    for seed in SEEDS:
        assert {f"seed{seed}/loss", f"seed{seed}/psnr", f"seed{seed}/refit/kernel_iterations"} <= set(tags["scalars"])
        assert f"seed{seed}/estimate/image" in tags["images"]
    assert "loss" in tags["scalars"]


def test_a_killed_seed_batch_resumes_to_the_uninterrupted_result(runs, tmp_path, monkeypatch):
    original = SeedBatchJob.configure_callbacks
    monkeypatch.setattr(SeedBatchJob, "configure_callbacks", lambda self: [*original(self), KillAt(22)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "killed", runs["case"], "--seeds", "0,1", "--checkpoint.every_n_steps", "5")
    monkeypatch.setattr(SeedBatchJob, "configure_callbacks", original)
    run = run_folder(tmp_path / "killed")
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file() and not (run / "seed0" / "metrics.json").exists()
    # Step 22 lies in the second scale (two starts of 8 steps, then 8 and 20); the checkpoint is step 20.
    fit(tmp_path / "ignored", runs["case"], "--seeds", "0,1", "--ckpt_path", str(checkpoint))
    for seed in SEEDS:
        resumed, whole = run / f"seed{seed}", runs["batched"] / f"seed{seed}"
        assert without_times(read_metrics(resumed)) == without_times(read_metrics(whole))
        np.testing.assert_array_equal(np.load(resumed / "kernel.npy"), np.load(whole / "kernel.npy"))
        np.testing.assert_array_equal(read_image(resumed / "deblurred.png").pixels, read_image(whole / "deblurred.png").pixels)
    assert not (run / "checkpoints").exists()


def test_a_checkpoint_resumes_only_its_own_seeds(runs, tmp_path, monkeypatch, capsys):
    original = SeedBatchJob.configure_callbacks
    monkeypatch.setattr(SeedBatchJob, "configure_callbacks", lambda self: [*original(self), KillAt(12)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(tmp_path / "killed", runs["case"], "--seeds", "0,1", "--checkpoint.every_n_steps", "5")
    monkeypatch.setattr(SeedBatchJob, "configure_callbacks", original)
    checkpoint = run_folder(tmp_path / "killed") / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path / "ignored", runs["case"], "--seeds", "0,2", "--ckpt_path", str(checkpoint))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "seeds [0, 1]" in error and "\n" not in error
    # Nor as one job: on the command line, and loaded from Python.
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path / "ignored", runs["case"], "--ckpt_path", str(checkpoint))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "seed batch (seeds 0,1)" in error and "fit --seeds 0,1 --ckpt_path" in error and "\n" not in error
    with pytest.raises(InputError, match="holds a seed batch"):
        DeblurJob.load_from_checkpoint(checkpoint)


def test_a_seed_batch_runs_in_float32(tmp_path, capsys):
    write_easy_case(tmp_path)
    common = ["--data.image", str(tmp_path / "blurred.png"), "--data.kernel_size", "7",
              "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), "--seeds", "0,1"]  # fmt: skip
    error = run_expecting_error(capsys, *common, "--trainer.precision", "bf16-mixed")
    assert "float32" in error and "32-true" in error
    # A width whose default is bf16-mixed on CPUs with native bf16: float32 in a seed batch.
    main(["fit", "--config", str(CONF / "tiny.yaml"), *common, "--model.image_net.channels", "64",
          "--model.image_net.skip_channels", "4", "--model.iterations", "2", "--model.finish.iterations", "2",
          "--outputs.verbose", "true"])  # fmt: skip
    (metrics,) = (tmp_path / "logs").glob("*/version_*/seed0/metrics.json")
    assert read_metrics(metrics.parent)["precision"] == "32-true"
    # The run to keep: the seed whose result has the lower gradient sparsity.
    sparsity = {seed: read_metrics(metrics.parent.parent / f"seed{seed}")["verdict_signals"]["gradient_sparsity"] for seed in (0, 1)}
    kept = min(sparsity, key=sparsity.get)
    assert f"Lowest gradient sparsity: {metrics.parent.parent / f'seed{kept}'} (×{sparsity[kept]:.3f}" in capsys.readouterr().out


@pytest.mark.parametrize("seeds", ["3-1", "a,b", "-2"])
def test_bad_seeds_are_one_line_errors(seeds, tmp_path, capsys):
    write_easy_case(tmp_path)
    error = run_expecting_error(
        capsys, "--data.image", str(tmp_path / "blurred.png"), "--data.kernel_size", "7",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), f"--seeds={seeds}",
    )  # fmt: skip
    assert "--seeds" in error
    assert not (tmp_path / "logs").exists()


def built_batch(seeds: list[int], vectorize: bool) -> SeedBatchJob:
    """A built batch of tiny 3-scale jobs on a 37×31 noise image, without a Trainer."""
    job = DeblurJob(
        image_net=ImageNetSpec(channels=8, skip_channels=4, levels=3), kernel_net=KernelNetSpec(hidden=64),
        scales=ScalesSpec(count=3, min_kernel_size=5, coarse_iterations=8), iterations=20,
    )  # fmt: skip
    observation = Observation(y=torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(0)), kernel_size=(5, 5), source=None)
    job.plan = job.plan_for(observation)
    batch = SeedBatchJob(job, seeds, vectorize=vectorize)
    batch.streams = RandomStreams(seeds, torch.device("cpu"))
    for index, member in enumerate(batch.members):
        with batch.streams.of(index):
            member.build(observation)
    return batch


def test_the_batched_call_gives_each_job_its_own_output_and_gradient():
    seeds = [4, 7, 9]
    batched, one_by_one = built_batch(seeds, vectorize=True), built_batch(seeds, vectorize=False)
    inputs = torch.cat([member.image_input(perturb=False) for member in batched.members])
    target = torch.rand(inputs.shape[0], 1, *inputs.shape[-2:], generator=torch.Generator().manual_seed(1))
    outputs = {}
    for name, batch in (("batched", batched), ("one_by_one", one_by_one)):
        images = batch.image_nets(inputs)
        ((images - target) ** 2).sum().backward()
        outputs[name] = images.detach()
    torch.testing.assert_close(outputs["batched"], outputs["one_by_one"], rtol=1e-5, atol=1e-5)
    for member, reference in zip(batched.members, one_by_one.members):
        # Relative to the job's largest gradient: biases ahead of a batch norm have a
        # gradient of zero in exact arithmetic, rounding noise in each order of summation.
        largest = max(float(p.grad.abs().max()) for p in reference.image_net.parameters())
        for parameter, expected in zip(member.image_net.parameters(), reference.image_net.parameters()):
            assert float((parameter.grad - expected.grad).abs().max()) <= 1e-4 * largest
    # The jobs are independent: another job's weights do not move this job's output.
    with torch.no_grad():
        before = batched.image_nets(inputs)
        for parameter in batched.members[1].image_net.parameters():
            parameter.add_(0.1)
        after = batched.image_nets(inputs)
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.equal(before[1], after[1])


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_a_batched_step_gives_each_job_its_own_loss_and_gradients():
    """The whole step (perturbed inputs, both nets, every loss term) as one batched call
    against the nets and losses called one by one, from the same random streams."""
    seeds = [2, 3, 5]
    steps = {}
    for vectorize in (True, False):
        batch = built_batch(seeds, vectorize=vectorize)
        batch.loss_weights = {"mse": 1.0, "ssim": 1.0, "tv": 0.01, "kernel_l2": 0.1}
        total = batch.training_step(0, 0)
        total.backward()
        steps[vectorize] = (total.detach(), batch)
    (batched_total, batched), (reference_total, reference) = steps[True], steps[False]
    torch.testing.assert_close(batched_total, reference_total, rtol=1e-5, atol=0)
    for member, expected in zip(batched.members, reference.members):
        torch.testing.assert_close(member.latest_loss, expected.latest_loss, rtol=1e-5, atol=0)
        torch.testing.assert_close(member.latest_k, expected.latest_k, rtol=1e-5, atol=1e-8)
        for net, expected_net in ((member.image_net, expected.image_net), (member.kernel_net, expected.kernel_net)):
            largest = max(float(p.grad.abs().max()) for p in expected_net.parameters())
            for parameter, expected_parameter in zip(net.parameters(), expected_net.parameters()):
                assert float((parameter.grad - expected_parameter.grad).abs().max()) <= 1e-4 * largest


def test_each_stream_is_the_one_its_seed_gives():
    streams = RandomStreams([5, 6], torch.device("cpu"))
    outer = torch.get_rng_state()
    with streams.of(1):
        first = torch.rand(3)
    with streams.of(0):
        other = torch.rand(3)
    with streams.of(1):
        second = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outer)  # the global stream is left as it was
    torch.manual_seed(6)
    expected = torch.rand(6)
    assert torch.equal(torch.cat([first, second]), expected)
    torch.manual_seed(5)
    assert torch.equal(other, torch.rand(3))



@pytest.mark.parametrize("mode", ["colour", "non-blind"])
def test_finishing_stages_and_known_kernels_run_per_seed_too(mode, tmp_path):
    """An RGB input (the colour stage: a 3-channel head, the kernel fixed) and a non-blind
    job (the image net alone): each seed's result is still its separate run's."""
    kernel = gaussian_kernel(5, 1.2)
    write_image(tmp_path / "rgb.png", np.stack([blur(synthetic_sharp(41, 35, seed=c), kernel) for c in range(3)], -1))
    np.save(tmp_path / "kernel.npy", kernel)
    known = ["--model.kernel_mode", "fixed", "--data.kernel", str(tmp_path / "kernel.npy")] if mode == "non-blind" else []
    common = ["fit", "--config", str(CONF / "tiny.yaml"), "--data.image", str(tmp_path / "rgb.png"),
              "--data.kernel_size", "5", *known]  # fmt: skip
    main([*common, "--trainer.logger.init_args.save_dir", str(tmp_path / "batch"), "--seeds", "0-1", "--seeds_one_by_one", "true"])
    for seed in SEEDS:
        main([*common, "--trainer.logger.init_args.save_dir", str(tmp_path / f"seed{seed}"), "--seed_everything", str(seed)])
        member, separate = run_folder(tmp_path / "batch") / f"seed{seed}", run_folder(tmp_path / f"seed{seed}")
        assert read_metrics(member)["colour"] == "full" and read_metrics(member)["tiles"] == 1
        assert (member / "deblurred.png").read_bytes() == (separate / "deblurred.png").read_bytes()


def test_a_seed_that_fails_stops_the_batch_and_the_others_keep_their_estimates(runs, tmp_path, monkeypatch, capsys):
    original = DivergenceGuard.problem

    def seed1_diverges_at_step_15(self, job):
        return "the loss is not finite (diverged)" if job.log_prefix == "seed1/" and job.global_step >= 15 else original(self, job)

    monkeypatch.setattr(DivergenceGuard, "problem", seed1_diverges_at_step_15)
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path / "logs", runs["case"], "--seeds", "0,1", "--divergence.every_n_steps", "5")
    assert exit_info.value.code == JOB_FAILED
    assert "seed 1: the loss is not finite" in capsys.readouterr().err
    run = run_folder(tmp_path / "logs")
    failed, stopped = read_metrics(run / "seed1"), read_metrics(run / "seed0")
    # Checked every 5 steps: the estimate of step 10 (same stage, the second start) is kept.
    assert failed["status"] == "failed" and "at step 15; the estimate of step 10 is kept" in failed["error"]
    assert stopped["status"] == "stopped" and stopped["iterations"] == 15
    assert "seed 1: the loss is not finite" in stopped["error"] and "--seed_everything 0" in stopped["error"]
    assert (run / "seed0" / "deblurred.png").is_file() and (run / "seed1" / "deblurred.png").is_file()


def test_the_memory_check_counts_every_seed_of_a_batch(blurred_case, tmp_path, capsys, monkeypatch):
    """Room for about three jobs' activations: one job starts, a batch of eight seeds is refused."""
    one_job = step_bytes(ImageNetSpec(channels=8, skip_channels=4), (41, 35))
    monkeypatch.setattr("lightning_deblur.memory.available_bytes", lambda device: 3 * one_job)
    common = ["fit", "--config", str(CONF / "tiny.yaml"), "--data.image", str(blurred_case["image"]),
              "--data.kernel_size", "5", "--trainer.logger.init_args.save_dir", str(tmp_path)]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--seeds", "0-7"])
    assert exit_info.value.code == 2 and "fewer seeds" in capsys.readouterr().err
    main([*common, "--seeds", "0-1", "--model.iterations", "2", "--model.finish.iterations", "2"])
    assert len(list(tmp_path.glob("*/version_*/seed*/metrics.json"))) == 2
