"""``python -m lightning_deblur evaluate`` on a tiny hand-made results layout."""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import blur, gaussian_kernel, synthetic_sharp

from lightning_deblur.commands.fit import main
from lightning_deblur.core.errors import InputError
from lightning_deblur.commands.evaluate import evaluate, parse_results, spread_list_option
from lightning_deblur.commands.evaluate_tables import FoundRun, pick_scores, read_runs_csv
from lightning_deblur.core.imagefiles import read_grey, read_image, write_image, write_json, write_kernel_npy
from lightning_deblur.core.metrics import psnr_per_image
from lightning_deblur.core.alignment import aligned_psnr, error_ratio, kernel_error
from lightning_deblur.core.manifest import ManifestRow, write_manifest

SIZE = 48
SEEDS = (0, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def layout(tmp_path: Path) -> dict:
    """A dataset of two inputs ('grey', 5×5 blur; 'colour', RGB, 7×7 blur) and two methods:

    - ``perfect``: deblurred = the sharp image, kernel = the true kernel;
    - ``lazy``: deblurred = the blurred input, kernel = a delta;

    each with seeds 0 and 1 (identical results), and true-kernel results (seed 0 only)
    that are the sharp image plus a little noise.
    """
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    cases = []
    for name, ksize, colour in (("grey", 5, False), ("colour", 7, True)):
        kernel = gaussian_kernel(ksize, 1.3)
        pad = ksize - 1
        planes = [synthetic_sharp(SIZE + pad, SIZE + pad, seed=s) for s in ((1,) if not colour else (2, 3, 4))]
        support = np.stack(planes, -1) if colour else planes[0]
        blurred = np.stack([blur(p, kernel) for p in planes], -1) if colour else blur(planes[0], kernel)
        half = pad // 2
        write_image(data / "blurred" / f"{name}.png", blurred)
        write_image(data / "sharp" / f"{name}.png", support[half:-half, half:-half])
        write_kernel_npy(data / "kernels" / f"{name}.npy", kernel)
        cases.append(
            ManifestRow(name, f"blurred/{name}.png", (ksize, ksize), f"sharp/{name}.png", f"kernels/{name}.npy", 0.0)
        )
    write_manifest(data / "manifest.csv", cases)
    runs = tmp_path / "runs"
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    for case in cases:
        name = case.name
        for seed in SEEDS:
            for method, image, kernel in (
                ("perfect", data / case.sharp, np.load(data / case.kernel)),
                ("lazy", data / case.image, delta),
            ):
                folder = runs / method / name / f"seed{seed}"
                folder.mkdir(parents=True)
                shutil.copy(image, folder / "deblurred.png")
                write_kernel_npy(folder / "kernel.npy", kernel)
                recorded = {"wall_time_s": 2.0 + seed, "aligned_isnr": 123.0}
                if method == "lazy":
                    recorded["chosen_start"] = seed  # a job with several starts (--model.starts)
                    recorded["restarts"] = 1 - seed  # and restarts (--model.restarts)
                    recorded["software"] = {"cpu": "Example CPU 7000", "cpu_threads": 2 + seed, "cpu_features": ["avx2", "avx512f"]}
                write_json(folder / "metrics.json", recorded)
        sharp = read_image(data / case.sharp).pixels
        write_image(
            runs / "nonblind" / name / "seed0" / "deblurred.png",
            np.clip(sharp + rng.normal(0, 0.02, sharp.shape), 0, 1),
        )
    (runs / "perfect" / "summary.csv").write_text("ignored\n")
    return {"data": data, "runs": runs, "cases": cases, "out": tmp_path / "eval"}


def run_evaluate(layout: dict, *extra: str) -> dict:
    main([
        "evaluate", "--manifest", str(layout["data"] / "manifest.csv"),
        "--results", f"perfect={layout['runs'] / 'perfect'}", f"lazy={layout['runs'] / 'lazy'}",
        "--true_kernel_results", str(layout["runs"] / "nonblind"),
        "--output_dir", str(layout["out"]), *extra,
    ])  # fmt: skip
    return json.loads((layout["out"] / "summary.json").read_text())


def test_evaluate_recomputes_every_figure_and_summarizes_by_method(layout, capsys):
    summary = run_evaluate(layout)
    assert "wrote" in capsys.readouterr().out
    rows = read_runs_csv(layout["out"] / "runs.csv")
    assert [(r["method"], r["input"], r["seed"]) for r in rows] == [
        (m, n, s) for m in ("perfect", "lazy") for n in ("grey", "colour") for s in SEEDS
    ]
    data = layout["data"]
    input_aligned, expected_isnr = {}, {"perfect": [], "lazy": []}
    for case in layout["cases"]:
        sharp, blurred = read_grey(data / case.sharp), read_grey(data / case.image)
        nonblind = read_grey(layout["runs"] / "nonblind" / case.name / "seed0" / "deblurred.png")
        input_aligned[case.name] = float(aligned_psnr(blurred, sharp)[0])
        mine = {r["method"]: r for r in rows if r["input"] == case.name and r["seed"] == 1}
        perfect, lazy = mine["perfect"], mine["lazy"]
        # perfect: identical to the reference (PSNR clamps at 200 dB); ISNR = that − input PSNR
        assert perfect["aligned_psnr"] > 150 and perfect["aligned_ssim"] == pytest.approx(1.0, abs=1e-6)
        assert perfect["input_aligned_psnr"] == pytest.approx(input_aligned[case.name], abs=1e-4)
        assert perfect["aligned_isnr"] == pytest.approx(perfect["aligned_psnr"] - input_aligned[case.name], abs=1e-4)
        assert perfect["kernel_error"] == pytest.approx(0.0, abs=1e-6)
        assert perfect["error_ratio"] == pytest.approx(0.0, abs=1e-6) and not perfect["failed"]
        # lazy: the blurred input itself, so no improvement at all
        assert lazy["aligned_psnr"] == pytest.approx(input_aligned[case.name], abs=1e-4)
        # ISNR is a difference of two float32 PSNRs near 25 dB, whose spacing is ~2e-6 dB.
        assert lazy["aligned_isnr"] == pytest.approx(0.0, abs=1e-5) and lazy["isnr"] == pytest.approx(0.0, abs=1e-5)
        assert lazy["psnr"] == pytest.approx(float(psnr_per_image(blurred, sharp)[0]), abs=1e-4) and lazy["failed"]
        delta = torch.zeros(5, 5, dtype=torch.float64)
        delta[2, 2] = 1
        truth = torch.from_numpy(np.load(data / case.kernel)).double()
        assert lazy["kernel_error"] == pytest.approx(float(kernel_error(delta, truth)[0]), abs=1e-5)
        assert lazy["error_ratio"] == pytest.approx(float(error_ratio(blurred, nonblind, sharp)[0]), rel=1e-5)
        assert lazy["true_kernel_seed"] == 0  # seed 1 has no true-kernel result: the first seed's is used
        assert lazy["wall_time_s"] == 3.0  # from metrics.json; its aligned_isnr (123) is not used
        assert lazy["chosen_start"] == 1 and perfect["chosen_start"] is None
        assert lazy["restarts"] == 0 and perfect["restarts"] is None
        # The CPU and its thread count as the run recorded them; empty for a run that did not.
        assert lazy["cpu"] == "Example CPU 7000" and lazy["cpu_threads"] == 3 and lazy["cpu_features"] == "avx2 avx512f"
        assert perfect["cpu"] == "" and perfect["cpu_threads"] is None and perfect["cpu_features"] == ""
        # The blurred input against itself: a ratio of 1; the sharp image has sparser edges.
        assert lazy["gradient_sparsity"] == pytest.approx(1.0) and perfect["gradient_sparsity"] < 0.99
        for row in (perfect, perfect):
            expected_isnr["perfect"] += [row["aligned_psnr"] - input_aligned[case.name]]
        expected_isnr["lazy"] += [0.0, 0.0]

    perfect, lazy = summary["methods"]["perfect"], summary["methods"]["lazy"]
    assert perfect["runs"] == lazy["runs"] == 4 and perfect["inputs"] == 2
    assert perfect["failure_rate"] == 0.0 and lazy["failure_rate"] == 1.0
    assert perfect["per_input_std_mean"] == pytest.approx(0.0, abs=1e-9)  # equal seeds
    assert perfect["isnr_mean"] == pytest.approx(statistics.fmean(expected_isnr["perfect"]), abs=1e-3)
    assert perfect["isnr_std"] == pytest.approx(statistics.pstdev(expected_isnr["perfect"]), abs=1e-3)
    assert perfect["isnr_median"] == pytest.approx(statistics.median(expected_isnr["perfect"]), abs=1e-3)
    assert perfect["per_input_median_mean"] == pytest.approx(perfect["isnr_mean"], abs=1e-3)
    assert lazy["isnr_mean"] == pytest.approx(0.0, abs=1e-6) and lazy["isnr_std"] == pytest.approx(0.0, abs=1e-6)
    assert lazy["aligned_psnr_mean"] == pytest.approx(statistics.fmean(input_aligned.values()), abs=1e-3)
    assert lazy["wall_time_s_mean"] == pytest.approx(2.5) and lazy["error_ratio_runs"] == 4
    assert lazy["error_ratio_mean"] == pytest.approx(
        statistics.fmean(r["error_ratio"] for r in rows if r["method"] == "lazy")
    )
    by_input = summary["per_input_isnr_mean"]
    assert list(by_input) == ["grey", "colour"]
    assert by_input["grey"]["lazy"] == pytest.approx(0.0, abs=1e-6)
    assert by_input["colour"]["perfect"] == pytest.approx(200 - input_aligned["colour"], abs=0.5)

    markdown = (layout["out"] / "summary.md").read_text()
    assert "| perfect | 4 | 2 |" in markdown and "| lazy | 4 | 2 |" in markdown and "4 (100%)" in markdown
    assert "| grey |" in markdown and "| colour |" in markdown
    for table in markdown.split("\n\n"):
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) <= 1, table  # every row has the header's columns


