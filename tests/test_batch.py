"""``python -m lightning_deblur batch``: many jobs, workers, resume, node shares, failures.

Every job is a real ``fit`` subprocess on a tiny net (37×31 images, 10 iterations), so
each costs a few seconds, mostly the interpreter and Lightning starting; the tests keep
the job counts small.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CONF, KillAt, StopAt, blur, gaussian_kernel, synthetic_sharp

from lightning_deblur.commands.batch import cli as batch_cli
from lightning_deblur.commands.batch import jobs as batch_jobs
from lightning_deblur.commands.batch import processes as batch_processes
from lightning_deblur.commands.batch import slots as batch_slots
from lightning_deblur.commands.batch import summary as batch_summary
from lightning_deblur.commands.batch.jobs import parse_seeds
from lightning_deblur.commands.fit import main
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import read_image, write_image
from lightning_deblur.job.deblur_job import DeblurJob
from lightning_deblur.core.manifest import ManifestRow, read_manifest, rows_from_folder
from lightning_deblur.commands.ranks import cluster_rank, node_share

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model.iterations", "10"]  # passed through to every job's fit


def make_manifest(
    folder: Path, names: list[str], corrupt: tuple[str, ...] = (), hanging: tuple[str, ...] = (), kernels: bool = False
) -> Path:
    """37×31 blurred images (5×5 Gaussian blur) with sharp references, and their manifest.

    Names in ``corrupt`` get a "PNG" that is not an image; names in ``hanging`` a named
    pipe, whose reading blocks the job forever; ``kernels`` adds the true kernels (the
    ``kernel`` column).
    """
    kernel = gaussian_kernel(5, 1.2)
    np.save(folder / "true_kernel.npy", kernel)
    rows = ["name,image,kernel_size,sharp" + (",kernel" if kernels else "")]
    for number, name in enumerate(names):
        support = synthetic_sharp(37 + 4, 31 + 4, seed=number)
        if name in corrupt:
            (folder / f"{name}.png").write_text("not an image\n")
        elif name in hanging:
            os.mkfifo(folder / f"{name}.png")
        else:
            write_image(folder / f"{name}.png", blur(support, kernel))
        write_image(folder / f"{name}_sharp.png", support[2:-2, 2:-2])
        rows.append(f"{name},{name}.png,5,{name}_sharp.png" + (",true_kernel.npy" if kernels else ""))
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    return folder / "cases.csv"


def batch_args(manifest: Path, output: Path, *extra: str) -> list[str]:
    return [
        "batch",
        "--config",
        str(CONF / "tiny.yaml"),
        "--manifest",
        str(manifest),
        "--output_dir",
        str(output),
        *FAST,
        *extra,
    ]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def file_states(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` -> (inode, mtime in ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_two_workers_with_two_jobs_each_run_every_job_exactly_once(tmp_path, no_cluster):
    manifest = make_manifest(tmp_path, ["a", "b", "c"])
    output = tmp_path / "out"
    main(batch_args(manifest, output, "--seeds", "0-1", "--devices", "2", "--jobs_per_device", "2"))

    finished = sorted(output.glob("*/seed*/metrics.json"))
    assert [str(p.parent.relative_to(output)) for p in finished] == [
        "a/seed0",
        "a/seed1",
        "b/seed0",
        "b/seed1",
        "c/seed0",
        "c/seed1",
    ]
    for path in finished:
        run = path.parent
        metrics = json.loads(path.read_text())
        assert metrics["iterations"] == 10  # the passed-through option reached every job
        assert len(list(run.glob("events.out.tfevents.*"))) == 1  # one run per job folder
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["seed_everything"] == int(run.name.removeprefix("seed"))
        assert Path(config["data"]["image"]).stem == run.parent.name
    rows = read_rows(output / "summary.csv")
    assert [(r["name"], r["seed"], r["status"]) for r in rows] == [
        (name, seed, "done") for name in "abc" for seed in "01"
    ]
    assert {r["device"] for r in rows} == {"cpu0", "cpu1"}  # both workers took jobs
    assert all(float(r["psnr"]) > 0 and r["kernel_size"] == "5x5" and not r["error"] for r in rows)
    # The two seeds of one image differ.
    assert rows[0]["final_loss"] != rows[1]["final_loss"]


def _job_processes(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftover job processes")
def test_killed_batch_resumes_without_redoing_finished_jobs(tmp_path, no_cluster):
    manifest = make_manifest(tmp_path, ["a", "b", "c"])
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = batch_args(manifest, output, "--devices", "1", "--jobs_per_device", "2")
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_deblur", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while not list(output.glob("*/seed0/metrics.json")):
        assert process.poll() is None and time.monotonic() < deadline, "the batch ended before finishing a job"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # a crash: no clean-up code of the batch runs
    process.wait(timeout=30)
    # The workers notice that the batch is gone and kill the job they were running.
    deadline = time.monotonic() + 30
    while _job_processes(str(output)):
        assert time.monotonic() < deadline, "a job kept running after its batch was killed"
        time.sleep(0.2)

    finished = {p.parent for p in output.glob("*/seed0/metrics.json")}
    assert 1 <= len(finished) < 3
    before = {run: file_states(run) for run in finished}
    unfinished = sorted({output / name / "seed0" for name in "abc"} - finished)
    # What a job killed mid-way can leave: stale partial files, no metrics.json; here
    # also a broken checkpoint, which the batch tries, then starts the job over.
    unfinished[0].mkdir(parents=True, exist_ok=True)
    (unfinished[0] / "deblurred.png").write_bytes(b"half a png")
    (unfinished[0] / "stale.txt").write_text("from the killed run\n")
    (unfinished[0] / "checkpoints").mkdir(exist_ok=True)
    (unfinished[0] / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")

    main(args)

    for run in finished:
        assert file_states(run) == before[run]  # not recomputed, not touched
    for run in unfinished:
        assert (run / "metrics.json").is_file() and not (run / "stale.txt").exists()
        assert json.loads((run / "batch.json").read_text())["resumed"] is False
        assert read_image(run / "deblurred.png").size == (37, 31)
    assert not list(output.glob("*/seed*/**/.*"))  # no temporary files left in any job folder
    rows = {r["name"]: r for r in read_rows(output / "summary.csv")}
    assert sorted(rows) == ["a", "b", "c"]
    for name, row in rows.items():
        expected = "skipped-done" if output / name / "seed0" in finished else "done"
        assert row["status"] == expected and float(row["psnr"]) > 0, row  # figures of earlier jobs too


@pytest.mark.slow
def test_a_bad_image_fails_alone_and_is_retried_next_time(tmp_path, no_cluster, capsys):
    manifest = make_manifest(tmp_path, ["bad", "good"], corrupt=("bad",))
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(batch_args(manifest, output, "--devices", "1", "--jobs_per_device", "2"))
    assert exit_info.value.code == 1
    assert "1 of 2 jobs failed" in capsys.readouterr().err
    rows = {r["name"]: r for r in read_rows(output / "summary.csv")}
    assert rows["good"]["status"] == "done" and (output / "good" / "seed0" / "metrics.json").is_file()
    assert rows["bad"]["status"] == "failed" and not (output / "bad" / "seed0" / "metrics.json").exists()
    assert "is not an image that can be read" in rows["bad"]["error"]  # the job's own one-line error
    assert "is not an image" in (output / "bad" / "seed0" / "stderr.log").read_text()

    good = file_states(output / "good" / "seed0")
    with pytest.raises(SystemExit):
        main(batch_args(manifest, output, "--devices", "1"))
    rows = {r["name"]: r for r in read_rows(output / "summary.csv")}
    assert rows["good"]["status"] == "skipped-done" and rows["bad"]["status"] == "failed"
    assert file_states(output / "good" / "seed0") == good
    assert "1 to run" in capsys.readouterr().out  # only the failed job ran again



@pytest.mark.slow
def test_a_job_killed_after_a_checkpoint_resumes_from_it(tmp_path, no_cluster, monkeypatch):
    manifest = make_manifest(tmp_path, ["a"])
    output = tmp_path / "out"
    run = output / "a" / "seed0"
    # The job as batch runs it, killed at step 7 of 10 with a checkpoint from step 5.
    (job,) = batch_jobs.build_jobs(read_manifest(manifest), [0])
    run_as_batch_would(job, output, monkeypatch, KillAt(7), pytest.raises(RuntimeError, match="simulated kill"))
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    killed_log = set(run.glob("events.out.tfevents.*"))

    main(batch_args(manifest, output, "--checkpoint.every_n_steps", "5"))
    assert json.loads((run / "batch.json").read_text())["resumed"] is True
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 10
    assert killed_log < set(run.glob("events.out.tfevents.*"))  # same run folder, the first log kept
    assert not (run / "checkpoints").exists()  # a finished job drops its checkpoint
    assert read_rows(output / "summary.csv")[0]["status"] == "done"


def run_as_batch_would(job, output, monkeypatch, callback, raises) -> None:
    """Run ``job`` in-process as batch runs it (checkpoints every 5 steps), with ``callback``
    among the job's callbacks, expecting ``raises``."""
    prefix = ["--config", str(CONF / "tiny.yaml"), *FAST, "--checkpoint.every_n_steps", "5"]
    original = DeblurJob.configure_callbacks
    monkeypatch.setattr(DeblurJob, "configure_callbacks", lambda self: [*original(self), callback])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the batch's jobs here (see no_cluster)
    try:
        with raises:
            main(batch_jobs.fit_arguments(job, output, prefix))
    finally:
        torch.set_num_threads(threads)
        monkeypatch.setattr(DeblurJob, "configure_callbacks", original)


