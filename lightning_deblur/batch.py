"""``python -m lightning_deblur batch``: many images × many seeds, on many devices and nodes.

Every job (one input image, one seed) is an independent ``fit`` run in a process of its
own (``python -m lightning_deblur fit …``): a crashing job takes nothing else down, and
each gets a clean CUDA context. Nothing is ever data-parallel.

- **Jobs.** The inputs come from a manifest (``synth``'s ``manifest.csv``, or any CSV with
  the columns ``image`` and ``kernel_size``, optionally ``name`` and ``sharp``) or from a
  folder of images with one kernel size. Jobs are sorted by (input name, seed); job ``k``
  deblurs one input with ``--seed_everything k`` into ``<output_dir>/<name>/seed<k>/``
  (the TensorBoard run folder of that job: ``tensorboard --logdir <output_dir>`` lists
  the runs grouped by input).
- **Devices.** ``--devices N`` starts N worker processes (``spawn``), each pinned to one
  GPU through ``CUDA_VISIBLE_DEVICES`` (or, on CPU, one share of the cores), each running
  ``--jobs_per_device M`` jobs at once. Workers take jobs from one shared queue, so a slow
  job holds up nothing but its own slot.
- **Nodes.** Under torchrun, SLURM (``srun``) or a SLURM job array, each process takes the
  jobs ``i`` with ``i % world_size == rank`` (see :func:`cluster_rank`).
- **Resume.** A job is finished when its folder holds ``metrics.json`` (written last and
  atomically by :class:`~lightning_deblur.outputs.ResultWriter`) with status ``done``.
  Finished jobs are skipped; a job killed mid-way resumes from its checkpoint if it has
  one, any other job folder is emptied and its job run again, so failed and interrupted
  jobs are retried by running the same command again.
- **Summary.** ``<output_dir>/summary.csv``, rewritten atomically as jobs finish: one row
  per job, finished earlier or now, with its status, error, device, times and figures.
"""

from __future__ import annotations

import argparse
import csv
import io as _stdio
import json
import math
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lightning_deblur.errors import InputError
from lightning_deblur.imagefiles import atomic_write, parse_kernel_size, write_json

SUMMARY_FIELDS = [
    "name",
    "seed",
    "image",
    "sharp",
    "kernel_size",
    "status",
    "wall_time_s",
    "device",
    "error",
    "run_dir",
]
"""The first columns of ``summary.csv``; the figures of ``metrics.json`` follow (:data:`METRIC_FIELDS`)."""

METRIC_FIELDS = [
    "psnr",
    "ssim",
    "isnr",
    "aligned_psnr",
    "aligned_ssim",
    "aligned_isnr",
    "input_psnr",
    "input_ssim",
    "input_aligned_psnr",
    "final_loss",
    "iterations",
    "fit_time_s",
    "seconds_per_iteration",
    "precision",
    "verdict",
]
"""Figures taken from each job's ``metrics.json`` (``fit_time_s`` is its ``wall_time_s``:
the optimization alone, without process start-up). Other numeric keys follow, sorted."""

FORBIDDEN_FIT_OPTIONS = {
    "data": "batch sets each job's image, kernel size and sharp reference from --manifest or --images/--kernel_size",
    "seed_everything": "batch sets each job's seed; use --seeds",
    "trainer.logger": "batch puts each job's results and logs in <output_dir>/<name>/seed<k>",
    "trainer.devices": "batch runs every job on one device; use --devices and --jobs_per_device",
    "trainer.num_nodes": "batch runs every job on one device; spread nodes with torchrun or SLURM (see the README)",
    "trainer.strategy": "batch runs every job on one device (never DDP); use --devices and --jobs_per_device",
    "print_config": "run `python -m lightning_deblur fit --print_config …` to see a job's configuration",
    "ckpt_path": "batch resumes each killed job from its own checkpoint (<output_dir>/<name>/seed<k>/checkpoints)",
}
"""Fit options batch sets itself, and why they cannot be passed through."""

CLUSTER_VARIABLES = [
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS",
    "TORCHELASTIC_USE_AGENT_STORE",
    "TORCHELASTIC_ERROR_FILE",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "ROLE_NAME",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
]
"""Removed from each job's environment: a job is a single-process run, and would
otherwise take the batch's own rank for a distributed one (and, not being rank 0,
write no results)."""


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Case:
    """One input: a blurred image, its kernel size, optionally its sharp reference and true kernel.

    The true kernel (the manifest's ``kernel`` column) is passed to the jobs only by
    non-blind configurations (``model.kernel_mode: fixed``).
    """

    name: str
    image: str
    kernel_size: tuple[int, int]
    sharp: str | None = None
    kernel: str | None = None


