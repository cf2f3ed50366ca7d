"""Running jobs: one ``fit`` process per job on a device slot, resumed from its checkpoint
when it has one, stopped with the batch; a pool of threads runs the jobs on the slots."""

from __future__ import annotations

import queue
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

from lightning_deblur.commands.batch.jobs import BatchJob, fit_arguments
from lightning_deblur.commands.batch.summary import read_finished, read_json_object, stopped_before_its_end
from lightning_deblur.core.imagefiles import write_json


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
        metrics = read_json_object(run_dir / "metrics.json")
        if stopped_before_its_end(metrics):
            return (
                f"timed out after {timeout_s:g} s; stopped at step {metrics.get('iterations')} with its checkpoint "
                "(the batch's next run resumes it)"
            )
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
        metrics = read_json_object(run_dir / "metrics.json")
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


STOP_GRACE_S = 30.0
"""Seconds a stopping batch gives its running jobs to stop by themselves before it kills
them. A job told to stop (SIGTERM) ends at its next step boundary, saves its checkpoint
at the step reached and writes its results with status ``stopped``: a step at 255×255 takes
up to about 2.5 s on a 2-core CPU, the checkpoint and results a few more. A job still
importing or setting up when the signal comes simply ends (nothing to lose)."""


class RunningProcesses:
    """The ``fit`` processes running now, so that stopping the batch can stop them all.

    Starting and stopping share one lock: a process is either started before the stop
    (and stopped by it) or not started at all.
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

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every running job as a signal stops one (SIGTERM: it saves its checkpoint at
        the step reached), wait up to ``grace_s`` seconds for them all, then kill those still
        running. An interruption of the wait (a second Ctrl-C) kills them at once."""
        with self._lock:
            self.stopped = True
            processes = list(self._processes)
        for process in processes:
            process.send_signal(signal.SIGTERM)  # a no-op for a process that has ended
        if processes:
            print(
                f"batch: stopping {len(processes)} running job(s) at their next step, with their checkpoints "
                f"(killed after {grace_s:g} s)",
                file=sys.stderr,
                flush=True,
            )
        deadline = time.monotonic() + grace_s
        try:
            for process in processes:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        finally:
            for process in processes:
                if process.poll() is None:
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


def run_fit(
    command: list[str],
    run_dir: Path,
    env: dict,
    timeout_s: float | None,
    running: RunningProcesses,
    grace_s: float = STOP_GRACE_S,
):
    """Run ``command`` with its output appended to ``run_dir/std{out,err}.log``.

    A job still running after ``timeout_s`` seconds is stopped as a stopping batch stops it
    (SIGTERM: it saves its checkpoint at the step reached, so that work is not lost) and
    killed if it has not ended ``grace_s`` seconds later (a job that hangs).

    Returns:
        ``(exit code, timed out, seconds)``; a negative exit code means killed by that signal.

    Raises:
        Stopped: the batch is stopping (before the start, or the job was stopped by the stop).
    """
    started = time.perf_counter()
    timed_out = False
    with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
        process = running.start(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
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
    return metrics_file_state(run_dir) is None or stopped_before_its_end(read_json_object(run_dir / "metrics.json"))


def run_job(job: BatchJob, spec: RunSpec, slot: Slot, running: RunningProcesses) -> dict:
    """Run one job to its end in a ``fit`` subprocess; return its summary values.

    A job folder with ``checkpoints/last.ckpt`` and no ``metrics.json`` (a job killed
    mid-way, see :class:`~lightning_deblur.job.checkpointing.JobCheckpoint`) or one that says
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
    Ctrl-C) stops the running jobs (:meth:`RunningProcesses.stop`: each saves its checkpoint
    at the step reached), drops the waiting ones and propagates once every thread has returned.
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
        # those still running are stopped first and are not.
        ended = [f for f in futures if f.done() and f not in reported]
        running.stop()
        for future in ended:
            if not future.cancelled() and future.exception() is None:
                on_result(futures[future], future.result())
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
