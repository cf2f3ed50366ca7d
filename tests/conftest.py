"""Shared fixtures: small synthetic blurred images and a way to run the real CLI in-process."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback

from lightning_deblur.commands.batch.slots import _cpu_cores
from lightning_deblur.commands.fit import main
from lightning_deblur.commands.ranks import CLUSTER_VARIABLES
from lightning_deblur.core.imagefiles import write_image
from lightning_deblur.core.physics import blur_valid

CONF = Path(__file__).parent / "conf"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def pytest_configure(config):
    """Under pytest-xdist (scripts/test.sh runs one worker per core) each worker gets its
    share of the cores, so workers do not oversubscribe them; the jobs a test starts as
    subprocesses inherit it through OMP_NUM_THREADS."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, _cpu_cores() // int(workers))  # the cores this process may use, as batch counts them
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture
def no_cluster(monkeypatch):
    """No rank variables from the machine running the tests; one thread per job.

    (batch leaves a given OMP_NUM_THREADS alone: on a busy 2-core machine, two threads
    per job can make a tiny job many times slower.)
    """
    for name in (*CLUSTER_VARIABLES, "SLURM_JOB_NAME", "SLURM_NTASKS_PER_NODE") + tuple(
        name for name in os.environ if name.startswith("SLURM_ARRAY")
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)  # follows OMP_NUM_THREADS
    return monkeypatch


@pytest.fixture
def benchmark_script():
    """Loads a script under benchmarks/ as a module (the studies are scripts, not a package):
    ``benchmark_script("paper_scale/fall_after_switch.py").main([...])``."""

    def load(relative: str):
        path = BENCHMARKS / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(autouse=True)
def run_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    """Every test runs in a folder of its own: a Trainer without a logger writes a job's
    results into its working directory, which must not be the project's."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny tensors: more threads only add
    synchronisation, which is costly on a busy machine. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_sharp(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A piecewise-smooth test picture in [0.1, 0.9]: a gradient with random boxes and disks."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    image = 0.3 + 0.2 * cols / width
    for _ in range(6):
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        image[top : top + rng.integers(4, height // 2), left : left + rng.integers(4, width // 2)] = rng.uniform(0.1, 0.9)
    for _ in range(3):
        cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 8)
        image[(rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] = rng.uniform(0.1, 0.9)
    return np.clip(image, 0.1, 0.9)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def blur(support: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Valid true convolution with the project's own forward model, as float64 numpy."""
    return blur_valid(torch.from_numpy(support)[None, None], torch.from_numpy(kernel))[0, 0].double().numpy()


@pytest.fixture
def blurred_case(tmp_path: Path):
    """A 37×31 grey 8-bit blurred image (5×5 Gaussian blur) with its sharp crop.

    Returns a dict with the paths ``image``, ``sharp`` and the ``kernel`` array.
    """
    kernel = gaussian_kernel(5, 1.2)
    support = synthetic_sharp(37 + 4, 31 + 4)
    write_image(tmp_path / "blurred.png", blur(support, kernel))
    write_image(tmp_path / "sharp.png", support[2:-2, 2:-2])
    return {"image": tmp_path / "blurred.png", "sharp": tmp_path / "sharp.png", "kernel": kernel, "root": tmp_path}


def run_fit(tmp_path: Path, *extra: str, config: Path = CONF / "tiny.yaml") -> Path:
    """Run ``python -m lightning_deblur fit`` in-process; return the run folder."""
    logs = tmp_path / "logs"
    main(["fit", "--config", str(config), "--trainer.logger.init_args.save_dir", str(logs), *extra])
    runs = sorted(p.parent for p in logs.glob("*/version_*/metrics.json"))
    assert runs, f"no finished run under {logs}"
    return max(runs, key=lambda p: p.stat().st_mtime)


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


class KillAt(Callback):
    """Simulates a job killed right after step ``step`` (raises out of the fit)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated kill")


class StopAt(Callback):
    """Tells the Trainer to stop right after step ``step``, as ``--timer.duration`` does when
    its time is up (a normal end of fit, before the plan's last step)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.should_stop = True


def write_easy_case(folder: Path) -> None:
    """A 40×36 picture under a 7×7 Gaussian blur (σ 2): ``blurred.png``, ``sharp.png`` and
    ``true_kernel.npy`` in ``folder``. Blind runs from the Gaussian initialization gain
    2.2–3.4 dB on it (seeds 0–4, 200 iterations, 16-channel net; docs/RESULTS.md)."""
    kernel = gaussian_kernel(7, 2.0)
    support = synthetic_sharp(40 + 6, 36 + 6)
    write_image(folder / "blurred.png", blur(support, kernel))
    write_image(folder / "sharp.png", support[3:-3, 3:-3])
    np.save(folder / "true_kernel.npy", kernel)
