"""benchmarks/paper_scale/fall_after_switch.py reads the fall after the improved method's
peak from the finest scale of a run's curve.csv, from the switch on and no earlier."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_deblur.core.curve_table import write_curve
from lightning_deblur.core.imagefiles import write_json

SCRIPT = "paper_scale/fall_after_switch.py"


def write_run(run: Path, rows: list[tuple[int, int, float, float]], status: str = "done") -> None:
    """rows: (scale, step_in_scale, aligned_psnr, kernel_peak); ``status``: its metrics.json's."""
    run.mkdir(parents=True)
    write_curve(run / "curve.csv", [
        {"step": 100 * step, "scale": scale, "step_in_scale": step_in_scale, "aligned_psnr": psnr, "kernel_peak": peak}
        for step, (scale, step_in_scale, psnr, peak) in enumerate(rows, start=1)
    ])  # fmt: skip
    write_json(run / "metrics.json", {"status": status, "final_loss": 0.1})


def test_the_fall_is_measured_from_the_finest_scales_switch_on(tmp_path, benchmark_script):
    script = benchmark_script(SCRIPT)
    write_run(tmp_path / "run", [
        (0, 500, 40.0, 0.5),     # a coarse scale's higher PSNR must not count
        (2, 1900, 30.0, 0.10),   # nor the finest scale's before the switch
        (2, 2000, 24.0, 0.11),
        (2, 2200, 27.0, 0.20),
        (2, 5000, 22.5, 0.89),
    ])
    row = script.fall_after_switch(tmp_path / "run")
    assert row["at_switch"] == 24.0
    assert (row["highest"], row["highest_step_in_scale"]) == (27.0, 2200)
    assert row["end"] == 22.5
    assert row["fall"] == pytest.approx(4.5)
    assert (row["kernel_peak_at_switch"], row["kernel_peak_end"]) == (0.11, 0.89)


def test_a_run_without_the_switch_is_refused_in_one_line(tmp_path, capsys, benchmark_script):
    script = benchmark_script(SCRIPT)
    write_run(tmp_path / "run", [(0, 500, 20.0, 0.1), (1, 500, 21.0, 0.1), (2, 1000, 22.0, 0.1)])  # stopped before the switch
    assert script.main([str(tmp_path / "run")]) == 2
    printed = capsys.readouterr()
    assert "no row at the finest scale's step 2000" in printed.err and printed.err.count("\n") == 1
    assert printed.out == ""  # no table header left above the error


def test_a_single_scale_run_is_refused_although_it_has_a_step_2000(tmp_path, capsys, benchmark_script):
    script = benchmark_script(SCRIPT)
    write_run(tmp_path / "run", [(0, 1900, 20.0, 0.2), (0, 2000, 20.5, 0.2), (0, 5000, 19.5, 0.3)])  # the original method
    assert script.main([str(tmp_path / "run")]) == 2
    printed = capsys.readouterr()
    assert "1 scale(s), not the improved config's 3" in printed.err and printed.out == ""


def test_a_run_stopped_part_of_the_way_is_refused_in_one_line(tmp_path, capsys, benchmark_script):
    script = benchmark_script(SCRIPT)
    # Past the switch, but stopped at step 3000 of 5000 (a signal): its end is not the run's end.
    write_run(tmp_path / "run", [(2, 2000, 24.0, 0.11), (2, 3000, 25.0, 0.2)], status="stopped")
    assert script.main([str(tmp_path / "run")]) == 2
    printed = capsys.readouterr()
    assert "is not finished" in printed.err and printed.err.count("\n") == 1 and printed.out == ""
