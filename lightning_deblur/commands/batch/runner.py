"""One batch from start to end: the ``fit`` options checked first, finished jobs skipped,
the rest run on the slots, the summary written as jobs end, the exit code."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lightning_deblur.commands.batch.jobs import BatchJob, fit_arguments
from lightning_deblur.commands.batch.processes import RunSpec, run_jobs
from lightning_deblur.commands.batch.slots import _job_environment, plan_slots
from lightning_deblur.commands.batch.summary import merged_rows, read_finished, summary_row, write_summary
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import check_writable_folder
from lightning_deblur.commands.ranks import Rank, cluster_rank, node_share


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
    from lightning_deblur.commands.fit import parse_error_line, parse_fit_arguments

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
        SystemExit: 1 when a job failed; ``128 + signal`` on SIGTERM (running jobs stopped with their checkpoints,
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


def _raise_on_sigterm():
    """Turn SIGTERM into an exception in the batch process, so that its running jobs are
    stopped (:meth:`~.processes.RunningProcesses.stop`)."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