@pytest.mark.slow
def test_a_stopped_job_resumes_from_its_checkpoint(tmp_path, no_cluster, monkeypatch):
    manifest = make_manifest(tmp_path, ["a"])
    output = tmp_path / "out"
    run = output / "a" / "seed0"
    (job,) = batch_jobs.build_jobs(read_manifest(manifest), [0])
    # Stopped at step 7 of 10 (a time budget, a signal): results so far, checkpoint at step 7.
    run_as_batch_would(job, output, monkeypatch, StopAt(7), pytest.raises(SystemExit))
    assert json.loads((run / "metrics.json").read_text())["status"] == "stopped"

    main(batch_args(manifest, output, "--checkpoint.every_n_steps", "5"))
    assert json.loads((run / "batch.json").read_text())["resumed"] is True
    assert json.loads((run / "metrics.json").read_text())["status"] == "done"
    assert read_rows(output / "summary.csv")[0]["status"] == "done"


@pytest.mark.slow
def test_a_corrupt_checkpoint_starts_the_job_over_and_says_so(tmp_path, no_cluster, monkeypatch, capsys):
    manifest = make_manifest(tmp_path, ["a"])
    output = tmp_path / "out"
    run = output / "a" / "seed0"
    (job,) = batch_jobs.build_jobs(read_manifest(manifest), [0])
    run_as_batch_would(job, output, monkeypatch, KillAt(7), pytest.raises(RuntimeError, match="simulated kill"))
    checkpoint = run / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated, as by a full disk

    main(batch_args(manifest, output, "--checkpoint.every_n_steps", "5"))
    err = capsys.readouterr().err
    assert "did not take" in err and "cannot be read" in err and "starting it over" in err
    assert json.loads((run / "batch.json").read_text())["resumed"] is False
    assert json.loads((run / "metrics.json").read_text())["status"] == "done"