def test_results_option_syntaxes_and_method_names(layout, tmp_path):
    manifest = str(layout["data"] / "manifest.csv")
    perfect = layout["runs"] / "perfect"
    # a jsonargparse list, without --true_kernel_results (no error ratio)
    main(["evaluate", "--manifest", manifest, "--results", f"[a={perfect}, b={layout['runs'] / 'lazy'}]",
          "--output_dir", str(tmp_path / "e1"), "--border", "6", "--max_shift", "2"])  # fmt: skip
    summary = json.loads((tmp_path / "e1" / "summary.json").read_text())
    assert list(summary["methods"]) == ["a", "b"] and summary["methods"]["a"]["error_ratio_mean"] is None
    assert summary["settings"]["border"] == 6
    # a single path without METHOD=: the folder's name
    main(["evaluate", "--manifest", manifest, "--results", str(perfect), "--output_dir", str(tmp_path / "e2")])
    assert list(json.loads((tmp_path / "e2" / "summary.json").read_text())["methods"]) == ["perfect"]
    assert parse_results(["x=runs/a", "runs/lr=0.01"]) == {"x": Path("runs/a"), "lr=0.01": Path("runs/lr=0.01")}
    assert spread_list_option(["--results", "a=x", "b=y", "--border", "3"], "--results") == [
        "--results", '["a=x", "b=y"]', "--border", "3"
    ]  # fmt: skip
    with pytest.raises(InputError, match="twice"):
        parse_results(["a=x", "a=y"])


