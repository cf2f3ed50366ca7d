"""Where jobs run: device slots (GPUs, or shares of the CPU cores), the jobs at once on
each, and the threads and environment of each job."""

from __future__ import annotations

import os
from typing import NamedTuple

from lightning_deblur.commands.batch.processes import Slot
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.package_files import source_checkout
from lightning_deblur.commands.ranks import without_cluster_variables


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


def _job_environment(threads: int) -> dict:
    env = without_cluster_variables(dict(os.environ))
    # A thread count the user set for OpenMP applies to MKL too: two different counts
    # oversubscribe the cores, which can slow a job down many times over.
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    # The jobs import this very package, also when it runs from a source checkout.
    checkout = source_checkout()
    if checkout is not None:
        root = str(checkout)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    return env