RANK_SCHEMES = {
    "torchrun": lambda r, n: {
        "TORCHELASTIC_RUN_ID": "x",
        "RANK": r,
        "WORLD_SIZE": n,
        "LOCAL_RANK": 0,
        "LOCAL_WORLD_SIZE": 1,
        "GROUP_RANK": r,
    },
    "srun": lambda r, n: {"SLURM_NTASKS": n, "SLURM_PROCID": r, "SLURM_JOB_NAME": "deblur"},
    "array": lambda r, n: {
        "SLURM_ARRAY_TASK_ID": 10 + 2 * r,
        "SLURM_ARRAY_TASK_MIN": 10,
        "SLURM_ARRAY_TASK_MAX": 10 + 2 * (n - 1),
        "SLURM_ARRAY_TASK_STEP": 2,
        "SLURM_NTASKS": 1,
        "SLURM_PROCID": 0,
        "SLURM_JOB_NAME": "deblur",
    },
    "array_without_count_or_srun": lambda r, n: {
        "SLURM_ARRAY_TASK_ID": r + 1,
        "SLURM_ARRAY_TASK_MIN": 1,
        "SLURM_ARRAY_TASK_MAX": n,
    },
    # 2 array tasks × 3 srun tasks = 6 ranks.
    "array_x_srun": lambda r, n: {
        "SLURM_ARRAY_TASK_ID": r // 3,
        "SLURM_ARRAY_TASK_COUNT": 2,
        "SLURM_ARRAY_TASK_MIN": 0,
        "SLURM_NTASKS": 3,
        "SLURM_PROCID": r % 3,
        "SLURM_JOB_NAME": "deblur",
    },
    "rank_and_world_size": lambda r, n: {"RANK": r, "WORLD_SIZE": n},
}


@pytest.mark.parametrize("scheme", list(RANK_SCHEMES))
def test_node_shares_are_disjoint_and_complete(scheme, no_cluster):
    world = 6 if scheme == "array_x_srun" else 4
    shares = []
    for rank in range(world):
        with pytest.MonkeyPatch.context() as patch:
            for name, value in RANK_SCHEMES[scheme](rank, world).items():
                patch.setenv(name, str(value))
            found = cluster_rank()
            assert (found.rank, found.world_size) == (rank, world), found
            shares.append(node_share(23, found))
    assert sorted(i for share in shares for i in share) == list(range(23))  # complete, no overlap
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced


