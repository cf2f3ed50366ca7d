"""benchmarks/bank/full_fidelity_bank.py run: killing the script stops the batches it started,
cleanly, so a long bank run can be stopped with one `kill` and resumed later."""

from __future__ import annotations

import pytest
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

pytestmark = pytest.mark.slow  # subprocesses running whole jobs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model.image_net.channels", "8", "--model.scales.coarse_iterations", "2", "--model.iterations", "100000"]


def descendants(pid: int) -> dict[int, str]:
    """Running descendants of process ``pid``: their command lines by process id."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    parent, command = {}, {}
    for line in listing.splitlines():
        child, ppid, args = line.split(None, 2) if len(line.split(None, 2)) == 3 else (*line.split(None, 1), "")
        parent[int(child)], command[int(child)] = int(ppid), args
    found, frontier = {}, [pid]
    while frontier:
        current = frontier.pop()
        for child, ppid in parent.items():
            if ppid == current and child not in found:
                found[child] = command[child]
                frontier.append(child)
    return found


def fit_jobs(pid: int) -> list[int]:
    return [child for child, args in descendants(pid).items() if "lightning_deblur fit" in args]


def test_a_sigterm_to_the_bank_script_stops_its_batches_and_their_jobs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, str(ROOT / "benchmarks" / "bank" / "full_fidelity_bank.py"), "run", "--root", str(tmp_path),
        "--methods", "improved,fast", "--concurrent", "--seeds", "0", "--first_inputs", "1", *TINY,
    ]  # fmt: skip
    script = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    family: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while len(fit_jobs(script.pid)) < 2 and time.monotonic() < deadline and script.poll() is None:
            time.sleep(0.5)
        jobs = fit_jobs(script.pid)
        assert len(jobs) == 2, "both methods' jobs should be running"
        family = descendants(script.pid)  # the batches and their jobs, for the clean-up below
        script.send_signal(signal.SIGTERM)
        output, _ = script.communicate(timeout=60)
    finally:
        # Whatever happened, leave no process behind (a broken script orphans its batches).
        for pid in [*family, script.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert script.returncode != 0
    assert output.count("interrupted; run the same command again to resume") == 2
    time.sleep(1)
    assert not [job for job in jobs if Path(f"/proc/{job}").exists()]
    # Each batch wrote its summary with the job still pending, so the next run resumes it.
    for method in ("improved", "fast"):
        assert "pending" in (tmp_path / method / "summary.csv").read_text()


def test_a_slice_of_named_inputs_runs_only_those_and_an_unknown_name_is_one_line(tmp_path, benchmark_script):
    bank = benchmark_script("bank/full_fidelity_bank.py")
    from lightning_deblur.core.manifest import read_manifest

    whole = read_manifest(bank.input_slice(bank.PROTOCOL / "manifest.csv", 0, [], tmp_path))
    assert len(whole) == 8
    named = read_manifest(bank.input_slice(bank.PROTOCOL / "manifest.csv", 0, ["kodim06_levin09_k6", "kodim03_levin09_k3"], tmp_path))
    assert [row.name for row in named] == ["kodim03_levin09_k3", "kodim06_levin09_k6"]  # the protocol's order
    assert named[0] == whole[2]  # the same row, its paths still absolute
    both = read_manifest(bank.input_slice(bank.PROTOCOL / "manifest.csv", 2, ["kodim02_levin09_k2", "kodim05_levin09_k5"], tmp_path))
    assert [row.name for row in both] == ["kodim02_levin09_k2"]

    script = [sys.executable, str(ROOT / "benchmarks" / "bank" / "full_fidelity_bank.py"), "run", "--root", str(tmp_path)]
    done = subprocess.run([*script, "--inputs", "kodim09"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"unknown input 'kodim09': choose from {', '.join(r.name for r in whole)}"]
