"""``python -m lightning_deblur batch``: many images × many seeds, on many devices and nodes.

Every job (one input image, one seed) is an independent ``fit`` run in a process of its
own (``python -m lightning_deblur fit …``): a crashing job takes nothing else down, and
each gets a clean CUDA context. Nothing is ever data-parallel; several jobs share a
device with ``--jobs_per_device``.

- **Jobs.** The inputs are the rows of a manifest (:mod:`lightning_deblur.manifest`) or
  the images of a folder with one kernel size. Jobs are sorted by (input name, seed); job
  ``k`` deblurs one input with ``--seed_everything k`` into ``<output_dir>/<name>/seed<k>/``
  (the TensorBoard run folder of that job: ``tensorboard --logdir <output_dir>`` lists
  the runs grouped by input).
- **Devices.** ``--devices N`` gives N device slots, each a GPU (``CUDA_VISIBLE_DEVICES``)
  or one share of the CPU cores, each running ``--jobs_per_device M`` jobs at once. One
  pool of ``N·M`` threads runs the jobs, each thread one ``fit`` process at a time on a
  free slot, so a slow job holds up nothing but its own slot.
- **Nodes.** Under torchrun, SLURM (``srun``) or a SLURM job array, each process takes the
  jobs ``i`` with ``i % world_size == rank`` (:mod:`lightning_deblur.ranks`).
- **Resume.** A job is finished when its folder holds ``metrics.json`` (written last and
  atomically by :class:`~lightning_deblur.outputs.ResultWriter`) with status ``done``.
  Finished jobs are skipped; a job killed or stopped mid-way (a time budget, a signal)
  resumes from its checkpoint if it has one (a checkpoint that does not load: over again,
  said on stderr), any other job folder is emptied and its job run again, so failed and
  interrupted jobs are retried by running the same command again.
- **Summary.** ``<output_dir>/summary.csv``, rewritten atomically as jobs finish: one row
  per job, finished earlier or now, with its status, error, device, times and figures.

The steps of :func:`run_batch`: :func:`check_fit_options` (before anything runs),
:func:`scan_finished` (resume), :func:`plan_slots` (devices), :func:`run_jobs` (the
pool), :func:`report` (summary and exit code).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from jsonargparse import ArgumentParser

from lightning_deblur.errors import InputError
from lightning_deblur.imagefiles import check_writable_folder, write_csv, write_json
from lightning_deblur.manifest import ManifestRow, read_manifest, rows_from_folder
from lightning_deblur.ranks import Rank, cluster_rank, node_share, without_cluster_variables

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
    "gradient_sparsity",
    "sparsest",
    "restarts",
]
"""Figures taken from each job's ``metrics.json`` (``fit_time_s`` is its ``wall_time_s``:
the optimization alone, without process start-up; ``gradient_sparsity`` is in its
``verdict_signals``), and ``sparsest`` (:func:`mark_sparsest`). Other numeric keys follow, sorted."""

FINISHED_STATUSES = ("done", "skipped-done")
"""Summary statuses of a finished job (``skipped-done``: finished by an earlier run of the batch)."""

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

# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class BatchJob:
    """One input with one seed; ``index`` is its place in the full sorted job list."""

    index: int
    case: ManifestRow
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


def build_jobs(cases: list[ManifestRow], seeds: list[int]) -> list[BatchJob]:
    """Every input with every seed, sorted by (name, seed) and numbered."""
    pairs = sorted(((case, seed) for case in cases for seed in seeds), key=lambda pair: (pair[0].name, pair[1]))
    return [BatchJob(index, case, seed) for index, (case, seed) in enumerate(pairs)]


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


def summary_row(job: BatchJob, output_dir: Path, status: str, **values) -> dict:
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
    if status in FINISHED_STATUSES:
        metrics = read_finished(run_dir) or {}
        record = _read_json(run_dir / "batch.json")
        row["wall_time_s"] = record.get("wall_time_s", "")
        row["device"] = record.get("device", metrics.get("device", ""))
        for key, value in metrics.items():
            if key == "wall_time_s":
                row["fit_time_s"] = value
            elif key == "verdict_signals" and isinstance(value, dict) and "gradient_sparsity" in value:
                row["gradient_sparsity"] = value["gradient_sparsity"]
            elif key in METRIC_FIELDS or (
                key not in ("image", "kernel_size", "device") and isinstance(value, (int, float))
            ):
                row[key] = value
    row.update({key: value for key, value in values.items() if value is not None})
    return row


def mark_sparsest(rows: list[dict]) -> None:
    """Among each image's finished runs (two or more with a ``gradient_sparsity``), mark the
    one with the lowest sparsity ``sparsest = 1`` and the others 0: the run to keep when
    the sharp image is unknown (lightning_deblur.verdict; docs/RESULTS.md, "Choosing
    among finished runs"). Images with fewer such runs get no mark. Other ranks' rows come
    from their CSV parts, so the values may be text."""
    by_image: dict[str, list[tuple[float, dict]]] = {}
    for row in rows:
        row.pop("sparsest", None)
        try:
            sparsity = float(row.get("gradient_sparsity", ""))
        except (TypeError, ValueError):
            continue
        if math.isfinite(sparsity):
            by_image.setdefault(row["name"], []).append((sparsity, row))
    for runs in by_image.values():
        if len(runs) > 1:
            keep = min(runs, key=lambda run: run[0])[1]
            for _, row in runs:
                row["sparsest"] = int(row is keep)


def write_summary(path: Path, rows: list[dict]) -> None:
    """Write the rows as CSV, atomically (the sparsest run of each image marked); figure
    columns are the union over the rows."""
    mark_sparsest(rows)
    present = {key for row in rows for key in row}
    extra = sorted(present - set(SUMMARY_FIELDS) - set(METRIC_FIELDS))
    write_csv(path, SUMMARY_FIELDS + [key for key in METRIC_FIELDS if key in present] + extra, rows)


def read_summary(path: Path) -> list[dict]:
    """Rows of a ``summary.csv`` (empty if there is none)."""
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


# ----------------------------------------------------------------------------- running jobs


def fit_arguments(job: BatchJob, output_dir: str | Path, fit_prefix, known_kernel: bool = False) -> list[str]:
    """``fit`` arguments of one job: the shared prefix, then what is the job's own.

    ``known_kernel``: pass the case's true kernel (``--data.kernel``), for non-blind jobs.
    """
    kh, kw = job.case.kernel_size
    # The name goes into the run folder through save_dir, never as a value of its own: fit
    # reads an option value `null` as None and one starting with `-` as an option. The
    # absolute folders keep every value a plain path (a relative "null" would parse as None too).
    folder = Path(output_dir).absolute() / job.case.name
    options = {
        "--data.image": job.case.image,
        "--data.kernel_size": f"[{kh}, {kw}]",
        "--data.sharp": job.case.sharp or "null",  # not the config's, should it name one
        **({"--data.kernel": job.case.kernel} if known_kernel and job.case.kernel else {}),
        "--seed_everything": str(job.seed),
        "--trainer.devices": "1",
        "--trainer.num_nodes": "1",
        "--trainer.logger.init_args.save_dir": str(folder),
        "--trainer.logger.init_args.name": "",
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


@dataclass(frozen=True)
class Slot:
    """A device jobs run on: its label in the summary and the environment that pins a job to it."""

    label: str
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """What every job of one batch shares."""

    output_dir: str
    fit_prefix: tuple[str, ...]
    base_env: dict
    timeout_s: float | None
    known_kernel: bool = False


class Stopped(Exception):
    """The batch is stopping (SIGTERM, Ctrl-C): no job may start."""


class RunningProcesses:
    """The ``fit`` processes running now, so that stopping the batch can kill them all.

    Starting and stopping share one lock: a process is either started before the stop
    (and killed by it) or not started at all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen] = set()
        self.stopped = False

    def start(self, command: list[str], **popen_options) -> subprocess.Popen:
        with self._lock:
            if self.stopped:
                raise Stopped
            process = subprocess.Popen(command, preexec_fn=_die_with_the_batch, **popen_options)
            self._processes.add(process)
            return process

    def done(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(process)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for process in self._processes:
                process.kill()


def _die_with_the_batch() -> None:
    """Run in the job process before ``fit`` starts (Linux): the kernel kills the job when
    the thread that started it ends. That thread waits for the job, so it ends before the
    job only when the whole batch dies (a crash, SIGKILL): no job runs on, orphaned."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1
_PRCTL = None
if sys.platform.startswith("linux"):
    import ctypes

    # Looked up here, not in the forked child: a child of a threaded process should only
    # make plain system calls before it execs.
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def run_fit(command: list[str], run_dir: Path, env: dict, timeout_s: float | None, running: RunningProcesses):
    """Run ``command`` with its output appended to ``run_dir/std{out,err}.log``.

    Returns:
        ``(exit code, timed out, seconds)``; a negative exit code means killed by that signal.

    Raises:
        Stopped: the batch is stopping (before the start, or the job was killed by the stop).
    """
    started = time.perf_counter()
    timed_out = False
    with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
        process = running.start(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()
            process.wait()
        finally:
            running.done(process)
    if running.stopped:
        raise Stopped
    return process.returncode, timed_out, time.perf_counter() - started


def resume_or_start_over(
    command: list[str],
    folder: Path,
    resumable: bool,
    env: dict[str, str],
    spec: RunSpec,
    running: RunningProcesses,
) -> tuple[list[str], int, bool, float, bool]:
    """Run a ``fit`` process (``command``, writing into ``folder``) to its end: from
    ``folder``'s checkpoint when ``resumable``, and over again at once, in the emptied
    folder, when there is none or the resumed process did not take (it exited by itself
    without writing ``metrics.json``: a broken checkpoint, or options that changed since;
    said on stderr).

    Returns:
        the command that ran last, its exit code, whether it timed out, the seconds of
        every attempt together, and whether the run was resumed.

    Raises:
        Stopped: the batch is stopping; the folders are left as they are, to resume.
    """
    wall_time = 0.0
    if resumable:
        resume = [*command, "--ckpt_path", str(folder / "checkpoints" / "last.ckpt")]
        before = metrics_file_state(folder)
        code, timed_out, seconds = run_fit(resume, folder, env, spec.timeout_s, running)
        wall_time += seconds
        if timed_out or code < 0 or before != metrics_file_state(folder):
            return resume, code, timed_out, wall_time, True
        reason = _last_line(folder / "stderr.log") or f"exit code {code}"
        print(f"{folder}: the resume from its checkpoint did not take ({reason}); starting it over", file=sys.stderr)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    code, timed_out, seconds = run_fit(command, folder, env, spec.timeout_s, running)
    return command, code, timed_out, wall_time + seconds, False


def metrics_file_state(run_dir: Path) -> tuple[int, int] | None:
    """``(inode, mtime in ns)`` of the run's ``metrics.json``, or ``None`` without one: it
    changes whenever a process writes the file (atomically: a new inode)."""
    try:
        stat = (run_dir / "metrics.json").stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def resumable_run(run_dir: Path) -> bool:
    """Whether a job folder's run resumes from its checkpoint: it has ``checkpoints/last.ckpt``
    and no ``metrics.json``, or one that says ``stopped`` (a time budget, a signal)."""
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return False
    return metrics_file_state(run_dir) is None or _read_json(run_dir / "metrics.json").get("status") == "stopped"


def run_job(job: BatchJob, spec: RunSpec, slot: Slot, running: RunningProcesses) -> dict:
    """Run one job to its end in a ``fit`` subprocess; return its summary values.

    A job folder with ``checkpoints/last.ckpt`` and no ``metrics.json`` (a job killed
    mid-way, see :class:`~lightning_deblur.checkpointing.JobCheckpoint`) or one that says
    ``stopped`` (a time budget, a signal) is resumed from its checkpoint in the same folder;
    should that attempt fail (a corrupt checkpoint), the job starts over at once.
    Any other existing job folder (a failed or checkpoint-less killed run) is removed first,
    so no stale file mixes with the new results.

    Raises:
        Stopped: the batch is stopping; the job folder is left as it is, to resume.
    """
    run_dir = job.run_dir(spec.output_dir)
    arguments = fit_arguments(job, spec.output_dir, spec.fit_prefix, spec.known_kernel)
    command = [sys.executable, "-m", "lightning_deblur", *arguments]
    # A failed run keeps its checkpoint but starts over: its metrics.json says how it ended.
    resumable = resumable_run(run_dir)
    command, code, timed_out, wall_time, resumed = resume_or_start_over(
        command, run_dir, resumable, {**spec.base_env, **slot.env}, spec, running
    )
    error = _failure(run_dir, code, timed_out, spec.timeout_s)
    wall_time = round(wall_time, 3)
    if error is None:
        record = {"wall_time_s": wall_time, "device": slot.label, "resumed": resumed, "command": command}
        write_json(run_dir / "batch.json", record)
    return {"status": "failed" if error else "done", "error": error, "wall_time_s": wall_time, "device": slot.label}


def run_jobs(
    todo: list,
    slots: list[Slot],
    jobs_per_device: int,
    spec: RunSpec,
    on_result: Callable[[BatchJob, dict], None],
    run: Callable[[BatchJob, RunSpec, Slot, RunningProcesses], dict] = run_job,
) -> None:
    """Run ``todo`` on ``slots``, at most ``jobs_per_device`` at once on each; call
    ``on_result(job, values)`` in this thread as each job ends (``values``: status, error,
    wall time, device; a failure should ``run`` raise).

    A pool of threads, each running one job process at a time: a thread takes a free slot
    (slots are handed out in turn, so fewer jobs than places still use every device), runs
    the job, and gives the slot back. An exception here (SIGTERM turned into SystemExit,
    Ctrl-C) kills the running jobs, drops the waiting ones and propagates once every
    thread has returned.
    """
    free: queue.SimpleQueue[Slot] = queue.SimpleQueue()
    for _ in range(jobs_per_device):
        for slot in slots:
            free.put(slot)
    running = RunningProcesses()

    def work(job: BatchJob) -> dict:
        slot = free.get()  # never waits: the pool has no more threads than places
        try:
            return run(job, spec, slot, running)
        except Stopped:
            raise
        except Exception as error:  # noqa: BLE001 (e.g. the output folder cannot be written)
            return {"status": "failed", "error": f"{type(error).__name__}: {error}", "wall_time_s": None,
                    "device": slot.label}  # fmt: skip
        finally:
            free.put(slot)

    pool = ThreadPoolExecutor(max_workers=min(len(todo), len(slots) * jobs_per_device), thread_name_prefix="batch")
    futures = {pool.submit(work, job): job for job in todo}
    reported: set = set()
    try:
        for future in as_completed(futures):
            on_result(futures[future], future.result())
            reported.add(future)
    except BaseException:
        # Jobs that ended before the interruption but were not reported yet (their thread
        # had already handed the slot on) are reported now, so the summary calls them done;
        # those still running are killed first and are not.
        ended = [f for f in futures if f.done() and f not in reported]
        running.stop()
        for future in ended:
            if not future.cancelled() and future.exception() is None:
                on_result(futures[future], future.result())
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- devices


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Jobs at once on each GPU when --jobs_per_device is auto. A job's step is bound by kernel
# launches and host work, so concurrent jobs fill the GPU: on an H200 with CUDA MPS, 1, 2
# and 4 fast jobs (96×96) at a time took 44, 44 and 48 s each (docs/RESULTS.md, "Third GPU
# day"). More than 4 was measured only with improved jobs (15 at a time: 150–215 s each
# against 223 s alone), so 4 is the default and larger counts are the user's choice.
GPU_JOBS_PER_DEVICE = 4


class SlotPlan(NamedTuple):
    """Where the jobs run: ``slots`` (one per device), ``threads`` (CPU threads of each job)
    and ``jobs_per_device`` (jobs at once on each slot, ``auto`` resolved)."""

    slots: list[Slot]
    threads: int
    jobs_per_device: int


def plan_slots(devices: str, jobs_per_device: int | str, accelerator: str, concurrency_cap: int) -> SlotPlan:
    """The device slots, the CPU threads of each job and the jobs at once on each slot.

    GPU accelerators (``gpu``, ``cuda``, or ``auto`` with a CUDA GPU visible): one slot per
    GPU, its jobs seeing that GPU alone (``CUDA_VISIBLE_DEVICES``), ``auto`` meaning every
    visible GPU. Otherwise CPU slots, ``auto`` meaning one (a job already uses every core
    through intra-op threads); ``N`` CPU slots share the cores, each job getting
    ``cores // (slots · jobs_per_device)`` threads (at least 1); ``concurrency_cap`` (the
    number of jobs to run) caps the jobs counted as running at once. ``jobs_per_device``
    ``auto`` is :data:`GPU_JOBS_PER_DEVICE` on GPU slots and 1 on CPU slots.
    """
    import torch

    if jobs_per_device != "auto" and (not isinstance(jobs_per_device, int) or jobs_per_device < 1):
        raise InputError(f"--jobs_per_device {jobs_per_device} must be at least 1 (or auto)")
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
    if jobs_per_device == "auto":
        jobs_per_device = GPU_JOBS_PER_DEVICE if gpus else 1
    concurrent = max(1, min(count * jobs_per_device, concurrency_cap))
    return SlotPlan(slots, max(1, _cpu_cores() // concurrent), jobs_per_device)


# ----------------------------------------------------------------------------- the batch


def _job_environment(threads: int) -> dict:
    env = without_cluster_variables(dict(os.environ))
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


@dataclass(frozen=True)
class FitSettings:
    """What batch needs to know of the jobs' configuration.

    Attributes:
        known_kernel: non-blind (``model.kernel_mode: fixed``): jobs get the true kernel.
        accelerator: ``trainer.accelerator`` (``auto``, ``cpu``, ``gpu``, …).
    """

    known_kernel: bool
    accelerator: str


def check_fit_options(fit_prefix: list[str], example: BatchJob, share: list[BatchJob], output_dir: Path) -> FitSettings:
    """Parse the ``fit`` arguments of job ``example`` with ``fit``'s own parser (nothing runs, no
    file is read), so that a bad option stops the batch before any job starts.

    Raises:
        InputError: options that do not parse, a replaced logger, or a non-blind
            configuration with an input that has no true kernel.
    """
    # Lazy, and the one import from the command line module: only fit's parser knows
    # what fit accepts, and importing it costs Lightning's start-up.
    from lightning_deblur.cli import parse_error_line, parse_fit_arguments

    try:
        config = parse_fit_arguments(fit_arguments(example, output_dir, fit_prefix)).as_dict()
    except argparse.ArgumentError as error:
        raise InputError(
            f"the fit options given to batch do not parse ({parse_error_line(str(error))}); "
            "check them with `python -m lightning_deblur fit --print_config …`"
        ) from None
    trainer, model = config.get("trainer") or {}, config.get("model") or {}
    logger = trainer.get("logger")
    if not isinstance(logger, dict) or "TensorBoardLogger" not in str(logger.get("class_path")):
        raise InputError(
            "batch keeps each job in its TensorBoard run folder, but the configuration replaces the logger; "
            "remove trainer.logger from the config"
        )
    known_kernel = model.get("kernel_mode") == "fixed"
    missing = [job.case.name for job in share if known_kernel and not job.case.kernel]
    if missing:
        raise InputError(
            f"the configuration is non-blind (model.kernel_mode: fixed) but '{missing[0]}' has no true kernel; "
            "give the manifest a kernel column (synth writes one)"
        )
    return FitSettings(known_kernel, str(trainer.get("accelerator") or "auto"))


def scan_finished(share: list[BatchJob], output_dir: Path) -> tuple[dict[int, dict], list[BatchJob]]:
    """What earlier runs finished (resume): every job's first summary row by job index
    (``skipped-done`` or ``pending``) and the jobs still to run, in order."""
    rows: dict[int, dict] = {}
    todo: list[BatchJob] = []
    for job in share:
        finished = read_finished(job.run_dir(output_dir)) is not None
        rows[job.index] = summary_row(job, output_dir, "skipped-done" if finished else "pending")
        if not finished:
            todo.append(job)
    return rows, todo


def run_batch(
    jobs: list[BatchJob],
    output_dir: Path,
    fit_prefix: list[str],
    devices: str = "auto",
    jobs_per_device: int | str = "auto",
    timeout_s: float | None = None,
) -> list[dict]:
    """Run this process's share of ``jobs``; return the summary rows of that share.

    Raises:
        InputError: bad options, found before anything is written.
        SystemExit: 1 when a job failed; ``128 + signal`` on SIGTERM (running jobs killed,
            finished ones kept, the batch resumable).
    """
    from tqdm import tqdm

    rank = cluster_rank()
    share = [jobs[i] for i in node_share(len(jobs), rank)]
    settings = check_fit_options(fit_prefix, jobs[0], share, output_dir)
    rows, todo = scan_finished(share, output_dir)
    if todo:  # checked before anything is written
        slots, threads, jobs_per_device = plan_slots(devices, jobs_per_device, settings.accelerator, len(todo))

    parts = rank.world_size > 1
    own_summary = output_dir / (f"summary.part{rank.rank}of{rank.world_size}.csv" if parts else "summary.csv")
    check_writable_folder(output_dir, "--output_dir")
    write_summary(own_summary, [rows[job.index] for job in share])
    where = f"rank {rank.rank} of {rank.world_size} ({rank.source}): " if parts else ""
    print(
        f"batch: {where}{len(share)} jobs, {len(share) - len(todo)} finished before, {len(todo)} to run; "
        f"results in {output_dir}",
        flush=True,
    )
    failures = 0
    if todo:
        spec = RunSpec(str(output_dir), tuple(fit_prefix), _job_environment(threads), timeout_s, settings.known_kernel)
        bar = tqdm(total=len(share), initial=len(share) - len(todo), desc="batch", unit="job", dynamic_ncols=True)
        bar.set_postfix(failed=0)
        last_write = time.monotonic()

        def record(job: BatchJob, values: dict) -> None:
            nonlocal failures, last_write
            rows[job.index] = summary_row(job, output_dir, **values)
            if values["status"] == "failed":
                failures += 1
                bar.write(f"failed: {job.case.name} seed {job.seed}: {values['error']}")
            bar.set_postfix(failed=failures, refresh=False)
            bar.update(1)
            if time.monotonic() - last_write > 2.0:  # many quick jobs: not a rewrite each
                write_summary(own_summary, [rows[job.index] for job in share])
                last_write = time.monotonic()

        previous_handler = _raise_on_sigterm()
        try:
            run_jobs(todo, slots, jobs_per_device, spec, record)
        except (KeyboardInterrupt, SystemExit):
            print("batch: interrupted; run the same command again to resume", file=sys.stderr, flush=True)
            raise
        finally:
            bar.close()
            _restore_sigterm(previous_handler)
            write_summary(own_summary, [rows[job.index] for job in share])
    return report(jobs, share, rows, output_dir, rank, finished_before=len(share) - len(todo), failures=failures)


def report(
    jobs: list[BatchJob], share: list[BatchJob], rows: dict[int, dict], output_dir: Path, rank: Rank,
    finished_before: int, failures: int,
) -> list[dict]:  # fmt: skip
    """Write ``summary.csv`` over every rank's jobs (several ranks), print the outcome, and
    exit with code 1 when a job failed; else return the summary rows of ``share``."""
    if rank.world_size > 1:
        write_summary(output_dir / "summary.csv", merged_rows(jobs, rows, output_dir, rank))
    done = sum(row["status"] == "done" for row in rows.values())
    print(
        f"batch: {done} done, {finished_before} finished before, {failures} failed; "
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
    return [rows[job.index] for job in share]


def merged_rows(jobs: list[BatchJob], own: dict[int, dict], output_dir: Path, rank: Rank) -> list[dict]:
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
    """Turn SIGTERM into an exception in the batch process, so that its running jobs are killed."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- the command


def batch(
    output_dir: str,
    manifest: str | None = None,
    images: str | None = None,
    kernel_size: str | None = None,
    config: list[str] | None = None,
    seeds: str = "0",
    devices: str = "auto",
    jobs_per_device: int | Literal["auto"] = "auto",
    timeout: float | None = None,
    members: str | None = None,
    fit_options: list[str] | None = None,
) -> list[dict]:
    """Deblur many images with many seeds: one independent fit job per (image, seed), spread over devices
    and nodes, resumable. Options not listed here (e.g. --model.iterations 20, --trainer.precision
    bf16-mixed) are passed to every job's fit.

    Args:
        output_dir: jobs go to OUTPUT_DIR/<name>/seed<k>/, the summary to OUTPUT_DIR/summary.csv.
        manifest: CSV with columns image, kernel_size (27 or 27x31), optional name, sharp, kernel.
        images: a folder of blurred images, or one image file (instead of --manifest).
        kernel_size: kernel size of every image in --images: 27 or 27x31.
        config: fit config file(s), e.g. configs/improved.yaml (repeat --config for several).
        seeds: seeds of every image: 0-9, 0,3,5 or 3.
        devices: device slots: N or auto (every GPU, or 1 CPU slot).
        jobs_per_device: jobs run at once on each device: N or auto (4 per GPU, 1 per CPU slot).
        timeout: seconds after which a job is killed and marked failed.
        members: a pool file (e.g. configs/pool.yaml; instead of --config): every job is
            run once by each member method, into OUTPUT_DIR/<member>/, and per (input, seed)
            the result with the lowest gradient sparsity is kept (OUTPUT_DIR/pool.csv).
        fit_options: options passed to every job's fit (not a command-line option: the
            arguments batch does not know).

    Returns:
        the summary rows of this process's jobs (with ``members``, the rows of pool.csv).
    """
    fit_options = list(fit_options or [])
    _check_passthrough(fit_options)
    if bool(manifest) == bool(images):
        raise InputError("give either --manifest cases.csv or --images FOLDER --kernel_size 27 (one of the two)")
    if images and not kernel_size:
        raise InputError("--images needs --kernel_size (e.g. --kernel_size 27 or 27x31); or use a --manifest")
    if manifest and kernel_size:
        raise InputError("--kernel_size goes with --images; with --manifest, each row gives its kernel_size")
    if devices != "auto" and not (str(devices).isdigit() and int(devices) >= 1):
        raise InputError(f"--devices '{devices}' is not a number or auto; give e.g. --devices 4 or --devices auto")
    if jobs_per_device != "auto" and jobs_per_device < 1:
        raise InputError(f"--jobs_per_device {jobs_per_device} must be at least 1 (or auto)")
    if timeout is not None and timeout <= 0:
        raise InputError(f"--timeout {timeout:g} must be positive (seconds)")
    seed_list = parse_seeds(seeds)
    cases = read_manifest(manifest) if manifest else rows_from_folder(images, kernel_size)
    if not cases:
        raise InputError(f"no inputs in {manifest or images}; nothing to do")
    for path in config or []:
        if not Path(path).is_file():
            raise InputError(f"config file '{path}' not found; check the path given to --config")
    if members and config:
        raise InputError("--members gives each member's --config; leave --config out (or use it without --members)")
    # The pool is a layer over batch (it runs one batch per member and reads their
    # summaries), so it is imported here, where batch hands over to it.
    from lightning_deblur import pool

    pool_members = pool.read_members(members) if members else None
    # A job's stdout is a file (stdout.log), so its progress comes as a plain line every
    # 2 % of the steps (lightning_deblur/progress.py), a few kilobytes per job.
    fit_prefix = [arg for path in config or [] for arg in ("--config", str(Path(path).resolve()))] + fit_options
    jobs = build_jobs(cases, seed_list)
    output = Path(output_dir).resolve()

    def run_member(folder: Path, options: list[str]) -> list[dict]:
        return run_batch(jobs, folder, options + fit_prefix, str(devices), jobs_per_device, timeout)

    if pool_members:
        return pool.run_pool(pool_members, output, run_member)
    return run_member(output, [])