def test_without_a_cluster_or_in_an_interactive_slurm_shell_one_process_takes_every_job(no_cluster):
    assert node_share(5, cluster_rank()) == [0, 1, 2, 3, 4]
    no_cluster.setenv("SLURM_NTASKS", "4")
    no_cluster.setenv("SLURM_PROCID", "2")
    no_cluster.setenv("SLURM_JOB_NAME", "bash")  # salloc's shell: not an srun step
    assert node_share(5, cluster_rank()) == [0, 1, 2, 3, 4]
    no_cluster.setenv("SLURM_JOB_NAME", "deblur")
    no_cluster.setenv("SLURM_PROCID", "4")
    with pytest.raises(InputError, match="not a valid rank"):
        cluster_rank()


@pytest.mark.slow
def test_a_slurm_rank_runs_its_share_and_its_jobs_do_not_see_the_slurm_rank(tmp_path, no_cluster):
    manifest = make_manifest(tmp_path, ["a", "b"])
    output = tmp_path / "out"
    for name, value in {
        "SLURM_NTASKS": 2,
        "SLURM_PROCID": 1,
        "SLURM_JOB_NAME": "deblur",
        "SLURM_NTASKS_PER_NODE": 2,
        "SLURM_LOCALID": 1,
        "SLURM_NODEID": 0,
    }.items():
        no_cluster.setenv(name, str(value))
    main(batch_args(manifest, output))
    assert (output / "b" / "seed0" / "metrics.json").is_file() and not (output / "a").exists()
    logs = "".join((output / "b" / "seed0" / f).read_text() for f in ("stdout.log", "stderr.log"))
    assert "rank: 1" not in logs and "SLURM auto-requeueing" not in logs  # a plain single-process job
    assert [(r["name"], r["status"]) for r in read_rows(output / "summary.part1of2.csv")] == [("b", "done")]
    assert [(r["name"], r["status"]) for r in read_rows(output / "summary.csv")] == [("a", "pending"), ("b", "done")]


def test_cpu_workers_share_the_cores_without_oversubscribing(monkeypatch):
    monkeypatch.setattr(batch_slots, "_cpu_cores", lambda: 16)
    slots, threads, per_slot = batch_slots.plan_slots("4", 2, "cpu", concurrency_cap=100)
    assert [slot.label for slot in slots] == ["cpu0", "cpu1", "cpu2", "cpu3"] and threads == 2 and per_slot == 2
    assert all(slot.env == {"CUDA_VISIBLE_DEVICES": ""} for slot in slots)  # CPU jobs never touch a GPU
    assert batch_slots.plan_slots("4", 2, "cpu", concurrency_cap=3)[1] == 5  # fewer jobs than slots
    assert batch_slots.plan_slots("auto", 1, "cpu", concurrency_cap=100) == ([batch_processes.Slot("cpu0", slots[0].env)], 16, 1)
    # jobs_per_device auto: one job per CPU slot, its threads taking every core.
    assert batch_slots.plan_slots("auto", "auto", "cpu", concurrency_cap=100) == ([batch_processes.Slot("cpu0", slots[0].env)], 16, 1)
    with pytest.raises(InputError, match="at least 1"):
        batch_slots.plan_slots("1", 0, "cpu", concurrency_cap=100)
    assert batch_slots.plan_slots("3", 3, "cpu", concurrency_cap=100)[1] == 1
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "3")
    env = batch_slots._job_environment(5)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "5" and "RANK" not in env
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's choice wins, for MKL too
    env = batch_slots._job_environment(5)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "7"
    # Run from this source checkout, the jobs import this very package first.
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[1])


