"""The multiscale geometry: what one scale hands up is in register with the next scale's input.

A sharp image and a kernel are defined as continuous functions of the position (in
full-resolution pixels from the image centre), so the true image and kernel of every
scale can be sampled exactly. Each scale's observation is made by the job itself from
the full-size blurred image. The true coarse image and kernel are handed up through the
job's own transition (:func:`handed_up`), and their re-blur must match the finer scale's
observation to interpolation error: no shift, no magnification error.
"""

from __future__ import annotations

import math

import pytest
import torch

from lightning_deblur.job.data import Observation
from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec
from lightning_deblur.job.deblur_job import DeblurJob
from lightning_deblur.job.multiscale import handed_up
from lightning_deblur.core.physics import blur_valid
from lightning_deblur.core.planning import ScalesSpec

SUBSAMPLES = 8
"""Sub-samples per pixel and axis when a kernel's density is integrated over its pixels."""


def centred_grid(size: tuple[int, int], pitch: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column offsets ``(H, W)`` (float64, full-resolution pixels) of a ``size``
    grid's pixel centres from its centre, ``pitch`` full-resolution pixels apart."""
    rows = (torch.arange(size[0], dtype=torch.float64) - (size[0] - 1) / 2) * pitch[0]
    cols = (torch.arange(size[1], dtype=torch.float64) - (size[1] - 1) / 2) * pitch[1]
    return torch.meshgrid(rows, cols, indexing="ij")


class Scene:
    """A smooth sharp image (Gaussian blobs, σ 4–7 px) and an off-centre bent stroke as
    the kernel, both continuous, scaled to a full-size image and kernel size."""

    def __init__(self, image_size: tuple[int, int], kernel_size: tuple[int, int], seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.image_size = image_size
        self.blobs = [
            (
                (torch.rand(2, generator=generator, dtype=torch.float64) - 0.5) * torch.tensor(image_size),
                4 + 3 * torch.rand(1, generator=generator).item(),
                torch.rand(1, generator=generator).item(),
            )
            for _ in range(40)
        ]
        # The stroke keeps 1.5 px clear of the full-size kernel's border.
        self.half = ((kernel_size[0] - 1) / 2 - 1.5, (kernel_size[1] - 1) / 2 - 1.5)

    def image(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        value = torch.full_like(rows, 0.2)
        for centre, sigma, amplitude in self.blobs:
            value += 0.5 * amplitude * torch.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))
        return value

    def kernel_density(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        density = torch.zeros_like(rows)
        for t in torch.linspace(0, 1, 25, dtype=torch.float64):
            row, col = self.half[0] * (-0.7 + 1.2 * t), self.half[1] * (-0.6 + 0.9 * math.sin(3 * t))
            density += torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * 1.2**2))
        return density

    def truth(self, image_size: tuple[int, int], support: tuple[int, int], kernel_size: tuple[int, int]):
        """The true ``(1, 1, *support)`` image and ``kernel_size`` kernel (sum 1) of a scale
        whose observation is ``image_size``: the image sampled at its pixel centres, the
        kernel's density integrated over its pixels."""
        pitch = tuple(full / size for full, size in zip(self.image_size, image_size))
        x = self.image(*centred_grid(support, pitch))[None, None]
        fine = tuple(side * SUBSAMPLES for side in kernel_size)
        density = self.kernel_density(*centred_grid(fine, tuple(p / SUBSAMPLES for p in pitch)))
        k = density.reshape(kernel_size[0], SUBSAMPLES, kernel_size[1], SUBSAMPLES).sum((1, 3))
        return x, k / k.sum()


def misregistration(reblurred: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """Least-squares fit of ``reblurred - y`` by a shift and a magnification about the
    centre (first order in the gradient of ``y``): ``(row shift px, column shift px,
    relative magnification error)``."""
    grad_rows, grad_cols = torch.gradient(y[0, 0].double())
    rows, cols = centred_grid(tuple(y.shape[-2:]), (1.0, 1.0))
    basis = torch.stack([grad_rows, grad_cols, rows * grad_rows + cols * grad_cols]).flatten(1).T
    residual = (reblurred - y)[0, 0].double().flatten()[:, None]
    return tuple(torch.linalg.lstsq(basis, residual).solution.flatten().tolist())


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).pow(2).mean().sqrt().item()


@pytest.mark.parametrize(
    "image_size, kernel_size",
    [
        ((255, 255), (27, 27)),  # the paper's scale: the floor does not bind
        ((255, 255), (11, 11)),  # the floor binds at both coarse scales (7, 7, 11)
        ((96, 96), (9, 9)),  # the reduced protocol's crops: the floor binds (7, 7, 9)
        ((117, 95), (21, 15)),  # odd, rectangular image and kernel
    ],
)
def test_each_scale_hands_up_an_estimate_in_register_with_the_next_input(image_size, kernel_size):
    scene = Scene(image_size, kernel_size)
    job = DeblurJob(
        image_net=ImageNetSpec(channels=8, skip_channels=4, levels=3), kernel_net=KernelNetSpec(hidden=16),
        scales=ScalesSpec(),  # the improved method's: 3 scales √2 apart, kernel floor 7
    )  # fmt: skip
    full = job.plan_for(Observation(torch.zeros(1, 1, *image_size), kernel_size, source=None)).stages[-1]
    x_full, k_full = scene.truth(image_size, full.support, kernel_size)
    y_full = blur_valid(x_full, k_full)
    observation = Observation(y_full.float(), kernel_size, source=None)
    job.plan = job.plan_for(observation)
    job.build(observation)
    scales = job.plan.stages
    assert len(scales) == 3
    inputs = []
    for scale in scales:
        job.enter_scale(scale.index)
        inputs.append(job.y.clone())  # the observation as the job makes it at this scale
    for coarse, fine, y_fine in zip(scales, scales[1:], inputs[1:]):
        x_coarse, k_coarse = scene.truth(coarse.image_size, coarse.support, coarse.kernel_size)
        x_true, k_true = scene.truth(fine.image_size, fine.support, fine.kernel_size)
        x_up, k_up = handed_up(x_coarse.float(), k_coarse.float(), coarse, fine)
        assert x_up.shape[-2:] == fine.support and k_up.shape == fine.kernel_size
        assert k_up.sum().item() == pytest.approx(1, abs=1e-5) and (k_up >= 0).all()
        reblurred = blur_valid(x_up, k_up)
        # Sampling the true fine-scale image and kernel misses the job's input by at most
        # 1e-3 of the range (the input is resampled with anti-aliasing); the handed-up
        # estimate by 0.6-3.6e-3 (AMD EPYC). Magnifying the supports onto each other (the
        # support's growth, not the input's, as the factor) missed by up to 23e-3.
        assert rms(blur_valid(x_true, k_true), y_fine) < 0.002
        assert rms(reblurred, y_fine) < 0.005
        row_shift, col_shift, magnification = misregistration(reblurred, y_fine)
        # The same centre (shifts of 0.03 px at most here) and the input's own factor
        # (errors of 2e-4 at most; magnifying the supports onto each other left up to 3.5 %).
        assert abs(row_shift) < 0.1 and abs(col_shift) < 0.1
        assert abs(magnification) < 1e-3
