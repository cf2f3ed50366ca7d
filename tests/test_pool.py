"""``batch --members``: a pool of methods per (input, seed), the sparsest result kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONF
from test_batch import make_manifest, read_rows

from lightning_deblur.commands.fit import main
from lightning_deblur.core.errors import InputError
from lightning_deblur.commands.pool import choose, read_members


def summary(name: str, seed: int, status: str, sparsity: str = "", isnr: str = "") -> dict:
    """A member batch's summary row as read back from its CSV (text values)."""
    return {"name": name, "seed": str(seed), "status": status, "gradient_sparsity": sparsity,
            "aligned_isnr": isnr, "run_dir": f"{name}/seed{seed}"}  # fmt: skip


def test_the_lowest_gradient_sparsity_is_kept_once_every_member_has_finished():
    rows = choose({
        "a": [summary("x", 0, "done", "1.02", "3.0"), summary("x", 1, "done", "0.98", "1.0"),
              summary("y", 0, "done", "1.10"), summary("z", 0, "failed")],
        "b": [summary("x", 0, "skipped-done", "0.99", "0.5"), summary("x", 1, "done", "1.01", "2.0"),
              summary("y", 0, "failed"), summary("z", 0, "failed")],
        "c": [summary("x", 0, "done", "1.00"), summary("x", 1, "done", "nan"),
              summary("y", 0, "pending"), summary("z", 0, "failed")],
    })  # fmt: skip
    by_key = {(row["name"], row["seed"]): row for row in rows}
    assert list(by_key) == [("x", "0"), ("x", "1"), ("y", "0"), ("z", "0")]  # sorted by input, then seed
    # The sparsest, not the best by the reference (a's 3.0 dB): the pool has no reference.
    assert by_key["x", "0"]["kept"] == "b" and by_key["x", "0"]["aligned_isnr"] == "0.5"
    assert by_key["x", "0"]["b_status"] == "done"  # finished by an earlier run of the batch
    assert by_key["x", "0"]["run_dir"] == "x/seed0" and by_key["x", "0"]["gradient_sparsity"] == "0.99"
    assert by_key["x", "1"]["kept"] == "a"  # c's NaN sparsity is never kept
    assert by_key["x", "1"]["b_aligned_isnr"] == "2.0"  # every member's figures stay in the row
    assert by_key["y", "0"]["status"] == "pending" and "kept" not in by_key["y", "0"]  # c still to run
    assert by_key["z", "0"]["status"] == "failed" and "kept" not in by_key["z", "0"]
    # A no-blur result (sparsity ≈ the input's by construction) is kept only if every result is.
    stuck = summary("x", 0, "done", "0.90") | {"verdict": "no-blur"}
    assert choose({"a": [stuck], "b": [summary("x", 0, "done", "1.05") | {"verdict": "ok"}]})[0]["kept"] == "b"
    assert choose({"a": [stuck], "b": [summary("x", 0, "done", "1.05") | {"verdict": "no-blur"}]})[0]["kept"] == "a"
    # Finished, but nothing to rank by (results from before the sparsity was recorded).
    assert choose({"a": [summary("x", 0, "done")], "b": [summary("x", 0, "failed")]})[0]["status"] == "unranked"
    # A member that has not written a row for an input yet leaves it pending too.
    assert choose({"a": [summary("x", 0, "done", "1.0")], "b": []})[0]["status"] == "pending"


def write_pool(folder: Path, text: str) -> Path:
    path = folder / "pool.yaml"
    path.write_text(text)
    return path