def test_seed_lists():
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds("3") == [3]
    assert parse_seeds("5, 0-2,1") == [0, 1, 2, 5]
    for bad in ("", "a", "3-1", "-1", "1-2-3", "0,,1"):
        with pytest.raises(InputError, match="--seeds"):
            parse_seeds(bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--manifest", "missing.csv"], "manifest 'missing.csv' not found"),
        (["--manifest", "{cases}", "--seeds", "9-0"], "ends before it starts"),
        (["--images", "{empty}", "--kernel_size", "5"], "nothing to do"),
        (["--images", "{empty}"], "--images needs --kernel_size"),
        (["--manifest", "{cases}", "--data.sharp", "x.png"], "--data.sharp cannot be given to batch"),
        (["--manifest", "{cases}", "--trainer.devices", "2"], "use --devices"),
        (["--manifest", "{cases}", "--model.iteratons", "3"], "do not parse"),
        (["--manifest", "{cases}", "--model.colour", "grey"], "--model.colour grey is not one of full, luminance"),
        (["--manifest", "{cases}", "--devices", "many"], "not a number or auto"),
        (["--manifest", "{cases}", "--jobs_per_device", "0"], "--jobs_per_device 0 must be at least 1 (or auto)"),
        (["--manifest", "{cases}", "--jobs_per_device", "many"], "--jobs_per_device many is not a valid value"),
        (["--manifest", "{cases}", "--seeds_per_job", "2"], "do not parse"),
    ],
)
def test_bad_batch_input_is_one_line_and_exit_code_2(tmp_path, capsys, options, message, no_cluster):
    (tmp_path / "cases.csv").write_text(f"image,kernel_size\n{tmp_path / 'x.png'},5\n")
    (tmp_path / "empty").mkdir()
    options = [o.format(cases=tmp_path / "cases.csv", empty=tmp_path / "empty") for o in options]
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", "--config", str(CONF / "tiny.yaml"), "--output_dir", str(tmp_path / "out"), *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, no_cluster):
    manifest = make_manifest(tmp_path, ["a"])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(batch_args(manifest, tmp_path / "a_file" / "out"))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: cannot write into") and "--output_dir" in err
    assert "\n" not in err


def test_manifest_text_is_read_as_written(tmp_path):
    rows = "name,image,kernel_size\nnull,a.png,5\n-dash,b.png,5\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode())  # as spreadsheets save UTF-8
    assert [row.name for row in read_manifest(tmp_path / "bom.csv")] == ["null", "-dash"]
    (tmp_path / "latin1.csv").write_bytes(b"name,image,kernel_size\nok,a.png,5\ncaf\xe9,b.png,5\n")
    with pytest.raises(InputError, match="line 3 of .*latin1.csv.* is not UTF-8"):
        read_manifest(tmp_path / "latin1.csv")