def make_parser() -> ArgumentParser:
    """The options of :func:`batch` (jsonargparse, from its signature and docstring)."""
    parser = ArgumentParser(
        prog="python -m lightning_deblur batch",
        description=(batch.__doc__ or "").split("\n\n")[0].replace("\n", " "),
        exit_on_error=False,  # errors raise; command() reports them in one line
    )
    parser.add_function_arguments(batch, as_group=False, skip={"fit_options"})
    return parser


def split_arguments(argv: list[str], own: set[str]) -> tuple[list[str], list[str]]:
    """``argv`` -> (batch's own options, the rest for fit), order kept within each.

    An own option takes the next word as its value (or ``--option=value``); repeated
    ``--config`` values become one list, as the parser wants it.
    """
    mine, rest, configs = [], [], []
    index = 0
    while index < len(argv):
        word = argv[index]
        key = word.split("=", 1)[0].removesuffix("+")  # --config+ a.yaml: jsonargparse's append
        if key in ("-h", "--help"):
            mine.append(word)
        elif key.startswith("--") and key[2:] in own:
            if "=" in word:
                value = word.split("=", 1)[1]
            else:
                index += 1
                value = argv[index] if index < len(argv) else ""
            if key == "--config":
                configs.append(value)
            else:
                mine += [key, value]
        else:
            rest.append(word)
        index += 1
    if configs:
        mine += ["--config", json.dumps(configs)]
    return mine, rest


