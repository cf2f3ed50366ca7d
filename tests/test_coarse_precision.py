"""benchmarks/paper_scale/coarse_precision.py tabulates, per precision and seed, the curve row at the
asked step, runs only what is missing (a stopped command resumes), and refuses a folder that is
not a banked run in one line."""

from __future__ import annotations

import pytest

SCRIPT = "paper_scale/coarse_precision.py"
HEADER = "step,scale,step_in_scale,kernel_peak,psnr,aligned_psnr\n"


def write_curve(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curve.csv").write_text(HEADER + "".join(f"{step},0,{step},{peak},0,{psnr}\n" for step, peak, psnr in rows))


def test_tabulates_the_step_and_runs_only_what_is_missing(benchmark_script, tmp_path, monkeypatch):
    study = benchmark_script(SCRIPT)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(study, "study_results", lambda: tmp_path / "results")
    monkeypatch.setattr(study, "cpu_slug", lambda: "test-cpu")
    bank = tmp_path / "bank"
    run = bank / "improved" / "im4_kernel4" / "seed0"
    write_curve(run, [(100, 0.01, 18.0), (500, 0.047, 22.70)])
    (run / "config.yaml").write_text("seed_everything: 0\n")
    write_curve(bank / "improved_bf16" / "im4_kernel4" / "seed0", [(500, 0.045, 20.63)])
    runs = bank / "coarse_precision" / "im4_kernel4"
    write_curve(runs / "32-true_threads1_steps500" / "seed1", [(500, 0.045, 20.18)])
    write_curve(runs / "bf16-mixed_threads1_steps500" / "seed1", [(400, 0.03, 21.0)])  # stopped before step 500
    fitted = []

    def fake_fit(config, folder, precision, seed, steps):
        fitted.append((folder.relative_to(runs).as_posix(), precision, seed, steps))
        write_curve(folder, [(steps, 0.044, 23.05)])
        return 0

    monkeypatch.setattr(study, "run_prefix", fake_fit)
    with pytest.raises(SystemExit) as stop:
        study.main(["--run", str(run), "--seeds", "1"])
    assert stop.value.code == 0
    assert fitted == [("bf16-mixed_threads1_steps500/seed1", "bf16-mixed", 1, 500)]
    table = (tmp_path / "results" / "coarse_precision_im4_kernel4_steps500_test-cpu.md").read_text()
    assert "| 1 | 20.18 (0.045) | 23.05 (0.044) |" in table
    assert "| 0, banked | 22.70 (0.047) | 20.63 (0.045) |" in table


def test_a_folder_that_is_not_a_banked_run_is_refused(benchmark_script, tmp_path):
    with pytest.raises(SystemExit) as stop:
        benchmark_script(SCRIPT).main(["--run", str(tmp_path)])
    assert "is not a banked run" in str(stop.value.code)
