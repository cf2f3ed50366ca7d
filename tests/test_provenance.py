"""metrics.json's ``software``: the commit a result was made from, told apart from a
checkout with changes, and nothing invented outside a checkout; and the CPU's slug that names
benchmark result files measured on one CPU; the thread count, which changes a CPU run's trajectory;
the vector extensions, which tell apart CPUs sharing a model name."""

from __future__ import annotations

import subprocess

import torch

from lightning_deblur.core import provenance


def git(folder, *arguments) -> str:
    return subprocess.run(["git", *arguments], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


def test_the_commit_is_the_checkouts_and_a_change_to_a_tracked_file_is_told(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)
    assert provenance.code_commit() == {"commit": git(tmp_path, "rev-parse", "HEAD"), "modified": False}
    (tmp_path / "new.txt").write_text("untracked: not part of the code\n")
    assert provenance.code_commit()["modified"] is False
    (tmp_path / "a.txt").write_text("two\n")
    assert provenance.code_commit()["modified"] is True


def test_the_cpu_threads_are_recorded():
    threads = torch.get_num_threads()
    provenance.provenance.cache_clear()
    try:
        torch.set_num_threads(1)
        assert provenance.provenance()["cpu_threads"] == 1
    finally:
        torch.set_num_threads(threads)
        provenance.provenance.cache_clear()


def test_the_cpus_vector_extensions_are_read_from_its_flags(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(provenance, "CPUINFO", cpuinfo)
    assert provenance.cpu_features() is None and provenance.cpu_tier(None) == ""  # no /proc/cpuinfo
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n")
    assert provenance.cpu_name() == "AMD EPYC"
    assert provenance.cpu_features() == ["avx2"] and provenance.cpu_tier(["avx2"]) == "avx2"
    cpuinfo.write_text("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: amx_bf16 avx512_bf16 avx512f avx2 amx_tile\n")
    assert provenance.cpu_features() == ["avx2", "avx512f", "avx512_bf16", "amx_bf16"]
    assert provenance.cpu_tier(provenance.cpu_features()) == "amx_bf16"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm sve\n")  # ARM: none of them
    assert provenance.cpu_features() == [] and provenance.cpu_tier([]) == ""


def test_outside_a_checkout_there_is_no_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)
    assert provenance.code_commit() is None


def test_result_files_are_named_by_a_slug_of_the_cpu(benchmark_script, monkeypatch):
    common = benchmark_script("_common.py")
    for model, slug in [
        ("AMD EPYC", "amd-epyc"),
        ("AMD EPYC 7B13", "amd-epyc-7b13"),
        ("Intel(R) Xeon(R) Processor", "intel-xeon"),
        ("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "intel-xeon-platinum-8481c-2-70ghz"),
    ]:
        monkeypatch.setattr(common, "cpu_name", lambda model=model: model)
        monkeypatch.setattr(common, "cpu_features", lambda: None)
        assert common.cpu_slug() == slug
    # One model name, two kinds of CPU: the most capable vector extension tells them apart.
    monkeypatch.setattr(common, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(common, "cpu_features", lambda: ["avx2"])
    assert common.cpu_slug() == "amd-epyc-avx2"
    monkeypatch.setattr(common, "cpu_features", lambda: ["avx2", "avx512f", "avx512_bf16"])
    assert common.cpu_slug() == "amd-epyc-avx512-bf16"


def test_a_measurement_on_another_machine_never_overwrites_this_one(benchmark_script, monkeypatch, tmp_path):
    common = benchmark_script("_common.py")
    monkeypatch.setattr(common.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(common, "cpu_features", lambda: None)
    for model in ("AMD EPYC", "Intel(R) Xeon(R) Processor"):
        monkeypatch.setattr(common, "cpu_name", lambda model=model: model)
        common.save("step_time_255_27", {"s_per_step": 1.0}, tmp_path)
    common.save("step_time_255_27_intel-xeon", {}, tmp_path)  # a name that already ends with the machine
    common.save("bank_stop_points", {}, tmp_path, measured_here=False)  # an analysis of committed files
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["bank_stop_points.json", "step_time_255_27_amd-epyc.json", "step_time_255_27_intel-xeon.json"]
    monkeypatch.setattr(common.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(common.torch.cuda, "get_device_name", lambda: "NVIDIA H200")
    assert common.machine_slug() == "h200"  # the suffix the lent GPU machine's results carry
