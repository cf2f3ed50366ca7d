"""The default precision: bf16-mixed for wide nets on CPUs with native bfloat16, float32 elsewhere."""

from __future__ import annotations

import pytest
from conftest import read_metrics, run_fit

from lightning_deblur.core import precision


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    (tmp_path / "with").write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 sse\n")
    (tmp_path / "without").write_text("flags\t\t: fpu avx2 avx512f sse\n")
    assert precision.cpu_has_native_bf16(tmp_path / "with")
    assert not precision.cpu_has_native_bf16(tmp_path / "without")
    assert not precision.cpu_has_native_bf16(tmp_path / "missing")


def test_gpus_and_narrow_nets_default_to_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.default_precision("cpu", 128) == "bf16-mixed"
    assert precision.default_precision("cpu", 64) == "bf16-mixed"
    assert precision.default_precision("cpu", 32) == "32-true"
    assert precision.default_precision("gpu", 128) == "32-true"
    assert precision.default_precision("cuda", 128) == "32-true"


@pytest.mark.slow
@pytest.mark.parametrize(
    "native, channels, expected", [(True, 64, "bf16-mixed"), (False, 64, "32-true"), (True, 8, "32-true")]
)
def test_a_job_without_a_precision_gets_the_default(blurred_case, tmp_path, monkeypatch, native, channels, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    run = run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
        "--model.image_net.channels", str(channels),
    )  # fmt: skip
    assert read_metrics(run)["precision"] == expected
    assert f"precision: {expected}" in (run / "config.yaml").read_text()  # a resume repeats it


def test_an_explicit_precision_wins(blurred_case, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    run = run_fit(
        tmp_path, "--data.image", str(blurred_case["image"]), "--data.kernel_size", "5",
        "--model.image_net.channels", "64", "--trainer.precision", "32-true",
    )  # fmt: skip
    assert read_metrics(run)["precision"] == "32-true"
