"""Which share of a batch this process runs: its rank among the processes of a cluster launch.

A batch started on several nodes (torchrun, ``srun``, a SLURM job array, or plain
``RANK``/``WORLD_SIZE`` variables) is one process per node or task, each running the jobs
``i`` with ``i % world_size == rank``: the ranks together run every job exactly once,
without talking to each other. Each job then runs as a single-process ``fit``, so the
launcher's variables are removed from its environment (:data:`CLUSTER_VARIABLES`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lightning_deblur.core.errors import InputError

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


def without_cluster_variables(env: dict[str, str]) -> dict[str, str]:
    """``env`` less :data:`CLUSTER_VARIABLES`: the environment of a single-process job."""
    return {key: value for key, value in env.items() if key not in CLUSTER_VARIABLES}
