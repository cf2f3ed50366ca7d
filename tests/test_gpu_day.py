"""benchmarks/gpu/gpu_day.sh --smoke: the GPU-day script runs end to end on a CPU at tiny sizes,
so it is known to work before a GPU machine is lent."""

from __future__ import annotations

import pytest
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

pytestmark = pytest.mark.slow  # subprocesses running whole jobs

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_day_script_runs_in_smoke_mode(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu" / "gpu_day.sh"), "--smoke"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    steps = json.loads((tmp_path / "gpu_day_steps.json").read_text())
    assert {(r["precision"], r["layout"]) for r in steps["step"]} == {
        (p, layout) for p in ("32-true", "bf16-mixed") for layout in ("contiguous", "channels_last")
    }
    assert all(r["s_per_step"] > 0 for r in steps["step"]) and len(steps["blur"]) == 2
    (adam,) = tmp_path.glob("optimizer_speed_cpu_k13_t*.json")
    assert {tuple(sorted(r["median_s"])) for r in json.loads(adam.read_text())["rows"]} == {("foreach", "fused", "single")}
    # Whole jobs side by side, and jobs per minute at 1 and 2 jobs at a time.
    (speed,) = tmp_path.glob("method_speed_fast_tiny_improved_tiny_*.json")
    methods = json.loads(speed.read_text())["methods"]
    assert methods["fast_tiny"]["job_s"] > 0 and methods["improved_tiny"]["speedup_over_fast_tiny"] > 0
    counts = json.loads((tmp_path / "jobs_per_gpu.json").read_text())["counts"]
    assert [(c["jobs_at_a_time"], c["jobs_finished"]) for c in counts] == [(1, 1), (2, 2)]
    assert all(c["jobs_per_minute"] > 0 for c in counts)
    assert not (tmp_path / "jobs_per_gpu_runs").exists()  # only small files come back from a lent machine
    with tarfile.open(tmp_path / "bank.tgz") as archive:
        names = archive.getnames()
    # One finished bank job, its small files only.
    assert "bank/improved/kodim01_levin09_k1/seed0/metrics.json" in names
    assert "bank/improved/kodim01_levin09_k1/seed0/curve.csv" in names
    assert not [n for n in names if "tfevents" in n or "checkpoints" in n]