@pytest.mark.slow
def test_names_that_read_as_null_or_as_options_get_their_own_folders(tmp_path, no_cluster):
    manifest = make_manifest(tmp_path, ["null", "-dash"])
    output = tmp_path / "out"
    main(batch_args(manifest, output))
    for name in ("null", "-dash"):
        metrics = json.loads((output / name / "seed0" / "metrics.json").read_text())
        assert metrics["status"] == "done" and metrics["image"].endswith(f"{name}.png")
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == ["-dash", "null"]
    assert {row["status"] for row in read_rows(output / "summary.csv")} == {"done"}


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes for a job that never ends")
def test_a_job_past_the_timeout_is_stopped_and_failed_while_the_others_finish(tmp_path, no_cluster, capsys):
    manifest = make_manifest(tmp_path, ["fine", "stuck"], hanging=("stuck",))
    output = tmp_path / "out"

    def release():  # should the timeout not act: unblock the stuck job (it then fails otherwise)
        try:
            os.close(os.open(tmp_path / "stuck.png", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader left: the job was killed
            pass

    safety = threading.Timer(150, release)
    safety.start()
    started = time.monotonic()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(batch_args(manifest, output, "--jobs_per_device", "2", "--timeout", "30"))
    finally:
        safety.cancel()
    assert exit_info.value.code == 1
    assert time.monotonic() - started < 120  # the stuck job did not hold the batch beyond its timeout
    rows = {r["name"]: r for r in read_rows(output / "summary.csv")}
    assert rows["fine"]["status"] == "done" and (output / "fine" / "seed0" / "metrics.json").is_file()
    assert rows["stuck"]["status"] == "failed" and rows["stuck"]["error"] == "timed out after 30 s"
    assert "1 of 2 jobs failed" in capsys.readouterr().err


@pytest.mark.slow
def test_images_runs_every_image_of_the_folder_and_nothing_else(tmp_path, no_cluster):
    folder = tmp_path / "photos"
    folder.mkdir()
    make_manifest(folder, ["x", "y"])
    for extra in ("cases.csv", "x_sharp.png", "y_sharp.png", "true_kernel.npy"):
        (folder / extra).rename(tmp_path / extra)  # only the two blurred images stay
    (folder / "notes.txt").write_text("not an input\n")
    (folder / "nested").mkdir()
    write_image(folder / "nested" / "z.png", synthetic_sharp(37, 31))  # not recursive
    output = tmp_path / "out"
    main(["batch", "--config", str(CONF / "tiny.yaml"), "--images", str(folder), "--kernel_size", "5",
          "--output_dir", str(output), "--jobs_per_device", "2", *FAST])  # fmt: skip
    rows = read_rows(output / "summary.csv")
    assert [(r["name"], r["status"], r["kernel_size"], r["sharp"]) for r in rows] == [
        ("x", "done", "5x5", ""),
        ("y", "done", "5x5", ""),
    ]
    assert sorted(p.name for p in output.iterdir()) == ["summary.csv", "x", "y"]

    # One photo: --images takes an image file as well as a folder; anything else is refused.
    assert rows_from_folder(folder / "x.png", "5") == [ManifestRow("x", str((folder / "x.png").resolve()), (5, 5))]
    with pytest.raises(InputError, match="is not a folder or an image file"):
        rows_from_folder(folder / "notes.txt", "5")


@pytest.mark.slow
def test_a_non_blind_batch_gives_each_job_the_manifest_kernel(tmp_path, no_cluster, capsys):
    manifest = make_manifest(tmp_path, ["a"], kernels=True)
    output = tmp_path / "out"
    main([*batch_args(manifest, output), "--config", str(ROOT / "configs" / "nonblind.yaml"), *FAST])
    run = output / "a" / "seed0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["kernel_mode"] == "fixed"
    assert Path(config["data"]["kernel"]) == tmp_path / "true_kernel.npy"
    np.testing.assert_allclose(np.load(run / "kernel.npy"), np.load(tmp_path / "true_kernel.npy"), atol=1e-6)
    assert read_rows(output / "summary.csv")[0]["status"] == "done"

    blind_manifest = make_manifest(tmp_path, ["a"])  # no kernel column
    with pytest.raises(SystemExit) as exit_info:
        main([*batch_args(blind_manifest, tmp_path / "out2"), "--config", str(ROOT / "configs" / "nonblind.yaml")])
    assert exit_info.value.code == 2
    assert "'a' has no true kernel" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_each_gpu_slot_pins_its_jobs_to_one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,7")  # the GPUs the scheduler gave this process
    slots, _, _ = batch_slots.plan_slots("auto", 2, "auto", concurrency_cap=100)
    # jobs_per_device auto: several jobs per GPU (a job alone leaves it mostly idle).
    assert batch_slots.plan_slots("auto", "auto", "auto", concurrency_cap=100).jobs_per_device == batch_slots.GPU_JOBS_PER_DEVICE > 1
    assert [(slot.label, slot.env) for slot in slots] == [
        (f"gpu{i}", {"CUDA_VISIBLE_DEVICES": i}) for i in ("2", "3", "5", "7")
    ]
    assert [slot.label for slot in batch_slots.plan_slots("2", 1, "gpu", concurrency_cap=100)[0]] == ["gpu2", "gpu3"]
    assert [slot.label for slot in batch_slots.plan_slots("auto", 1, "cpu", concurrency_cap=100)[0]] == ["cpu0"]
    with pytest.raises(InputError, match="only 4 CUDA GPUs"):
        batch_slots.plan_slots("5", 1, "auto", concurrency_cap=100)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(InputError, match="no CUDA GPU is visible"):
        batch_slots.plan_slots("auto", 1, "gpu", concurrency_cap=100)

    # The pool: every job runs with one slot's variable, never more than 2 at once per GPU.
    jobs = batch_jobs.build_jobs([ManifestRow(f"in{i}", f"in{i}.png", (5, 5)) for i in range(10)], [0])
    lock, running, seen, peak = threading.Lock(), {}, {}, {}

    def fake_run(job, spec, slot, processes):
        env = {**spec.base_env, **slot.env}
        with lock:
            running[slot.label] = running.get(slot.label, 0) + 1
            peak[slot.label] = max(peak.get(slot.label, 0), running[slot.label])
        time.sleep(0.05)
        with lock:
            running[slot.label] -= 1
        return {"status": "done", "error": None, "wall_time_s": 0.05, "device": env["CUDA_VISIBLE_DEVICES"]}

    spec = batch_processes.RunSpec("out", (), {"CUDA_VISIBLE_DEVICES": "2,3,5,7"}, None)
    batch_processes.run_jobs(jobs, slots, 2, spec, lambda job, values: seen.update({job.index: values["device"]}), fake_run)
    assert sorted(seen) == list(range(10))  # every job ran once
    assert set(seen.values()) == {"2", "3", "5", "7"}  # each with a single GPU, every GPU used
    assert max(peak.values()) <= 2


def test_an_interruption_still_reports_jobs_that_had_ended():
    """A job can end (its thread handing the slot on) just before a SIGTERM reaches the
    thread that reports results; the summary must still call it done."""
    jobs = batch_jobs.build_jobs([ManifestRow(f"in{i}", f"in{i}.png", (5, 5)) for i in range(2)], [0])
    slots, _, _ = batch_slots.plan_slots("1", 2, "cpu", concurrency_cap=100)
    both_ended = threading.Barrier(3)

    def fake_run(job, spec, slot, processes):
        both_ended.wait(timeout=10)
        return {"status": "done", "error": None, "wall_time_s": 0.0, "device": slot.label}

    reported = []

    def on_result(job, values):
        reported.append(job.index)
        if len(reported) == 1:
            time.sleep(0.3)  # the other job's thread returns meanwhile: its future is done, unreported
            raise SystemExit(143)  # the SIGTERM handler's exception, in the reporting thread

    spec = batch_processes.RunSpec("out", (), {}, None)
    threading.Thread(target=both_ended.wait, kwargs={"timeout": 10}).start()
    with pytest.raises(SystemExit):
        batch_processes.run_jobs(jobs, slots, 2, spec, on_result, fake_run)
    assert set(reported) == {0, 1}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftover job processes")
def test_sigterm_stops_running_jobs_keeps_finished_ones_and_the_batch_resumes(tmp_path, no_cluster):
    manifest = make_manifest(tmp_path, ["a", "b"])
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = batch_args(manifest, output, "--jobs_per_device", "1")
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_deblur", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while not (output / "a" / "seed0" / "metrics.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the batch ended before finishing a job"
        time.sleep(0.2)
    while not (output / "b" / "seed0" / "stderr.log").exists():  # b's job has started
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=90)
    assert process.returncode == 143
    assert b"interrupted; run the same command again to resume" in err
    assert not _job_processes(str(output))  # the running job ended with the batch
    # b's job was still starting (it ends at once) or stopped at a step; either way unfinished.
    assert batch_summary.read_finished(output / "b" / "seed0") is None
    rows = {r["name"]: r["status"] for r in read_rows(output / "summary.csv")}
    assert rows == {"a": "done", "b": "pending"}
    finished = file_states(output / "a" / "seed0")

    main(args)
    assert file_states(output / "a" / "seed0") == finished
    rows = {r["name"]: r["status"] for r in read_rows(output / "summary.csv")}
    assert rows == {"a": "skipped-done", "b": "done"}


@pytest.mark.slow
def test_a_stopped_batch_lets_its_running_jobs_save_their_checkpoints_at_the_step_reached(tmp_path, no_cluster):
    manifest = make_manifest(tmp_path, ["a"])
    output = tmp_path / "out"
    run_dir = output / "a" / "seed0"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # A job far longer than the test, checkpointing every 20 steps: stopped mid-way, it must
    # save where it got to, not leave the last periodic checkpoint to resume from.
    args = [*batch_args(manifest, output), "--model.iterations", "100000", "--checkpoint.every_n_steps", "20"]
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_deblur", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "last.ckpt").exists():  # the job is training
            assert process.poll() is None and time.monotonic() < deadline, "the job never wrote a checkpoint"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "stopped" and "by SIGTERM" in metrics["error"]
    stopped_at = int(metrics["error"].split("stopped after ")[1].split()[0])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == stopped_at
    assert batch_processes.resumable_run(run_dir)
    assert b"stopping 1 running job(s) at their next step" in err


def test_a_stop_waits_for_jobs_to_end_and_kills_those_that_outlast_the_grace(tmp_path):
    """The stop signals every running process, waits for those that end by themselves (a
    job saving its checkpoint), and kills one that outlasts the grace period."""
    saver = (
        "import signal, sys, time, pathlib\n"
        "def save(signum, frame):\n"
        "    time.sleep(0.5)\n"  # a checkpoint takes a while
        f"    pathlib.Path({str(tmp_path / 'saved')!r}).write_text('step 7')\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    running = batch_processes.RunningProcesses()
    saving = running.start([sys.executable, "-c", saver], stdout=subprocess.PIPE)
    ignoring = running.start([sys.executable, "-c", deaf], stdout=subprocess.PIPE)
    for process in (saving, ignoring):
        assert process.stdout.readline() == b"ready\n"  # its handler is in place
    started = time.monotonic()
    running.stop(grace_s=3.0)
    assert 3.0 <= time.monotonic() - started < 20
    assert saving.returncode == 143 and (tmp_path / "saved").read_text() == "step 7"
    assert ignoring.wait(timeout=10) == -signal.SIGKILL  # killed (reaped here, as a job thread would)
    with pytest.raises(batch_processes.Stopped):
        running.start([sys.executable, "-c", "pass"])  # nothing starts after the stop


def test_a_job_past_its_timeout_is_told_to_stop_and_killed_only_if_it_does_not(tmp_path):
    """A timed-out job gets SIGTERM first (a fit saves its checkpoint at the step reached),
    and SIGKILL only when it outlasts the grace period (a hang)."""
    saver = (
        "import signal, sys, time, pathlib\n"
        "def save(signum, frame):\n"
        f"    pathlib.Path({str(tmp_path / 'saved')!r}).write_text('step 7')\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        "time.sleep(60)\n"
    )
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    running = batch_processes.RunningProcesses()
    code, timed_out, seconds = batch_processes.run_fit(
        [sys.executable, "-c", saver], tmp_path, dict(os.environ), 3.0, running, grace_s=20.0
    )
    assert timed_out and code == 143 and (tmp_path / "saved").read_text() == "step 7"
    assert seconds < 20  # it ended by itself within the grace, not killed at its end
    code, timed_out, seconds = batch_processes.run_fit(
        [sys.executable, "-c", deaf], tmp_path, dict(os.environ), 3.0, running, grace_s=2.0
    )
    assert timed_out and code == -signal.SIGKILL and seconds >= 5.0


def test_a_timed_out_job_says_where_it_stopped_when_it_saved_its_checkpoint(tmp_path):
    assert batch_processes._failure(tmp_path, -signal.SIGKILL, True, 30.0) == "timed out after 30 s"
    metrics = {"status": "stopped", "iterations": 212, "error": "stopped after 212 of 5000 steps by SIGTERM"}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    error = batch_processes._failure(tmp_path, 143, True, 30.0)
    assert error == "timed out after 30 s; stopped at step 212 with its checkpoint (the batch's next run resumes it)"


def test_batch_options_and_fit_options_are_told_apart():
    argv = ["--config", "a.yaml", "--model.iterations", "3", "--config+", "b.yaml", "--seeds=0-2",
            "--trainer.precision", "bf16-mixed", "--output_dir", "o"]  # fmt: skip
    mine, fit = batch_cli.split_arguments(argv, {"config", "seeds", "output_dir"})
    assert mine == ["--seeds", "0-2", "--output_dir", "o", "--config", '["a.yaml", "b.yaml"]']
    assert fit == ["--model.iterations", "3", "--trainer.precision", "bf16-mixed"]


@pytest.mark.slow
def test_the_summary_carries_each_jobs_verdict_and_restarts(tmp_path, no_cluster):
    manifest = make_manifest(tmp_path, ["a", "b"])
    main(batch_args(manifest, tmp_path / "out", "--model.restarts", "1", "--jobs_per_device", "2"))
    for row in read_rows(tmp_path / "out" / "summary.csv"):
        metrics = json.loads((tmp_path / "out" / row["name"] / "seed0" / "metrics.json").read_text())
        assert row["status"] == "done" and row["verdict"] == metrics["verdict"]
        assert float(row["gradient_sparsity"]) == metrics["verdict_signals"]["gradient_sparsity"]
        assert row.get("sparsest", "") == ""  # one seed per image: nothing to choose between
        assert int(row["restarts"]) == metrics["restarts"] == len(metrics["attempts"]) - 1
        assert int(row["iterations"]) == 10 * (1 + metrics["restarts"])  # a restart reruns the one scale


def test_the_summary_marks_each_images_sparsest_run(tmp_path):
    rows = [
        {"name": "a", "seed": 0, "status": "done", "gradient_sparsity": 1.02},
        {"name": "a", "seed": 1, "status": "done", "gradient_sparsity": 0.97},
        {"name": "a", "seed": 2, "status": "failed"},  # unfinished: not a candidate
        {"name": "b", "seed": 0, "status": "done", "gradient_sparsity": 0.90},  # alone: no mark
        {"name": "c", "seed": 0, "status": "done", "gradient_sparsity": 0.99, "sparsest": 1},  # a stale mark
        {"name": "c", "seed": 1, "status": "done", "gradient_sparsity": "0.95"},  # another rank's CSV part: text
    ]
    batch_summary.write_summary(tmp_path / "summary.csv", rows)
    marks = {(row["name"], row["seed"]): row["sparsest"] for row in read_rows(tmp_path / "summary.csv")}
    assert marks == {("a", "0"): "0", ("a", "1"): "1", ("a", "2"): "", ("b", "0"): "", ("c", "0"): "0", ("c", "1"): "1"}