def test_member_options_are_read_in_order_with_configs_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    pool = write_pool(tmp_path / "sub", "members:\n  b: [--config, m.yaml, --model.iterations, 5]\n  a: [--trainer.fast, 1]\n")
    members = read_members(pool)
    assert list(members) == ["b", "a"]
    assert members["b"] == ["--config", str(tmp_path / "sub" / "m.yaml"), "--model.iterations", "5"]
    assert members["a"] == ["--trainer.fast", "1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("members: [a, b]\n", "needs a 'members:' mapping of two or more"),
        ("members:\n  a: [--x, 1]\n", "needs a 'members:' mapping of two or more"),
        ("members:\n  a/b: [--x, 1]\n  c: [--x, 2]\n", "names a folder"),
        ("members:\n  a: --x 1\n  c: [--x, 2]\n", "give its fit options as a list"),
        ("members: {a: [--x, 1], c: [--x, 2]\n", "is not valid YAML"),
    ],
)
def test_a_bad_members_file_is_one_line(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_members(write_pool(tmp_path, text))


@pytest.mark.slow
def test_a_pool_runs_every_member_and_keeps_the_sparsest_result(tmp_path, capsys, no_cluster):
    """Two tiny members on two inputs: each member is a resumable batch of its own, and
    pool.csv keeps, per (input, seed), the member whose summary row is the sparsest."""
    manifest = make_manifest(tmp_path, ["p", "q"])
    pool = write_pool(
        tmp_path,
        f"members:\n  short: [--config, {CONF / 'tiny.yaml'}, --model.iterations, '8']\n"
        f"  long: [--config, {CONF / 'tiny.yaml'}, --model.iterations, '14']\n",
    )
    output = tmp_path / "out"
    args = ["batch", "--members", str(pool), "--manifest", str(manifest), "--output_dir", str(output)]
    main(args)
    out = capsys.readouterr().out
    assert "pool: member short" in out and "pool: member long" in out
    assert "kept the sparsest result for 2 of 2 (input, seed)" in out
    members = {name: {row["name"]: row for row in read_rows(output / name / "summary.csv")} for name in ("short", "long")}
    assert {row["iterations"] for row in members["short"].values()} == {"8"}  # each member's own options
    assert {row["iterations"] for row in members["long"].values()} == {"14"}
    rows = read_rows(output / "pool.csv")
    assert "short_aligned_isnr" not in rows[0]  # no true kernels: no aligned figures
    assert [(row["name"], row["seed"], row["status"]) for row in rows] == [("p", "0", "done"), ("q", "0", "done")]
    for row in rows:
        sparsity = {name: float(members[name][row["name"]]["gradient_sparsity"]) for name in members}
        assert row["kept"] == min(sparsity, key=sparsity.get)
        kept = members[row["kept"]][row["name"]]
        assert row["run_dir"] == kept["run_dir"] and row["isnr"] == kept["isnr"]
        assert Path(row["run_dir"], "deblurred.png").is_file()

    assert "pool: kept" not in out.replace("pool: kept the sparsest", "")  # two rows: the table says it

    # The same command again: every member's jobs are finished, the table is the same.
    before = (output / "pool.csv").read_text()
    main(args)
    assert (output / "pool.csv").read_text() == before
    assert capsys.readouterr().out.count("2 finished before, 0 to run") == 2

    # One photo (--images with a file): the line names the kept result's image.
    main(["batch", "--members", str(pool), "--images", str(tmp_path / "p.png"), "--kernel_size", "5",
          "--output_dir", str(tmp_path / "one")])  # fmt: skip
    (row,) = read_rows(tmp_path / "one" / "pool.csv")
    assert f"pool: kept {row['kept']}: {Path(row['run_dir']) / 'deblurred.png'}" in capsys.readouterr().out


def test_members_and_a_config_together_are_refused(tmp_path, capsys, no_cluster):
    manifest = make_manifest(tmp_path, ["p"])
    pool = write_pool(tmp_path, f"members:\n  a: [--config, {CONF / 'tiny.yaml'}]\n  b: [--config, {CONF / 'tiny.yaml'}]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", "--members", str(pool), "--config", str(CONF / "tiny.yaml"), "--manifest", str(manifest),
              "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "leave --config out" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_pool_finds_the_kernel_size_in_every_member(tmp_path, capsys, no_cluster):
    """``--kernel_size auto`` reaches every member's jobs: each probes and chooses its
    size (within ``--max_kernel_size``), and the pool keeps one of them as usual."""
    make_manifest(tmp_path, ["p"])
    small = "--model.image_net.levels, '3', --model.kernel_probe.iterations, '6'"  # a probe of half of 37x31
    pool = write_pool(
        tmp_path,
        f"members:\n  original: [--config, {CONF / 'tiny.yaml'}, {small}]\n"
        f"  improved: [--config, {CONF / 'tiny_improved.yaml'}, {small}]\n",
    )
    output = tmp_path / "out"
    main(["batch", "--members", str(pool), "--images", str(tmp_path / "p.png"), "--kernel_size", "auto",
          "--max_kernel_size", "9", "--output_dir", str(output)])  # fmt: skip
    for member in ("original", "improved"):
        (row,) = read_rows(output / member / "summary.csv")
        assert row["status"] == "done" and row["kernel_size"] == "auto"
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert metrics["kernel_size_choice"]["max_kernel_size"] == [9, 9]
        assert metrics["kernel_size"] == metrics["kernel_size_choice"]["kernel_size"]
    (kept,) = read_rows(output / "pool.csv")
    assert kept["kept"] in ("original", "improved") and kept["status"] == "done"