def test_unfinished_runs_are_skipped_and_bad_input_is_one_line(layout, tmp_path, capsys):
    unfinished = layout["runs"] / "lazy" / "grey" / "seed7"
    unfinished.mkdir()
    shutil.copy(layout["runs"] / "lazy" / "grey" / "seed0" / "deblurred.png", unfinished)
    # A job stopped before its end (a signal, a time budget) writes its files and a
    # metrics.json that says so: an estimate part of the way, not a result to score.
    stopped = layout["runs"] / "lazy" / "grey" / "seed8"
    shutil.copytree(layout["runs"] / "lazy" / "grey" / "seed0", stopped)
    write_json(stopped / "metrics.json", {"status": "stopped", "wall_time_s": 1.0})
    summary = evaluate(str(layout["data"] / "manifest.csv"), f"lazy={layout['runs'] / 'lazy'}", str(tmp_path / "e"))
    assert summary["methods"]["lazy"]["runs"] == 4
    assert "2 unfinished run(s) of 'lazy' skipped" in capsys.readouterr().err
    shutil.rmtree(unfinished)
    shutil.rmtree(stopped)

    manifest = str(layout["data"] / "manifest.csv")
    for argv, message in (
        (["--manifest", manifest, "--results", f"x={tmp_path / 'nowhere'}"], "not found"),
        (["--manifest", str(tmp_path / "no.csv"), "--results", str(layout["runs"] / "lazy")], "manifest"),
        (["--manifest", manifest, "--results", str(layout["data"])], "no finished runs"),
        (["--manifest", manifest, "--results", str(layout["runs"] / "lazy"), "--border", "2"], "--max_shift"),
        (
            ["--manifest", manifest, "--results", str(layout["runs"] / "lazy"), "--border", "19", "--max_shift", "2"],
            "border",
        ),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", "--output_dir", str(tmp_path / "bad"), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "bad").exists()


def test_runs_csv_round_trip_keeps_empty_cells_as_nan(layout, tmp_path):
    evaluate(str(layout["data"] / "manifest.csv"), [f"lazy={layout['runs'] / 'lazy'}"], str(tmp_path / "e"))
    with (tmp_path / "e" / "runs.csv").open() as handle:
        raw = list(csv.DictReader(handle))
    assert raw[0]["error_ratio"] == "" and raw[0]["failed"] == "1"
    rows = read_runs_csv(tmp_path / "e" / "runs.csv")
    assert math.isnan(rows[0]["error_ratio"]) and rows[0]["failed"] is True and rows[0]["seed"] == 0


def test_keeping_the_sparsest_run_per_input_is_scored_against_the_oracle():
    def run(name: str, seed: int, sparsity: float, isnr: float) -> FoundRun:
        return FoundRun("m", name, seed, Path("."), figures={"gradient_sparsity": sparsity, "aligned_isnr": isnr})

    runs = [
        run("a", 0, 1.02, 0.5), run("a", 1, 0.98, 2.0), run("a", 2, 1.00, 1.5),  # the sparsest is the best
        run("b", 0, 0.97, 0.3), run("b", 1, 1.01, 1.2),  # the sparsest failed; the other did not
        run("c", 0, 0.90, 9.0),  # one run: nothing to choose
    ]
    scores = pick_scores(runs, failure_db=1.0)
    assert scores["pick_inputs"] == 2 and scores["pick_is_best"] == 1
    assert scores["pick_isnr_mean"] == pytest.approx((2.0 + 0.3) / 2) and scores["pick_failures"] == 1
    assert scores["oracle_isnr_mean"] == pytest.approx((2.0 + 1.2) / 2) and scores["oracle_failures"] == 0
    assert math.isnan(pick_scores(runs[-1:], failure_db=1.0)["pick_isnr_mean"])
