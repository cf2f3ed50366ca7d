"""A pool of methods: every (input, seed) deblurred by several member methods, and the
result with the lowest gradient sparsity kept (``batch --members configs/pool.yaml``).

Why: a method's failures belong to inputs more than to seeds (the improved method fails
where a fast net with a strong kernel prior succeeds, and the other way round), and the
gradient sparsity of a finished result (:mod:`lightning_deblur.core.verdict`) tells, without
the sharp image, which of several results to keep (docs/RESULTS.md, "A pool of methods").

Layout: ``OUTPUT_DIR/<member>/`` is a batch of its own (its ``summary.csv`` and
``<name>/seed<k>/`` folders), so each member is resumed, evaluated and inspected like any
batch; ``OUTPUT_DIR/pool.csv`` has one row per (input, seed): the member kept, its run
folder and figures, and each member's status, gradient sparsity and (with a sharp
reference) aligned ISNR. The members run one after another, each over every device.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import yaml

from lightning_deblur.commands.batch.summary import FINISHED_STATUSES, read_summary
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import write_csv
from lightning_deblur.core.verdict import NO_BLUR

MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""A member's name names its folder."""

KEPT_FIGURES = ["aligned_isnr", "aligned_psnr", "aligned_ssim", "isnr", "psnr", "verdict", "wall_time_s"]
"""Figures of the kept run copied into ``pool.csv`` (those its member's summary has)."""


def read_members(path: str | Path) -> dict[str, list[str]]:
    """The members of a pool file: ``{name: fit options}``, in the file's order.

    The file is YAML with a ``members:`` mapping of two or more names to lists of ``fit``
    options; a ``--config`` value given as a relative path is relative to the file's folder.

    Raises:
        InputError: the file is missing, not YAML, or not of that shape.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"members file '{path}' not found; give e.g. --members configs/pool.yaml")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0]
        raise InputError(f"members file '{path}' is not valid YAML ({first}); see configs/pool.yaml") from None
    members = data.get("members") if isinstance(data, dict) else None
    if not isinstance(members, dict) or len(members) < 2:
        raise InputError(
            f"members file '{path}' needs a 'members:' mapping of two or more names to fit options; "
            "see configs/pool.yaml"
        )
    found: dict[str, list[str]] = {}
    for name, options in members.items():
        if not isinstance(name, str) or not MEMBER_NAME.fullmatch(name):
            raise InputError(f"member name '{name}' in {path} names a folder: use letters, digits, '_', '.' and '-'")
        if not isinstance(options, list) or not options or any(isinstance(o, (dict, list)) for o in options):
            raise InputError(f"member '{name}' in {path}: give its fit options as a list, e.g. [--config, fast.yaml]")
        words = [str(option) for option in options]
        for index in range(1, len(words)):
            if words[index - 1] == "--config" and not Path(words[index]).is_absolute():
                words[index] = str((file.parent / words[index]).resolve())
        found[name] = words
    return found


def _number(value) -> float:
    """A figure of a summary row (text in a CSV) as a float; NaN where there is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def choose(member_rows: dict[str, list[dict]]) -> list[dict]:
    """One ``pool.csv`` row per (input, seed) of the members' summary rows.

    The kept member is the one whose finished run has the lowest gradient sparsity (ties:
    the first in the pool's order), among the runs whose verdict is not ``no-blur`` (all of
    them when every run's is). A row's status is ``done`` once every member's run of
    it is finished (done or failed) and one is kept, ``failed`` when every member's run
    failed, ``unranked`` when no finished run has a gradient sparsity (results made before
    it was recorded), and ``pending`` while a member's run is still to come (nothing is
    kept yet: a pick among part of the pool is not the pool's).
    """
    members = list(member_rows)
    keys: list[tuple[str, str]] = []
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for member in members:
        for row in member_rows[member]:
            key = (row["name"], str(row["seed"]))
            if key not in by_key:
                by_key[key] = {}
                keys.append(key)
            by_key[key][member] = row
    rows = []
    for name, seed in sorted(keys, key=lambda key: (key[0], int(key[1]))):
        runs = by_key[(name, seed)]
        row: dict = {"name": name, "seed": seed}
        candidates = []
        for member in members:
            run = runs.get(member, {})
            # A batch run again calls its earlier jobs skipped-done: finished all the same.
            status = run.get("status") or "pending"
            status = "done" if status in FINISHED_STATUSES else status
            sparsity = _number(run.get("gradient_sparsity"))
            row[f"{member}_status"] = status
            row[f"{member}_gradient_sparsity"] = run.get("gradient_sparsity", "")
            if run.get("aligned_isnr"):
                row[f"{member}_aligned_isnr"] = run["aligned_isnr"]
            if status == "done" and math.isfinite(sparsity):
                candidates.append((sparsity, member, run))
        # A no-blur result (the verdict: x ≈ y, k ≈ δ) has about the input's own sparsity by
        # construction, which can undercut a deblurred result that rings a little: it is
        # kept only when every member's result is no-blur.
        blurred = [candidate for candidate in candidates if candidate[2].get("verdict") != NO_BLUR]
        candidates = blurred or candidates
        statuses = [row[f"{member}_status"] for member in members]
        if any(status not in ("done", "failed") for status in statuses):
            row["status"] = "pending"
        elif candidates:
            _, member, run = min(candidates, key=lambda candidate: candidate[0])
            row.update(status="done", kept=member, gradient_sparsity=run["gradient_sparsity"], run_dir=run.get("run_dir", ""))
            row.update({figure: run[figure] for figure in KEPT_FIGURES if run.get(figure) not in (None, "")})
        else:  # every member failed, or none of the finished ones has a sparsity to rank by
            row["status"] = "failed" if all(status == "failed" for status in statuses) else "unranked"
        rows.append(row)
    return rows


