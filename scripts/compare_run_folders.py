"""Whether two run folders hold bit-identical results: the check behind "results unchanged".

    .venv/bin/python scripts/compare_run_folders.py RUN_A RUN_B

Every result file both runs wrote (the deblurred image, the kernel, ``scales/``,
``curve.csv``) must match byte for byte, and ``metrics.json`` value for value except the
entries that measure time or name the input's path. TensorBoard event files and the
resolved configs are not compared (they carry times and paths). Prints one line per
difference and exits 1 if there is any, 0 if the results are identical.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

UNCOMPARED_FILES = ("events.out.tfevents", "config.yaml", "hparams.yaml", "stdout.log", "stderr.log")
"""File name prefixes that differ between identical runs (times, paths, process ids)."""

UNCOMPARED_METRICS = {"wall_time_s", "seconds_per_iteration", "image", "sharp", "kernel"}
"""metrics.json entries that measure time or name input paths."""


def result_files(run: Path) -> set[str]:
    """Paths of the run's result files, relative to the run folder."""
    return {
        str(path.relative_to(run))
        for path in run.rglob("*")
        if path.is_file() and not path.name.startswith(UNCOMPARED_FILES) and "checkpoints" not in path.parts
    }


def differences(first: Path, second: Path) -> list[str]:
    """One line per result that differs between the two run folders."""
    found = []
    names_first, names_second = result_files(first), result_files(second)
    found += [f"only in {first}: {name}" for name in sorted(names_first - names_second)]
    found += [f"only in {second}: {name}" for name in sorted(names_second - names_first)]
    for name in sorted(names_first & names_second):
        if name == "metrics.json":
            values = [json.loads((run / name).read_text()) for run in (first, second)]
            for key in sorted((set(values[0]) | set(values[1])) - UNCOMPARED_METRICS):
                if values[0].get(key) != values[1].get(key):
                    found.append(f"metrics.json {key}: {values[0].get(key)!r} != {values[1].get(key)!r}")
        elif (first / name).read_bytes() != (second / name).read_bytes():
            found.append(f"{name} differs")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    for run in (args.first, args.second):
        if not (run / "metrics.json").is_file():
            sys.exit(f"error: {run} is not a finished run folder (no metrics.json); pass <run folder>")
    found = differences(args.first, args.second)
    for line in found:
        print(line)
    if found:
        sys.exit(1)
    print(f"identical results: {len(result_files(args.first))} files")


if __name__ == "__main__":
    main()
