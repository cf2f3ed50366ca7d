"""One deblurring job as a LightningModule: optimize the two generators on one image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightning.pytorch import LightningModule

from lightning_deblur.data import Observation
from lightning_deblur.io import check_job_sizes
from lightning_deblur.losses import LossInputs, gaussian_window_1d, psnr, weighted_loss
from lightning_deblur.nets import KernelNet, SkipNet
from lightning_deblur.physics import blur_valid, crop_to_observation, support_size


@dataclass
class ImageNetSpec:
    """Shape of the image generator G_x and its input noise.

    Attributes:
        input_channels: channels of the input noise ``z_x``.
        channels: width of the down and merge convolutions at every level.
        skip_channels: width of the skip branches.
        levels: encoder-decoder depth; the estimate needs at least ``2**levels + 1``
            pixels per side.
        non_local_from_level: first level (1-based) with a non-local block.
        upsample_mode: ``bilinear`` or ``nearest``.
        noise_scale: ``z_x`` is uniform in ``[0, noise_scale)``.
    """

    input_channels: int = 8
    channels: int = 128
    skip_channels: int = 16
    levels: int = 5
    non_local_from_level: int = 3
    upsample_mode: str = "bilinear"
    noise_scale: float = 0.1

    def build(self, output_channels: int = 1) -> SkipNet:
        return SkipNet(
            input_channels=self.input_channels,
            output_channels=output_channels,
            down_channels=self.channels,
            up_channels=self.channels,
            skip_channels=self.skip_channels,
            levels=self.levels,
            non_local_from_level=self.non_local_from_level,
            upsample_mode=self.upsample_mode,
        )


@dataclass
class KernelNetSpec:
    """Shape of the kernel generator G_k and its input noise.

    Attributes:
        input_size: length of ``z_k``.
        hidden: width of the hidden layer.
        noise_scale: ``z_k`` is uniform in ``[0, noise_scale)``.
    """

    input_size: int = 200
    hidden: int = 1000
    noise_scale: float = 0.1

    def build(self, kernel_size: tuple[int, int]) -> KernelNet:
        return KernelNet(kernel_size, input_size=self.input_size, hidden=self.hidden)


@dataclass
class OptimizerSpec:
    """Adam with one parameter group per generator.

    Attributes:
        image_lr: learning rate of θ_x before any decay.
        kernel_lr: learning rate of θ_k before any decay.
    """

    image_lr: float = 0.01
    kernel_lr: float = 1e-4


class DeblurJob(LightningModule):
    """Blind deconvolution of one image with two deep-prior generators.

    Each training step draws ``x = G_x(z_x + ε)`` on the support ``(H+kh-1, W+kw-1)``
    and ``k = G_k(z_k)``, re-blurs ``y_hat = k * x`` (valid, float32) and minimizes the
    weighted loss terms that the schedule callbacks set in :attr:`loss_weights`.

    Args:
        image_net: shape of G_x.
        kernel_net: shape of G_k.
        optimizer: learning rates of the two parameter groups.
        iterations: optimization steps of the job.
        input_perturbation: std of the Gaussian noise ε added to ``z_x`` every step.
    """

    def __init__(
        self,
        image_net: ImageNetSpec = ImageNetSpec(),
        kernel_net: KernelNetSpec = KernelNetSpec(),
        optimizer: OptimizerSpec = OptimizerSpec(),
        iterations: int = 5000,
        input_perturbation: float = 0.001,
    ) -> None:
        super().__init__()
        # The resolved config.yaml of the run records these; no hparams copy is kept.
        self.image_spec = image_net
        self.kernel_spec = kernel_net
        self.optimizer_spec = optimizer
        if iterations < 1:
            raise ValueError(f"iterations must be positive, got {iterations}")
        self.iterations = iterations
        self.input_perturbation = input_perturbation
        self.loss_weights: dict[str, float] = {"mse": 1.0}
        """Weight of each loss term for the current step; set by the schedule callbacks."""
        self.scale_start_step = 0
        """Global step at which the current scale began (schedules key on steps within it)."""
        self.image_net: SkipNet | None = None
        self.kernel_net: KernelNet | None = None
        self.observation: Observation | None = None
        self.latest_x: torch.Tensor | None = None
        self.latest_k: torch.Tensor | None = None
        self.latest_loss: torch.Tensor | None = None

    # ----------------------------------------------------------------- set-up
    @property
    def total_iterations(self) -> int:
        """Steps the job runs in all."""
        return self.iterations

    @property
    def step_in_scale(self) -> int:
        """0-based index of the current step within the current scale."""
        return self.global_step - self.scale_start_step

    def attach_observation(self, observation: Observation) -> None:
        """Build the generators and their inputs for ``observation``; idempotent."""
        if self.image_net is not None:
            return
        check_job_sizes(
            observation.size,
            observation.kernel_size,
            SkipNet.min_input_size(self.image_spec.levels),
            self.image_spec.levels,
        )
        self.observation = observation
        support = support_size(observation.size, observation.kernel_size)
        self.image_net = self.image_spec.build(output_channels=1)
        self.kernel_net = self.kernel_spec.build(observation.kernel_size)
        self.register_buffer("y", observation.y.clone())
        self.register_buffer("sharp", None if observation.sharp is None else observation.sharp.clone())
        self.register_buffer(
            "z_x", torch.rand(1, self.image_spec.input_channels, *support) * self.image_spec.noise_scale
        )
        self.register_buffer("z_k", torch.rand(self.kernel_spec.input_size) * self.kernel_spec.noise_scale)
        self.register_buffer("ssim_window", gaussian_window_1d())

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None or getattr(datamodule, "observation", None) is None:
            raise RuntimeError("DeblurJob needs a BlurredImage datamodule passed to trainer.fit")
        self.attach_observation(datamodule.observation)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self)

    # ------------------------------------------------------------------- step
    def forward(self, perturb: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Current estimates ``(x, k)``: ``(1, 1, H+kh-1, W+kw-1)`` in [0, 1] and ``(kh, kw)``."""
        z_x = self.z_x
        if perturb and self.input_perturbation > 0:
            z_x = z_x + self.input_perturbation * torch.randn_like(z_x)
        return self.image_net(z_x), self.kernel_net(self.z_k)

    def training_step(self, batch: int, batch_idx: int) -> torch.Tensor:
        x, k = self(perturb=True)
        y_hat = blur_valid(x, k)
        total, terms = weighted_loss(LossInputs(y_hat, self.y, x, k, self.ssim_window), self.loss_weights)
        self.latest_x, self.latest_k, self.latest_loss = x.detach().float(), k.detach(), total.detach()
        # Tensors go to the logger as they are: they are read (a host sync) only at the
        # logging and progress-bar intervals, never every step.
        self.log("loss", total, prog_bar=True, batch_size=1)
        for name, value in terms.items():
            self.log(f"loss/{name}", value, batch_size=1)
        if self.sharp is not None:
            estimate = crop_to_observation(self.latest_x, self.observation.kernel_size)
            self.log("psnr", psnr(estimate, self.sharp), prog_bar=True, batch_size=1)
        return total

    # ---------------------------------------------------------------- results
    def estimate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Result of the last step: the ``(1, 1, H, W)`` image crop and the ``(kh, kw)`` kernel."""
        if self.latest_x is None:
            raise RuntimeError("the job has not run a step yet")
        return crop_to_observation(self.latest_x, self.observation.kernel_size), self.latest_k


def build_optimizer(job: DeblurJob) -> torch.optim.Adam:
    """One Adam with two parameter groups (θ_x, θ_k); each remembers its ``base_lr``."""
    spec = job.optimizer_spec
    return torch.optim.Adam(
        [
            {"params": job.image_net.parameters(), "lr": spec.image_lr, "base_lr": spec.image_lr, "name": "image"},
            {"params": job.kernel_net.parameters(), "lr": spec.kernel_lr, "base_lr": spec.kernel_lr, "name": "kernel"},
        ]
    )
