"""The jobs of a batch: one input with one seed each, their seeds and their ``fit`` arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.imagefiles import size_text
from lightning_deblur.core.kernel_support import AUTO
from lightning_deblur.core.manifest import ManifestRow


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


def fit_arguments(job: BatchJob, output_dir: str | Path, fit_prefix, known_kernel: bool = False) -> list[str]:
    """``fit`` arguments of one job: the shared prefix, then what is the job's own.

    ``known_kernel``: pass the case's true kernel (``--data.kernel``), for non-blind jobs.
    """
    # An automatic size: the job finds it; with the true kernel given, the kernel's own.
    size = job.case.kernel_size
    kernel_size = f"[{size[0]}, {size[1]}]" if size is not None else "null" if known_kernel else AUTO
    # The name goes into the run folder through save_dir, never as a value of its own: fit
    # reads an option value `null` as None and one starting with `-` as an option. The
    # absolute folders keep every value a plain path (a relative "null" would parse as None too).
    folder = Path(output_dir).absolute() / job.case.name
    options = {
        "--data.image": job.case.image,
        "--data.kernel_size": kernel_size,
        **({"--data.max_kernel_size": size_text(job.case.max_kernel_size)} if job.case.max_kernel_size and not known_kernel else {}),
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