@dataclass(frozen=True)
class Job:
    """One input with one seed; ``index`` is its place in the full sorted job list."""

    index: int
    case: Case
    seed: int

    def run_dir(self, output_dir: str | Path) -> Path:
        return Path(output_dir) / self.case.name / f"seed{self.seed}"


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,5"``, ``"3"`` or a mix (``"0-3,8"``) -> sorted distinct seeds.

    Raises:
        InputError: anything else (negative seeds, reversed ranges, empty parts).
    """
    hint = "use e.g. --seeds 0-9, --seeds 0,3,5 or --seeds 3"
    seeds: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise InputError(f"--seeds '{text}' is not a list of non-negative seeds or ranges; {hint}")
        first, last = int(bounds[0]), int(bounds[-1])
        if last < first:
            raise InputError(f"--seeds range '{part}' ends before it starts; {hint}")
        if last >= 2**32:
            raise InputError(f"seed {last} is too large (at most {2**32 - 1}); {hint}")
        seeds.update(range(first, last + 1))
    return sorted(seeds)


def parse_kernel_size_option(text: str, option: str = "--kernel_size") -> tuple[int, int]:
    """``"27"``, ``"27x31"``, ``"[27, 31]"`` or ``"27,31"`` -> ``(27, 31)``, checked (odd, at least 3)."""
    from lightning_deblur.synth import parse_kernel_size_text

    cleaned = str(text).strip().strip("[]()").replace(",", "x")
    sizes = parse_kernel_size_text(cleaned)
    if len(sizes) != 2:
        raise InputError(f"kernel size '{text}' is not one or two numbers; give {option} e.g. 27 or 27x31")
    return parse_kernel_size(tuple(sizes), option)


def _check_name(name: str, where: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(
            f"input name '{name}' ({where}) cannot be a folder name; "
            "give it a plain name without slashes or a leading dot"
        )
    return name


def cases_from_manifest(path: str | Path) -> list[Case]:
    """The inputs of a manifest (see :func:`lightning_deblur.synth.read_manifest`)."""
    from lightning_deblur.synth import read_manifest

    cases = []
    for number, row in enumerate(read_manifest(path), start=2):
        where = f"line {number} of {path}"
        if not row.get("image") or not row.get("kernel_size"):
            raise InputError(f"{where} has no image or no kernel_size; every row needs both")
        name = _check_name(row["name"], where)
        size = parse_kernel_size_option(row["kernel_size"], f"the kernel_size on {where}")
        cases.append(Case(name, row["image"], size, sharp=row.get("sharp") or None, kernel=row.get("kernel") or None))
    return _unique(cases, "give every row of the manifest its own name (the name column)")


def cases_from_folder(folder: str | Path, kernel_size: str) -> list[Case]:
    """Every image in ``folder`` (PNG, JPEG, TIFF; not recursive), all with one kernel size."""
    from lightning_deblur.synth import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--images '{folder}' is not a folder; give a folder of images, or use --manifest")
    size = parse_kernel_size_option(kernel_size)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    cases = [Case(name=_check_name(p.stem, str(p)), image=str(p.resolve()), kernel_size=size) for p in files]
    return _unique(cases, f"rename the files in {folder} or list them in a manifest with distinct names")


def _unique(cases: list[Case], fix: str) -> list[Case]:
    seen: dict[str, Case] = {}
    for case in cases:
        if case.name in seen:
            raise InputError(f"two inputs are named '{case.name}' ({seen[case.name].image}, {case.image}); {fix}")
        seen[case.name] = case
    return cases


def build_jobs(cases: list[Case], seeds: list[int]) -> list[Job]:
    """Every input with every seed, sorted by (name, seed) and numbered."""
    pairs = sorted(((case, seed) for case in cases for seed in seeds), key=lambda pair: (pair[0].name, pair[1]))
    return [Job(index, case, seed) for index, (case, seed) in enumerate(pairs)]


# ----------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Rank:
    """Which share of the jobs this process takes."""

    rank: int
    world_size: int
    source: str


def cluster_rank() -> Rank:
    """This process's rank and the number of processes sharing the jobs.

    In order of precedence:

    1. torchrun (Lightning's ``TorchElasticEnvironment``): ``RANK`` of ``WORLD_SIZE``.
    2. ``srun`` (Lightning's ``SLURMEnvironment``): ``SLURM_PROCID`` of ``SLURM_NTASKS``;
       in a job array, combined with the array index: task ``t`` of ``T`` array tasks
       (``SLURM_ARRAY_TASK_ID`` minus ``SLURM_ARRAY_TASK_MIN``, divided by
       ``SLURM_ARRAY_TASK_STEP``; ``T`` from ``SLURM_ARRAY_TASK_COUNT``, else from
       ``SLURM_ARRAY_TASK_MAX``) gives rank ``t · ntasks + procid`` of ``T · ntasks``.
    3. A SLURM job array without ``srun``: rank ``t`` of ``T``.
    4. Plain ``RANK`` and ``WORLD_SIZE`` variables (a manual split).
    5. Otherwise (Lightning's ``LightningEnvironment``): rank 0 of 1, all the jobs.

    Raises:
        InputError: a rank outside ``[0, world_size)`` or an array task outside its array.
    """
    import warnings

    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment, TorchElasticEnvironment

    env = os.environ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "srun is available but not used": batch does not need srun
        if TorchElasticEnvironment.detect():
            elastic = TorchElasticEnvironment()
            return _checked(Rank(elastic.global_rank(), elastic.world_size(), "torchrun"))
        rank, world, source = 0, 1, None
        if SLURMEnvironment.detect():
            # SLURMEnvironment's constructor refuses --ntasks without --ntasks-per-node, a rule
            # of DDP that batch does not need; its global_rank and world_size read these two.
            rank, world, source = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), "SLURM"
        array = _slurm_array(env)
        if array is not None:
            task, count = array
            rank, world = task * world + rank, count * world
            source = "SLURM array" if source is None else "SLURM array × srun"
        if source is not None:
            return _checked(Rank(rank, world, source))
        if "RANK" in env and "WORLD_SIZE" in env:
            return _checked(Rank(int(env["RANK"]), int(env["WORLD_SIZE"]), "RANK/WORLD_SIZE"))
        single = LightningEnvironment()
        return Rank(single.global_rank(), single.world_size(), "single process")


def _slurm_array(env) -> tuple[int, int] | None:
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    task_id = int(env["SLURM_ARRAY_TASK_ID"])
    first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
    step = int(env.get("SLURM_ARRAY_TASK_STEP", 1) or 1)
    if "SLURM_ARRAY_TASK_COUNT" in env:
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
    else:
        count = (int(env.get("SLURM_ARRAY_TASK_MAX", task_id)) - first) // step + 1
    task = (task_id - first) // step
    if (task_id - first) % step or not 0 <= task < count:
        raise InputError(
            f"SLURM array task {task_id} does not fit the array ({count} tasks from {first}, step {step}); "
            "submit a plain range such as --array=0-7"
        )
    return task, count


def _checked(rank: Rank) -> Rank:
    if rank.world_size < 1 or not 0 <= rank.rank < rank.world_size:
        raise InputError(
            f"rank {rank.rank} of {rank.world_size} ({rank.source}) is not a valid rank; check the launcher"
        )
    return rank


def node_share(n_jobs: int, rank: Rank) -> list[int]:
    """The job indices this process runs: ``i % world_size == rank``."""
    return [index for index in range(n_jobs) if index % rank.world_size == rank.rank]


# ----------------------------------------------------------------------------- results on disk


def read_finished(run_dir: Path) -> dict | None:
    """``metrics.json`` of a finished job, or ``None``.

    Finished means: ``metrics.json`` is there and readable, its ``status`` (when it has
    one) is ``done`` (the divergence guard writes ``failed``), and its final loss (when it
    has one) is finite.
    """
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("status", "done") != "done":
        return None
    loss = metrics.get("final_loss", 0.0)
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return None
    return metrics


def _read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def summary_row(job: Job, output_dir: Path, status: str, **values) -> dict:
    """One row of ``summary.csv``; figures come from the job's ``metrics.json`` when it is finished."""
    run_dir = job.run_dir(output_dir)
    kh, kw = job.case.kernel_size
    row = {
        "name": job.case.name,
        "seed": job.seed,
        "image": job.case.image,
        "sharp": job.case.sharp or "",
        "kernel_size": f"{kh}x{kw}",
        "status": status,
        "run_dir": str(run_dir),
    }
    if status in ("done", "skipped-done"):
        metrics = read_finished(run_dir) or {}
        record = _read_json(run_dir / "batch.json")
        row["wall_time_s"] = record.get("wall_time_s", "")
        row["device"] = record.get("device", metrics.get("device", ""))
        for key, value in metrics.items():
            if key == "wall_time_s":
                row["fit_time_s"] = value
            elif key in METRIC_FIELDS or (
                key not in ("image", "kernel_size", "device") and isinstance(value, (int, float))
            ):
                row[key] = value
    row.update({key: value for key, value in values.items() if value is not None})
    return row


def write_summary(path: Path, rows: list[dict]) -> None:
    """Write the rows as CSV, atomically; figure columns are the union over the rows."""
    extra = sorted({key for row in rows for key in row} - set(SUMMARY_FIELDS) - set(METRIC_FIELDS))
    present = {key for row in rows for key in row}
    fields = SUMMARY_FIELDS + [key for key in METRIC_FIELDS if key in present] + extra
    buffer = _stdio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
    atomic_write(path, lambda temporary: temporary.write_text(text))


def read_summary(path: Path) -> list[dict]:
    """Rows of a ``summary.csv`` (empty if there is none)."""
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


# ----------------------------------------------------------------------------- running jobs


@dataclass(frozen=True)
class Slot:
    """A device a worker process is pinned to."""

    label: str
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run jobs (picklable, for ``spawn``)."""

    output_dir: str
    fit_prefix: tuple[str, ...]
    base_env: dict
    timeout_s: float | None
    parent_pid: int
    known_kernel: bool = False


def fit_arguments(job: Job, output_dir: str | Path, fit_prefix, known_kernel: bool = False) -> list[str]:
    """``fit`` arguments of one job: the shared prefix, then what is the job's own.

    ``known_kernel``: pass the case's true kernel (``--data.kernel``), for non-blind jobs.
    """
    kh, kw = job.case.kernel_size
    options = {
        "--data.image": job.case.image,
        "--data.kernel_size": f"[{kh}, {kw}]",
        "--data.sharp": job.case.sharp or "null",  # not the config's, should it name one
        **({"--data.kernel": job.case.kernel} if known_kernel and job.case.kernel else {}),
        "--seed_everything": str(job.seed),
        "--trainer.devices": "1",
        "--trainer.num_nodes": "1",
        "--trainer.logger.init_args.save_dir": str(output_dir),
        "--trainer.logger.init_args.name": job.case.name,
        "--trainer.logger.init_args.version": f"seed{job.seed}",
    }
    return ["fit", *fit_prefix, *(part for pair in options.items() for part in pair)]


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 8192))
            lines = handle.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1][:500] if lines else ""


def run_job(job: Job, spec: RunSpec, slot: Slot, stop: threading.Event, running: dict) -> dict:
    """Run one job to its end in a ``fit`` subprocess; return its summary values.

    A job folder without ``metrics.json`` but with ``checkpoints/last.ckpt`` (a job killed
    mid-way, see :class:`~lightning_deblur.checkpointing.JobCheckpoint`) is resumed from its
    checkpoint in the same folder; should that attempt fail, the job starts over at once.
    Any other existing job folder (a failed or checkpoint-less killed run) is removed first,
    so no stale file mixes with the new results.
    """
    run_dir = job.run_dir(spec.output_dir)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    arguments = fit_arguments(job, spec.output_dir, spec.fit_prefix, spec.known_kernel)
    command = [sys.executable, "-m", "lightning_deblur", *arguments]
    env = {**spec.base_env, **slot.env}
    wall_time, resumed, error = 0.0, False, None
    if checkpoint.is_file() and not (run_dir / "metrics.json").exists():
        resumed = True
        code, timed_out, seconds = _run_fit(
            [*command, "--ckpt_path", str(checkpoint)], run_dir, env, spec, stop, running, job
        )
        wall_time += seconds
        error = _failure(run_dir, code, timed_out, spec.timeout_s)
        if error and not (stop.is_set() or timed_out or code < 0 or (run_dir / "metrics.json").exists()):
            resumed = False  # the checkpoint did not take (broken, or the options changed): start over
            error = None
        else:
            command = [*command, "--ckpt_path", str(checkpoint)]
    if not resumed:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        code, timed_out, seconds = _run_fit(command, run_dir, env, spec, stop, running, job)
        wall_time += seconds
        error = _failure(run_dir, code, timed_out, spec.timeout_s)
    wall_time = round(wall_time, 3)
    if error is None:
        record = {"wall_time_s": wall_time, "device": slot.label, "resumed": resumed, "command": command}
        write_json(run_dir / "batch.json", record)
    return {
        "index": job.index,
        "status": "failed" if error else "done",
        "error": error,
        "wall_time_s": wall_time,
        "device": slot.label,
    }


def _run_fit(command, run_dir: Path, env, spec: RunSpec, stop, running: dict, job: Job) -> tuple[int, bool, float]:
    """Run ``command`` with its output appended to ``run_dir/std{out,err}.log``.

    Returns:
        exit code (negative: killed by that signal), whether it ran past the timeout, seconds.
    """
    started = time.perf_counter()
    timed_out = False
    with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        running[job.index] = process
        try:
            while True:
                try:
                    process.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if stop.is_set() or os.getppid() != spec.parent_pid:
                    process.kill()
                elif spec.timeout_s and time.perf_counter() - started > spec.timeout_s:
                    timed_out = True
                    process.kill()
        finally:
            running.pop(job.index, None)
    return process.returncode, timed_out, time.perf_counter() - started


def _failure(run_dir: Path, code: int, timed_out: bool, timeout_s: float | None) -> str | None:
    """Why a finished ``fit`` process did not leave a finished job, or ``None`` if it did."""
    last = _last_line(run_dir / "stderr.log")
    if timed_out:
        return f"timed out after {timeout_s:g} s"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {name}" + (f" ({last})" if last else "")
    if code != 0:
        return last or f"exit code {code}"
    if read_finished(run_dir) is None:
        metrics = _read_json(run_dir / "metrics.json")
        if metrics.get("error"):
            return str(metrics["error"])
        if "final_loss" in metrics:
            return f"diverged: final loss {metrics['final_loss']}"
        return "fit ended without writing metrics.json" + (f" ({last})" if last else "")
    return None


def device_worker(slot: Slot, jobs_per_device: int, jobs, results, spec: RunSpec) -> None:
    """A worker process: ``jobs_per_device`` threads, each taking jobs from the shared queue.

    Stops (killing its running jobs) on SIGTERM or SIGINT, or when the batch process is gone.
    """
    stop = threading.Event()
    running: dict = {}

    def halt(signum, frame):
        stop.set()
        for process in list(running.values()):
            process.kill()

    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)

    def take_jobs():
        while not stop.is_set():
            if os.getppid() != spec.parent_pid:
                stop.set()
                break
            try:
                job = jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            if job is None:
                break
            try:
                result = run_job(job, spec, slot, stop, running)
            except Exception as error:  # noqa: BLE001 (e.g. the output folder cannot be written)
                result = {
                    "index": job.index,
                    "status": "failed",
                    "error": f"{type(error).__name__}: {error}",
                    "wall_time_s": None,
                    "device": slot.label,
                }
            if stop.is_set():
                break
            results.put(result)

    threads = [threading.Thread(target=take_jobs, daemon=True) for _ in range(jobs_per_device)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=0.5)


# ----------------------------------------------------------------------------- the batch


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _job_environment(threads: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in CLUSTER_VARIABLES}
    # A thread count the user set for OpenMP applies to MKL too: two different counts
    # oversubscribe the cores, which can slow a job down many times over.
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    # The jobs import this very package, also when it runs from a source checkout.
    root = str(Path(__file__).resolve().parents[1])
    if (Path(root) / "pyproject.toml").is_file():
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    return env


def resolve_fit_config(fit_prefix: list[str], job: Job, output_dir: Path) -> dict:
    """Parse a job's ``fit`` arguments (``--print_config``) to catch bad options before any job runs."""
    from contextlib import redirect_stderr, redirect_stdout

    import yaml

    from lightning_deblur.cli import DeblurCLI, parse_error_line

    out, err = _stdio.StringIO(), _stdio.StringIO()
    reason = None
    try:
        with redirect_stdout(out), redirect_stderr(err):
            DeblurCLI(args=[*fit_arguments(job, output_dir, fit_prefix), "--print_config"])
    except argparse.ArgumentError as error:  # the parser raises its errors (DeblurCLI's parser_kwargs)
        reason = parse_error_line(str(error))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if code:
            lines = [line.strip() for line in err.getvalue().splitlines() if line.strip()]
            reason = ([line for line in lines if "error" in line.lower()] or lines or [f"exit code {code}"])[-1]
    if reason is not None:
        raise InputError(
            f"the fit options given to batch do not parse ({reason}); "
            "check them with `python -m lightning_deblur fit --print_config …`"
        )
    return yaml.safe_load(out.getvalue()) or {}


def plan_slots(devices: str, jobs_per_device: int, accelerator: str, concurrency_cap: int) -> tuple[list[Slot], int]:
    """The worker devices and the CPU threads of each job.

    GPU accelerators (``gpu``, ``cuda``, or ``auto`` with a CUDA GPU visible): one worker per
    GPU, ``auto`` meaning every visible GPU. Otherwise CPU workers, ``auto`` meaning one (a
    job already uses every core through intra-op threads); ``N`` CPU workers share the
    cores, each job getting ``cores // (workers · jobs_per_device)`` threads (at least 1).
    """
    import torch

    if jobs_per_device < 1:
        raise InputError(f"--jobs_per_device {jobs_per_device} must be at least 1")
    accelerator = str(accelerator or "auto").lower()
    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise InputError(
            f"trainer.accelerator is {accelerator} but no CUDA GPU is visible; "
            "use --trainer.accelerator cpu or a GPU machine"
        )
    if devices == "auto":
        count = gpus or 1
    else:
        try:
            count = int(devices)
        except ValueError:
            raise InputError(f"--devices '{devices}' is not a number or auto; give e.g. --devices 4") from None
        if count < 1:
            raise InputError(f"--devices {count} must be at least 1 (or auto)")
        if gpus and count > gpus:
            raise InputError(f"--devices {count} but only {gpus} CUDA GPUs are visible; use --devices {gpus} or auto")
    if gpus:
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        ids = visible[:gpus] if len(visible) >= gpus else [str(i) for i in range(gpus)]
        slots = [Slot(f"gpu{ids[i]}", {"CUDA_VISIBLE_DEVICES": ids[i]}) for i in range(count)]
    else:
        hide = {"CUDA_VISIBLE_DEVICES": ""} if accelerator == "cpu" else {}
        slots = [Slot(f"cpu{i}", hide) for i in range(count)]
    concurrent = max(1, min(count * jobs_per_device, concurrency_cap))
    return slots, max(1, _cpu_cores() // concurrent)


class BatchArgumentParser(argparse.ArgumentParser):
    """argparse that reports mistakes as :class:`InputError` (one line, exit code 2)."""

    def error(self, message):
        raise InputError(f"{message}; see `python -m lightning_deblur batch --help`")


def make_parser() -> BatchArgumentParser:
    parser = BatchArgumentParser(
        prog="python -m lightning_deblur batch",
        allow_abbrev=False,
        description=(
            "Deblur many images with many seeds: one independent fit job per (image, seed), spread over devices "
            "and nodes, resumable. Options not listed here (e.g. --model.iterations 20, --trainer.precision "
            "bf16-mixed) are passed to every job's fit."
        ),
    )
    parser.add_argument("--config", action="append", default=[], help="fit config file(s), e.g. configs/improved.yaml")
    parser.add_argument("--manifest", help="CSV with columns image, kernel_size (27 or 27x31), optional name, sharp")
    parser.add_argument("--images", help="a folder of blurred images (instead of --manifest)")
    parser.add_argument("--kernel_size", help="kernel size of every image in --images: 27 or 27x31")
    parser.add_argument("--output_dir", required=True, help="jobs go to OUTPUT_DIR/<name>/seed<k>/")
    parser.add_argument("--seeds", default="0", help="seeds of every image: 0-9, 0,3,5 or 3 (default 0)")
    parser.add_argument("--devices", default="auto", help="worker devices: N or auto (every GPU, or 1 CPU worker)")
    parser.add_argument("--jobs_per_device", type=int, default=1, help="jobs run at once on each device (default 1)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which a job is killed and failed")
    return parser


def _check_passthrough(passthrough: list[str]) -> None:
    for argument in passthrough:
        if not argument.startswith("--"):
            continue
        key = argument[2:].split("=", 1)[0]
        for option, reason in FORBIDDEN_FIT_OPTIONS.items():
            if key == option or key.startswith(option + "."):
                raise InputError(f"--{key} cannot be given to batch: {reason}")


def command(argv: list[str]) -> None:
    """``python -m lightning_deblur batch …`` (exit code 1 when some job failed)."""
    options, passthrough = make_parser().parse_known_args(argv)
    _check_passthrough(passthrough)
    if bool(options.manifest) == bool(options.images):
        raise InputError("give either --manifest cases.csv or --images FOLDER --kernel_size 27 (one of the two)")
    if options.images and not options.kernel_size:
        raise InputError("--images needs --kernel_size (e.g. --kernel_size 27 or 27x31); or use a --manifest")
    if options.manifest and options.kernel_size:
        raise InputError("--kernel_size goes with --images; with --manifest, each row gives its kernel_size")
    if options.devices != "auto" and not (options.devices.isdigit() and int(options.devices) >= 1):
        raise InputError(
            f"--devices '{options.devices}' is not a number or auto; give e.g. --devices 4 or --devices auto"
        )
    if options.jobs_per_device < 1:
        raise InputError(f"--jobs_per_device {options.jobs_per_device} must be at least 1")
    if options.timeout is not None and options.timeout <= 0:
        raise InputError(f"--timeout {options.timeout:g} must be positive (seconds)")
    seeds = parse_seeds(options.seeds)
    cases = (
        cases_from_manifest(options.manifest)
        if options.manifest
        else cases_from_folder(options.images, options.kernel_size)
    )
    if not cases:
        raise InputError(f"no inputs in {options.manifest or options.images}; nothing to do")
    for config in options.config:
        if not Path(config).is_file():
            raise InputError(f"config file '{config}' not found; check the path given to --config")
    fit_prefix = [arg for config in options.config for arg in ("--config", str(Path(config).resolve()))]
    # A job's stdout is a file (stdout.log), so its progress comes as a plain line every
    # 2 % of the steps (lightning_deblur/progress.py), a few kilobytes per job.
    fit_prefix += passthrough
    output_dir = Path(options.output_dir).resolve()
    run_batch(
        build_jobs(cases, seeds), output_dir, fit_prefix, options.devices, options.jobs_per_device, options.timeout
    )


def run_batch(
    jobs: list[Job],
    output_dir: Path,
    fit_prefix: list[str],
    devices: str = "auto",
    jobs_per_device: int = 1,
    timeout_s: float | None = None,
) -> list[dict]:
    """Run this process's share of ``jobs``; return the summary rows of that share."""
    from tqdm import tqdm

    rank = cluster_rank()
    share = [jobs[i] for i in node_share(len(jobs), rank)]
    fit_config = resolve_fit_config(fit_prefix, jobs[0], output_dir)
    logger = (fit_config.get("trainer") or {}).get("logger")
    if not isinstance(logger, dict) or "TensorBoardLogger" not in str(logger.get("class_path")):
        raise InputError(
            "batch keeps each job in its TensorBoard run folder, but the configuration replaces the logger; "
            "remove trainer.logger from the config"
        )
    known_kernel = (fit_config.get("model") or {}).get("kernel_mode") == "fixed"
    if known_kernel:
        missing = [job.case.name for job in share if not job.case.kernel]
        if missing:
            raise InputError(
                f"the configuration is non-blind (model.kernel_mode: fixed) but '{missing[0]}' has no true kernel; "
                "give the manifest a kernel column (synth writes one)"
            )
    rows: dict[int, dict] = {}
    todo: list[Job] = []
    for job in share:
        if read_finished(job.run_dir(output_dir)) is not None:
            rows[job.index] = summary_row(job, output_dir, "skipped-done")
        else:
            rows[job.index] = summary_row(job, output_dir, "pending")
            todo.append(job)
    if todo:  # checked before anything is written
        accelerator = (fit_config.get("trainer") or {}).get("accelerator")
        slots, threads = plan_slots(devices, jobs_per_device, accelerator, len(todo))

    def ordered() -> list[dict]:
        return [rows[job.index] for job in share]

    output_dir.mkdir(parents=True, exist_ok=True)
    parts = rank.world_size > 1
    own_summary = output_dir / (f"summary.part{rank.rank}of{rank.world_size}.csv" if parts else "summary.csv")
    write_summary(own_summary, ordered())
    where = f"rank {rank.rank} of {rank.world_size} ({rank.source}): " if parts else ""
    print(
        f"batch: {where}{len(share)} jobs, {len(share) - len(todo)} finished before, {len(todo)} to run; "
        f"results in {output_dir}",
        flush=True,
    )

    failures = 0
    if todo:
        slots = slots[: len(todo)]
        spec = RunSpec(
            str(output_dir), tuple(fit_prefix), _job_environment(threads), timeout_s, os.getpid(), known_kernel
        )
        by_index = {job.index: job for job in todo}
        context = multiprocessing.get_context("spawn")
        job_queue, result_queue = context.Queue(), context.Queue()
        job_queue.cancel_join_thread()  # an interrupted batch exits without waiting to hand out every job
        for job in todo:
            job_queue.put(job)
        for _ in range(len(slots) * jobs_per_device):
            job_queue.put(None)
        workers = [
            context.Process(
                target=device_worker,
                args=(slot, jobs_per_device, job_queue, result_queue, spec),
                name=f"batch-{slot.label}",
                daemon=True,
            )
            for slot in slots
        ]
        previous_handler = _raise_on_sigterm()
        bar = tqdm(total=len(share), initial=len(share) - len(todo), desc="batch", unit="job", dynamic_ncols=True)
        bar.set_postfix(failed=0)
        outstanding = set(by_index)
        last_write = time.monotonic()
        try:
            for worker in workers:
                worker.start()
            while outstanding:
                try:
                    result = result_queue.get(timeout=1.0)
                except queue.Empty:
                    if any(worker.is_alive() for worker in workers):
                        continue
                    try:  # the workers are gone: what they sent last may still be queued
                        result = result_queue.get(timeout=1.0)
                    except queue.Empty:
                        for index in outstanding:
                            rows[index] = summary_row(
                                by_index[index],
                                output_dir,
                                "failed",
                                error="its worker process ended before the job did",
                            )
                            failures += 1
                        outstanding.clear()
                        break
                index = result.pop("index")
                if index not in outstanding:
                    continue
                outstanding.discard(index)
                rows[index] = summary_row(by_index[index], output_dir, result.pop("status"), **result)
                if rows[index]["status"] == "failed":
                    failures += 1
                    bar.write(
                        f"failed: {by_index[index].case.name} seed {by_index[index].seed}: {rows[index]['error']}"
                    )
                bar.set_postfix(failed=failures, refresh=False)
                bar.update(1)
                if time.monotonic() - last_write > 2.0 or not outstanding:
                    write_summary(own_summary, ordered())
                    last_write = time.monotonic()
        except (KeyboardInterrupt, SystemExit):
            print("batch: interrupted; run the same command again to resume", file=sys.stderr, flush=True)
            raise
        finally:
            bar.close()
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()  # its jobs are killed with it
            for worker in workers:
                worker.join(timeout=10)
                if worker.is_alive():
                    worker.kill()
            _restore_sigterm(previous_handler)
            write_summary(own_summary, ordered())

    if parts:
        write_summary(output_dir / "summary.csv", merged_rows(jobs, rows, output_dir, rank))
    done = sum(row["status"] == "done" for row in rows.values())
    print(
        f"batch: {done} done, {len(share) - len(todo)} finished before, {failures} failed; "
        f"summary in {output_dir / 'summary.csv'}",
        flush=True,
    )
    if failures:
        print(
            f"batch: {failures} of {len(share)} jobs failed (errors in the summary and in each job's stderr.log); "
            "run the same command again to retry them",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1)
    return ordered()


def merged_rows(jobs: list[Job], own: dict[int, dict], output_dir: Path, rank: Rank) -> list[dict]:
    """Rows of every job: this process's, the other ranks' summary parts, then what is on disk."""
    others: dict[tuple[str, str], dict] = {}
    for other in range(rank.world_size):
        if other != rank.rank:
            for row in read_summary(output_dir / f"summary.part{other}of{rank.world_size}.csv"):
                others[(row.get("name"), row.get("seed"))] = row
    rows = []
    for job in jobs:
        if job.index in own:
            rows.append(own[job.index])
            continue
        row = others.get((job.case.name, str(job.seed)))
        if row is None or row.get("status") == "pending":
            row = summary_row(job, output_dir, "done" if read_finished(job.run_dir(output_dir)) else "pending")
        rows.append(row)
    return rows


def _raise_on_sigterm():
    """Turn SIGTERM into an exception in the batch process, so its workers and jobs are stopped."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
