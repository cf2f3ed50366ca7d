"""``python -m lightning_deblur batch``: its options, the inputs (a manifest or a folder),
and the hand-over to :mod:`~lightning_deblur.commands.pool` for ``--members``."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser

from lightning_deblur.commands.batch.jobs import build_jobs, parse_seeds
from lightning_deblur.commands.batch.runner import run_batch
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import parse_kernel_size
from lightning_deblur.core.manifest import ManifestRow, read_manifest, rows_from_folder


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


def batch(
    output_dir: str,
    manifest: str | None = None,
    images: str | None = None,
    kernel_size: str | None = None,
    max_kernel_size: str | None = None,
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
        manifest: CSV with columns image, kernel_size (27, 27x31 or auto), optional name, sharp, kernel,
            max_kernel_size.
        images: a folder of blurred images, or one image file (instead of --manifest).
        kernel_size: kernel size of every image in --images: 27, 27x31, or auto (each job finds it).
        max_kernel_size: the largest size an automatic kernel size may take, for every input whose
            kernel_size is auto and whose manifest row gives none: 41 or 41x41 (default: a sixth of the
            image's short side).
        config: fit config file(s), e.g. configs/improved.yaml (repeat --config for several).
        seeds: seeds of every image: 0-9, 0,3,5 or 3.
        devices: device slots: N or auto (every GPU, or 1 CPU slot).
        jobs_per_device: jobs run at once on each device: N or auto (4 per GPU, 1 per CPU slot).
        timeout: seconds after which a job is stopped and marked failed: told to stop (as by SIGTERM:
            it saves its checkpoint at the step reached, and the batch's next run resumes it), killed
            if still running 30 s later.
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
    if max_kernel_size is not None:
        cases = bound_automatic_sizes(cases, max_kernel_size)
    for path in config or []:
        if not Path(path).is_file():
            raise InputError(f"config file '{path}' not found; check the path given to --config")
    if members and config:
        raise InputError("--members gives each member's --config; leave --config out (or use it without --members)")
    # The pool is a layer over batch (it runs one batch per member and reads their
    # summaries), so it is imported here, where batch hands over to it.
    from lightning_deblur.commands import pool

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


def bound_automatic_sizes(cases: list[ManifestRow], max_kernel_size: str) -> list[ManifestRow]:
    """``cases`` with ``max_kernel_size`` as the bound of every automatic kernel size that has none."""
    bound = parse_kernel_size(str(max_kernel_size), "--max_kernel_size")
    if all(case.kernel_size is not None for case in cases):
        raise InputError("--max_kernel_size bounds automatic kernel sizes, and no input has kernel_size auto")
    return [
        replace(case, max_kernel_size=bound) if case.kernel_size is None and case.max_kernel_size is None else case
        for case in cases
    ]


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
