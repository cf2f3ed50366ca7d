"""benchmarks/paper_scale/post_peak_ablation.py puts its arms beside the bank of the run they
come from, and refuses a folder that is not a banked run in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "paper_scale/post_peak_ablation.py"


def test_the_arms_go_beside_the_runs_bank(tmp_path, benchmark_script):
    run = tmp_path / "paper_scale_kodak256" / "improved" / "kodim05_levin09_k5" / "seed0"
    assert benchmark_script(SCRIPT).arms_root(run) == tmp_path / "paper_scale_kodak256" / "post_peak"


def test_a_folder_without_a_banked_run_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / SCRIPT), "--run", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0
    assert done.stderr.strip().startswith("error:") and "is not a banked run" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout
