"""benchmarks/paper_scale/table.py: it scores again, with SelfDeblur's wider shift search, exactly
the runs whose best shift lies on the edge of Levin's ±5 px search; says which CPU ran each run;
pairs precisions only on one CPU; lists each run of the papers' methods, how the verdict fares,
the default precision the pre-registered rule gives and what the targets still lack; and writes
its summaries between the markers of RESULTS and README, nowhere else."""

from __future__ import annotations

import json
import math

import pytest

SCRIPT = "paper_scale/table.py"


def row(method: str, name: str, shift_y: float, shift_x: float, isnr: float) -> dict:
    """A runs.csv row as ``read_runs_csv`` reads what ``evaluate`` writes (figures as floats, seed
    as int, ``failed`` as bool by its 1-dB line)."""
    return {"method": method, "input": name, "seed": 0, "shift_y": shift_y, "shift_x": shift_x, "aligned_isnr": isnr, "failed": isnr < 1.0}


def scored(method: str, name: str, isnr: float, cpu: str) -> dict:
    return {**row(method, name, 0, 0, isnr), "cpu": cpu}


def test_only_runs_on_the_search_edge_are_scored_again(benchmark_script, monkeypatch):
    table = benchmark_script(SCRIPT)
    runs = [
        row("original", "im1_kernel1", -0.25, 0.5, 10.0),
        row("fast_kl2x10", "im2_kernel2", 0.75, -5, 7.07),  # on the edge of x
        row("improved", "im2_kernel2", 0.75, -4.75, 11.55),  # inside: not scored again
        row("fast", "im4_kernel4", 5, 1, 1.5),  # on the edge of y
    ]
    searches = []

    def wider_search(protocol, manifest, max_shift=table.MAX_SHIFT, methods=None):
        searches.append((max_shift, methods))
        return [row("fast_kl2x10", "im2_kernel2", 1, -5.25, 7.48), row("fast", "im4_kernel4", 6.5, 1, 2.25)]

    monkeypatch.setattr(table, "evaluate", wider_search)
    lines = table.search_edge_rows("levin8", None, runs)
    assert searches == [(table.WIDE_SHIFT, ["fast", "fast_kl2x10"])]
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| method")]
    assert body == [
        "| fast_kl2x10 | im2_kernel2 | 0 | 7.07 | (0.75, -5) | 7.48 | (1, -5.25) |",
        "| fast | im4_kernel4 | 0 | 1.50 | (5, 1) | 2.25 | (6.5, 1) |",
    ]


def test_no_edge_no_second_search(benchmark_script, monkeypatch):
    table = benchmark_script(SCRIPT)
    monkeypatch.setattr(table, "evaluate", lambda *args, **kwargs: (_ for _ in ()).throw(AssertionError("searched again")))
    assert table.search_edge_rows("kodak256", None, [row("improved", "kodim05", -4.75, 4.5, 3.32)]) == []


def test_runs_on_a_less_common_cpu_are_marked(benchmark_script):
    table = benchmark_script(SCRIPT)
    runs = [
        {**row("improved", "kodim01", 0, 0, 3.0), "cpu": "AMD EPYC"},
        {**row("original", "kodim01", 0, 0, -0.67), "cpu": "AMD EPYC"},
        {**row("improved", "kodim07", 0, 0, 4.5), "cpu": "Intel Xeon"},
    ]
    lines = table.per_run_rows(runs)
    assert lines[2:4] == ["| kodim01 | 0 | 3.00 | -0.67 |", "| kodim07 | 0 | 4.50† | — |"]
    assert lines[-1] == "CPU of each run — unmarked: AMD EPYC; †: Intel Xeon."
    assert table.cpu_counts(runs) == "AMD EPYC 2, Intel Xeon 1"


def test_a_run_without_a_recorded_cpu_counts_as_the_first_runs_machine(benchmark_script):
    table = benchmark_script(SCRIPT)
    assert table.cpu({"cpu": "Intel(R) Xeon(R) Processor"}) == "Intel Xeon"  # trademark marks dropped
    assert table.cpu({"cpu": ""}) == table.UNRECORDED_CPU  # evaluate leaves the cell empty


def test_one_model_name_with_unlike_vector_extensions_is_two_cpus(benchmark_script):
    table = benchmark_script(SCRIPT)
    assert table.cpu({"cpu": "AMD EPYC", "cpu_features": "avx2"}) == "AMD EPYC (avx2)"
    assert table.cpu({"cpu": "AMD EPYC", "cpu_features": "avx2 avx512f avx512_bf16"}) == "AMD EPYC (avx512_bf16)"
    assert table.cpu({"cpu": "AMD EPYC", "cpu_features": ""}) == "AMD EPYC"  # not recorded: the name alone
    labelled = [{**run, "cpu": table.cpu(run)} for run in [
        {**row("improved_bf16", "im1_kernel1", 0, 0, 9.0), "cpu": "AMD EPYC", "cpu_features": "avx2"},
        {**row("improved", "im1_kernel1", 0, 0, 9.5), "cpu": "AMD EPYC", "cpu_features": "avx2 avx512f avx512_bf16"},
    ]]  # fmt: skip
    assert table.paired_runs(labelled, "improved_bf16", "improved", same_cpu=True) == ([], 1)


def test_the_summary_replaces_only_what_stands_between_the_markers(benchmark_script, tmp_path):
    table = benchmark_script(SCRIPT)
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Results\n\nbefore\n{table.BLOCK[0]}\nold table\n{table.BLOCK[1]}\nafter\n")
    block = table.results_block({"levin8": ["| method | runs |", "|---|---|", "| improved | 3 |"]})
    table.write_between_markers(results, block)
    table.write_between_markers(results, block)  # a second run replaces, never appends
    text = results.read_text()
    assert text.startswith("# Results\n\nbefore\n" + table.BLOCK[0]) and text.endswith(table.BLOCK[1] + "\nafter\n")
    assert "old table" not in text and text.count("| improved | 3 |") == 1
    assert "(../benchmarks/paper_scale/results/inputs_levin8.png)" in text


def test_a_document_without_the_markers_is_one_line_naming_them(benchmark_script, tmp_path):
    table = benchmark_script(SCRIPT)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    with pytest.raises(SystemExit) as stop:
        table.write_between_markers(results, [])
    message = str(stop.value)
    assert table.BLOCK[0] in message and "\n" not in message and results.read_text() == "# Results\n"


PRECISION_PAIRS = [
    scored("improved", "im1_kernel1", 9.76, "AMD EPYC"), scored("improved_bf16", "im1_kernel1", 9.98, "AMD EPYC"),
    scored("improved", "im4_kernel4", 9.07, "Intel Xeon"), scored("improved_bf16", "im4_kernel4", 0.25, "Intel Xeon"),
    scored("improved", "im2_kernel2", 11.55, "AMD EPYC"), scored("improved_bf16", "im2_kernel2", 1.0, "Intel Xeon"),
]  # fmt: skip
"""Levin runs in both precisions: two pairs on one CPU (one bf16 failure), one across two CPUs."""


def test_the_readme_block_has_the_papers_methods_per_input_and_the_paired_differences(benchmark_script):
    table = benchmark_script(SCRIPT)
    levin = [
        scored("original", "im1_kernel1", 10.0, "AMD EPYC"), scored("improved", "im1_kernel1", 9.76, "AMD EPYC"),
        scored("original", "im2_kernel2", 11.05, "AMD EPYC"), scored("improved", "im2_kernel2", 11.55, "AMD EPYC"),
        scored("improved_bf16", "im4_kernel4", 0.25, "Intel Xeon"),
        scored("fast_fused", "im3_kernel3", 6.67, "AMD EPYC"),  # ours: no row of its own
    ]  # fmt: skip
    lines = table.readme_block({"levin8": levin, "kodak256": []})
    assert lines[0] == "| data set | input | original | improved | improved_bf16 | CPU |"
    assert lines[2:5] == [
        "| levin8 | im1_kernel1 | 10.00 | 9.76 | — | AMD EPYC |",
        "| levin8 | im2_kernel2 | 11.05 | 11.55 | — | AMD EPYC |",
        "| levin8 | im4_kernel4 | — | — | 0.25 | Intel Xeon |",
    ]
    assert "| *levin8* | *paper: mean over Levin's 32* | *7.62* | *8.23* |  | |" in lines
    assert "- levin8, improved − original: +0.13 ± 0.37 dB over 2 pairs." in lines
    assert not any("(same CPU)" in line for line in lines)  # both pairs on one CPU: the figure above, not twice
    lines = table.readme_block({"levin8": [*levin, scored("original", "im4_kernel4", 9.0, "Intel Xeon"),
                                           scored("improved", "im4_kernel4", 10.0, "AMD EPYC")]})  # fmt: skip
    assert "- levin8, improved − original: +0.42 ± 0.36 dB over 3 pairs." in lines
    assert "- levin8, improved − original (same CPU): +0.13 ± 0.37 dB over 2 pairs." in lines


def test_the_verdict_line_counts_flagged_runs_and_caught_failures(benchmark_script):
    table = benchmark_script(SCRIPT)
    runs = [
        {"verdict": "ok", "failed": True},  # a failure the verdict misses
        {"verdict": "no-blur", "failed": True},  # caught
        {"verdict": "kernel-at-border", "failed": False},  # a false alarm
        {"verdict": "ok", "failed": False},
    ]
    assert table.verdict_line(runs) == (
        "No-reference verdict: flags 2 of 4 runs and catches 1 of 2 failures (aligned ISNR below 1 dB)."
    )


def test_the_ledger_lists_the_papers_runs_with_cpu_threads_and_wall_time(benchmark_script):
    table = benchmark_script(SCRIPT)

    def run(method, name, cpu, threads, wall):
        return {
            **row(method, name, 0, 0, 9.07), "isnr": 7.92, "error_ratio": math.nan, "verdict": "ok",
            "cpu": cpu, "cpu_threads": threads, "wall_time_s": wall,
        }  # fmt: skip

    runs = [
        run("improved", "im4_kernel4", "Intel Xeon", 2, 5794.5),
        run("fast_fused", "im4_kernel4", "AMD EPYC", None, 150.0),  # ours: not in the ledger
        run("original", "im1_kernel1", "AMD EPYC", None, 6120.0),  # before threads were recorded
        run("original", "im2_kernel2", "Intel Xeon", 1, 6120.0),
    ]
    lines = table.ledger_rows(runs)
    assert lines[2:] == [
        "| im1_kernel1 | 0 | original | 9.07 | 7.92 | — | ok | AMD EPYC | 1 h 42 min |",
        "| im2_kernel2 | 0 | original | 9.07 | 7.92 | — | ok | Intel Xeon, 1 thread | 1 h 42 min |",
        "| im4_kernel4 | 0 | improved | 9.07 | 7.92 | — | ok | Intel Xeon, 2 threads | 1 h 37 min |",
    ]
    assert table.duration(2820) == "47 min"


def test_a_precision_pair_counts_only_where_both_ran_on_one_cpu(benchmark_script):
    table = benchmark_script(SCRIPT)
    runs = [*PRECISION_PAIRS, scored("original", "im2_kernel2", 11.05, "Intel Xeon")]  # a method pair may span CPUs
    lines = table.paired_rows(runs)
    assert "| improved − original | 1 | 0.50 ± — | 1 of 1 |" in lines
    assert "| improved_bf16 − improved (same CPU) | 2 | -4.30 ± 4.52 | 1 of 2 |" in lines
    assert not any("improved − original (same CPU)" in line for line in lines)  # its only pair spans two CPUs
    assert lines[-1] == "improved_bf16 − improved (same CPU) leaves out 1 pair(s) run on different CPUs."
    runs.append(scored("original", "im1_kernel1", 9.26, "AMD EPYC"))  # a second method pair, on one CPU
    lines = table.paired_rows(runs)
    assert "| improved − original | 2 | 0.50 ± 0.00 | 2 of 2 |" in lines
    assert "| improved − original (same CPU) | 1 | 0.50 ± — | 1 of 1 |" in lines
    assert "improved − original (same CPU) leaves out 1 pair(s) run on different CPUs." in lines


def test_the_precision_rule_is_decided_early_only_when_no_bf16_run_to_come_can_change_it(benchmark_script):
    table = benchmark_script(SCRIPT)
    # Seven pairs on one CPU, bf16 failing one of them; im8's bf16 run was made on another CPU.
    seven = [
        scored(method, f"im{i}_kernel{i}", isnr, "Intel Xeon")
        for i in range(1, 8)
        for method, isnr in (("improved", 9.0), ("improved_bf16", 0.5 if i == 4 else 9.5))
    ]
    bf16_elsewhere = scored("improved_bf16", "im8_kernel8", 9.50, "AMD EPYC")
    holds = [*seven, bf16_elsewhere, scored("improved", "im8_kernel8", 3.00, "Intel Xeon")]
    assert table.precision_rule_line(holds).endswith(
        "failures bf16 1, float32 0 (bf16 may not have more); decided, `32-true`: float32 runs on the 1 input(s) "
        "still unpaired add 0 failure(s), so no bf16 run to come can change it."
    )
    # float32 failing the unpaired input, or not run there yet: a bf16 run to come could still tie the failures.
    fails = [*seven, bf16_elsewhere, scored("improved", "im8_kernel8", 0.50, "Intel Xeon")]
    assert table.precision_rule_line(fails).endswith("as it stands, `32-true`; set when all the pairs are in.")
    assert table.precision_rule_line([*seven, bf16_elsewhere]).endswith("as it stands, `32-true`; set when all the pairs are in.")


def test_what_remains_lists_the_missing_runs_and_the_pair_each_input_needs(benchmark_script):
    table = benchmark_script(SCRIPT)
    levin = [
        scored("original", "im1_kernel1", 10.0, "AMD EPYC"),
        scored("improved", "im1_kernel1", 9.76, "AMD EPYC"), scored("improved_bf16", "im1_kernel1", 9.98, "AMD EPYC"),
        scored("improved_bf16", "im1_kernel5", 7.58, "Intel Xeon"),  # needs float32 on its CPU
        scored("improved", "im4_kernel4", 9.07, "AMD EPYC"),  # needs bf16 on its CPU
        scored("improved", "im2_kernel2", 11.55, "AMD EPYC"), scored("improved_bf16", "im2_kernel2", 1, "Intel Xeon"),
    ]  # fmt: skip
    kodak = [scored("improved", "kodim01_levin09_k1", 3.0, "AMD EPYC")]
    lines = table.remaining_rows({"levin8": levin, "kodak256": kodak})
    body = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert body["original, float32"][:2] == ["1", "16"] and body["improved, float32"][:2] == ["4", "16"]
    assert body["original, float32"][2].startswith("levin8: im2_kernel2, im3_kernel3,")
    assert "kodak256: kodim02_levin09_k2," in body["improved, float32"][2]
    assert body["improved_bf16 on levin8"][:2] == ["3", "8"]
    pairs = body["bf16 / float32 pairs on one CPU (levin8)"]
    assert pairs[:2] == ["1", "8"]
    assert "float32 on Intel Xeon: im1_kernel5" in pairs[2] and "bf16 on AMD EPYC: im4_kernel4" in pairs[2]
    assert "both precisions on one CPU: im2_kernel2, im3_kernel3," in pairs[2]


def test_every_count_of_failures_reads_evaluates_flag(benchmark_script):
    table = benchmark_script(SCRIPT)
    # evaluate's flag, not the table's rounding of the figure, decides: a 0.9999 dB run printed as 1.00.
    pair = [scored("improved", "im1_kernel1", 9.0, "Intel Xeon"), {**scored("improved_bf16", "im1_kernel1", 1.00, "Intel Xeon"), "failed": True}]
    pair[1]["verdict"] = pair[0]["verdict"] = "ok"
    pair[0]["isnr"] = pair[1]["isnr"] = pair[0]["error_ratio"] = pair[1]["error_ratio"] = 1.0
    assert "failures bf16 1, float32 0" in table.precision_rule_line(pair)
    bf16_row = next(line for line in table.method_rows("levin8", pair) if line.startswith("| improved_bf16 |"))
    assert "| 1 of 1 |" in bf16_row
    assert table.verdict_line(pair).endswith("catches 0 of 1 failure (aligned ISNR below 1 dB).")


def test_the_precision_rule_counts_pairs_on_one_cpu_and_decides_only_when_all_are_in(benchmark_script):
    table = benchmark_script(SCRIPT)
    # im2_kernel2's precisions ran on two CPUs: not a pair. The bf16 failure alone sets 32-true.
    assert table.precision_rule_line(PRECISION_PAIRS) == (
        "Default precision by the rule fixed on 2026-12-06 (benchmarks/paper_scale/README.md): 2 of 8 Levin pairs "
        "on one CPU (seed 0); mean bf16 − float32 -4.30 dB (the rule needs above -0.30); failures bf16 1, float32 0 "
        "(bf16 may not have more): as it stands, `32-true`; set when all the pairs are in."
    )
    close = [
        scored(method, f"im{i}_kernel{i}", isnr, "Intel Xeon")
        for i in range(1, 9)
        for method, isnr in (("improved", 9.0), ("improved_bf16", 9.0 - 0.25))
    ]
    assert table.precision_rule_line(close).endswith("mean bf16 − float32 -0.25 dB (the rule needs above -0.30); "
                                                     "failures bf16 0, float32 0 (bf16 may not have more): decided, `bf16-mixed`.")  # fmt: skip
    below = [{**run, "aligned_isnr": 8.6} if run["method"] == "improved_bf16" else run for run in close]
    assert table.precision_rule_line(below).endswith("decided, `32-true`.")
    assert table.precision_rule_line([]).endswith(": no bf16 / float32 pair on one CPU yet.")


def test_evaluates_runs_csv_is_read_as_the_package_reads_it(benchmark_script, monkeypatch, tmp_path):
    table = benchmark_script(SCRIPT)
    monkeypatch.setattr(table, "ROOT", tmp_path)
    monkeypatch.setattr(table, "RESULTS", tmp_path / "results")
    manifest = tmp_path / "manifest.csv"
    written = (
        "method,input,seed,aligned_isnr,isnr,error_ratio,wall_time_s,cpu,cpu_threads,cpu_features,failed,verdict,shift_y,shift_x\n"
        "original,im1_kernel1,0,0.61234,-0.5,,3600,AMD EPYC,2,avx2,1,ok,-5,1.25\n"
    )

    def evaluate_writes(command, **kwargs):  # what `evaluate` leaves in --output_dir
        output = tmp_path / command[command.index("--output_dir") + 1]
        output.mkdir(parents=True)
        (output / "runs.csv").write_text(written)

    monkeypatch.setattr(table.subprocess, "run", evaluate_writes)
    [run] = table.evaluate("levin8", manifest, methods=["original"])
    assert (run["seed"], run["failed"], run["shift_y"], run["cpu_threads"]) == (0, True, -5.0, 2)
    assert math.isnan(run["error_ratio"]) and run["verdict"] == "ok"
    run["cpu"] = table.cpu(run)
    assert table.ledger_rows([run])[2] == "| im1_kernel1 | 0 | original | 0.61 | -0.50 | — | ok | AMD EPYC (avx2), 2 threads | 1 h 00 min |"
    assert table.verdict_line([run]).endswith("catches 0 of 1 failure (aligned ISNR below 1 dB).")


def test_a_method_whose_only_run_was_stopped_before_its_end_is_not_banked(benchmark_script, tmp_path):
    common = benchmark_script("_common.py")
    for method, status in (("original", "done"), ("improved", "stopped"), ("fast", "failed")):
        folder = tmp_path / method / "kodim02" / "seed0"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"status": status}))
    (tmp_path / "nonblind" / "kodim02" / "seed0").mkdir(parents=True)  # started, nothing written yet
    # A stopped run is an estimate part of the way, which evaluate skips: banked, the method would
    # leave evaluate no run to score. A diverged (failed) run is the method's result for its seed.
    assert common.banked_methods(tmp_path) == ["fast", "original"]