_TYPE_ERROR = re.compile(r'Parser key "([^"]+)":.*(?:Given|Got) value: (.*)', re.S)


def _option_error(error: argparse.ArgumentError) -> str:
    """jsonargparse's multi-line parse error as one line naming the option."""
    text = str(error)
    typed = _TYPE_ERROR.match(text)
    if typed:
        return f"--{typed.group(1)} {typed.group(2).strip()} is not a valid value"
    text = " ".join(text.split()).replace("arguments are required: ", "arguments are required: --")
    return re.sub(r'Parser key "([^"]+)"', r"--\1", text).rstrip(".")


def command(argv: list[str]) -> None:
    """``python -m lightning_deblur batch …`` (exit code 1 when some job failed, 2 on bad input)."""
    parser = make_parser()
    own = {action.dest for action in parser._actions} - {"help"}
    mine, fit_options = split_arguments(argv, own)
    try:
        options = parser.parse_args(mine)
    except argparse.ArgumentError as error:
        raise InputError(f"{_option_error(error)}; see `python -m lightning_deblur batch --help`") from None
    batch(**{key: value for key, value in vars(options).items() if key in own}, fit_options=fit_options)


def _check_passthrough(passthrough: list[str]) -> None:
    for argument in passthrough:
        if not argument.startswith("--"):
            continue
        key = argument[2:].split("=", 1)[0]
        for option, reason in FORBIDDEN_FIT_OPTIONS.items():
            if key == option or key.startswith(option + "."):
                raise InputError(f"--{key} cannot be given to batch: {reason}")