def write_pool_summary(output_dir: Path, members: list[str]) -> list[dict]:
    """Write ``output_dir/pool.csv`` (atomically) from the members' summaries; return its rows."""
    rows = choose({member: read_summary(output_dir / member / "summary.csv") for member in members})
    # Each member's aligned ISNR only where the inputs came with sharp images and kernels.
    member_fields = ["status", "gradient_sparsity"]
    if any(f"{member}_aligned_isnr" in row for row in rows for member in members):
        member_fields.append("aligned_isnr")
    per_member = [f"{member}_{field}" for member in members for field in member_fields]
    kept = [figure for figure in KEPT_FIGURES if any(figure in row for row in rows)]
    fields = ["name", "seed", "status", "kept", "gradient_sparsity", "run_dir", *kept, *per_member]
    write_csv(output_dir / "pool.csv", fields, rows)
    return rows


def run_pool(members: dict[str, list[str]], output_dir: Path, run_member: Callable[[Path, list[str]], object]) -> list[dict]:
    """Run every member as a batch of its own, ``run_member(output_dir / name, options)``,
    then write ``pool.csv``; return its rows.

    A member whose batch ends with failed jobs (exit code 1) does not stop the others; the
    pool then exits with code 1 too, after writing ``pool.csv``. An interruption (any other
    exit) stops the pool at once, resumable by the same command.
    """
    failed = False
    for name, options in members.items():
        print(f"pool: member {name}", flush=True)
        try:
            run_member(output_dir / name, options)
        except SystemExit as stop:
            if stop.code != 1:
                raise
            failed = True
    rows = write_pool_summary(output_dir, list(members))
    done = [row for row in rows if row["status"] == "done"]
    counts = ", ".join(f"{name} {sum(row['kept'] == name for row in done)}" for name in members)
    print(
        f"pool: kept the sparsest result for {len(done)} of {len(rows)} (input, seed) ({counts}); "
        f"table in {output_dir / 'pool.csv'}",
        flush=True,
    )
    if len(rows) == 1 and done:  # one photo: say where its result is
        print(f"pool: kept {done[0]['kept']}: {Path(done[0]['run_dir']) / 'deblurred.png'}", flush=True)
    if failed:
        raise SystemExit(1)
    return rows
