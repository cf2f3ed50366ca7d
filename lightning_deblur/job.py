"""One deblurring job as a LightningModule: optimize the two generators on one image."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Literal

import torch
from lightning.pytorch import LightningModule

from lightning_deblur.centring import LOST_MASS_WARNING, centre_kernel, kernel_centroid_offset
from lightning_deblur.colour import colour_support
from lightning_deblur.data import Observation
from lightning_deblur.errors import InputError
from lightning_deblur.imagefiles import check_job_sizes
from lightning_deblur.kernel_crop import KernelCropSpec, choose_crop
from lightning_deblur.losses import DATA_TERMS, KERNEL_L2_REDUCTIONS, LossInputs, weighted_loss
from lightning_deblur.memory import check_fits
from lightning_deblur.metrics import psnr, ssim_window
from lightning_deblur.multiscale import RefitSpec, Scale, ScalesSpec, ScaleTransition, plan_scales
from lightning_deblur.nets import ImageNetSpec, KernelNet, KernelNetSpec, SkipNet
from lightning_deblur.physics import blur_valid, crop_to_observation, pad_to_support
from lightning_deblur.resample import resize_image
from lightning_deblur.shock_filter import ShockFilterSpec, shock_filter
from lightning_deblur.tiles import FinishSpec, add_tile, blended, finishing_layout, largest_fitting_tile


@dataclass
class OptimizerSpec:
    """Adam with one parameter group per generator.

    Attributes:
        image_lr: learning rate of θ_x before any decay.
        kernel_lr: learning rate of θ_k before any decay.
    """

    image_lr: float = 0.01
    kernel_lr: float = 1e-4


def checked_plan(
    image_size: tuple[int, int],
    kernel_size: tuple[int, int],
    image_spec: ImageNetSpec,
    scales_spec: ScalesSpec,
    iterations: int,
    what: str = "image",
    enlarge: str = "a larger image",
) -> list[Scale]:
    """The scale plan, after checking that the image net can run at every scale
    (``what`` and ``enlarge`` name the blind region and its fix in the message).

    Raises:
        InputError: the kernel is not smaller than the image, or some scale's support
            is too small for the image net's levels.
    """
    plan = plan_scales(image_size, kernel_size, scales_spec, iterations)
    min_support = SkipNet.min_input_size(image_spec.levels)
    for scale in reversed(plan):  # the full-size check first: its message is the clearest
        check_job_sizes(scale.image_size, scale.kernel_size, min_support, image_spec.levels, what, enlarge)
    return plan


def blind_region_words(crop) -> tuple[str, str]:
    """What the blind scales run on (the image or its kernel crop) and how to enlarge it,
    for size messages."""
    if crop is None:
        return "image", "a larger image"
    return "kernel crop", "a larger crop (--model.kernel_crop.size or .box)"


def check_tile_size(tile_size: tuple[int, int], kernel_size: tuple[int, int], image_spec: ImageNetSpec) -> None:
    """Refuse finishing tiles too small for the kernel or the image net."""
    min_support = SkipNet.min_input_size(image_spec.levels)
    check_job_sizes(tile_size, kernel_size, min_support, image_spec.levels, "tile", "a larger --model.finish.tile_size")


class DeblurJob(LightningModule):
    """Blind deconvolution of one image with two deep-prior generators, coarse to fine.

    Each training step draws ``x = G_x(z_x + ε)`` on the support ``(H+kh-1, W+kw-1)`` of
    the current scale and ``k = G_k(z_k)``, re-blurs ``y_hat = k * x`` (valid, float32)
    and minimizes the weighted loss terms that the schedule callbacks set in
    :attr:`loss_weights`. The :class:`ScaleTransition` callback moves the job from
    scale to scale. The defaults are the improved method (3 scales, re-fitted
    initialization); ``scales.count=1`` with ``refit.initial_kernel=none`` is the original.

    Args:
        image_net: shape of G_x.
        kernel_net: shape of G_k.
        optimizer: learning rates of the two parameter groups.
        iterations: optimization steps at the finest scale.
        input_perturbation: std of the Gaussian noise ε added to ``z_x`` every step.
        kernel_l2_reduction: form of the kernel ℓ2 term: ``mean`` of ``k²`` (the
            default so far) or ``sum`` (``‖k‖²``, as the improved method's paper writes it).
        scales: the coarse-to-fine plan.
        refit: how the generators are fitted to starting estimates.
        kernel_prefilter: shock-filter the image estimate in the kernel's data term (a
            variant the improved method's authors tried and rejected); ``None`` is off.
        kernel_mode: ``blind`` estimates the kernel with G_k; ``fixed`` deblurs with the
            datamodule's known kernel (``--data.kernel``): the image net alone, as
            SelfDeblur's non-blind script does. Fixed mode runs one scale.
        colour: for RGB inputs, ``full`` adds a colour stage after the last scale: the
            kernel found on the luminance is fixed and a 3-channel image net deblurs all
            channels; ``luminance`` keeps the input's chroma, as the original code does.
        kernel_crop: where a blind job estimates the kernel: the whole image, or for
            images larger than ``kernel_crop.size`` the most textured crop of that size
            (or a given box), after which the finishing stage deblurs the whole image.
        finish: the non-blind finishing stage (colour stage, whole image after a crop,
            and every non-blind job): steps per tile, tile size, overlap.
        memory_format: layout of the image net's activations: ``channels_last``,
            ``contiguous``, or ``auto``: channels_last on CPUs and CUDA GPUs, where it
            measured faster per step (CPU 18 %, H200 4 %; docs/RESULTS.md), contiguous
            on other devices.
        centre_kernel: at the end of the blind scales (before the results are written
            and before any finishing stage uses the kernel), move the kernel's centre of
            mass to the nearest pixel of its support's centre and the image the opposite
            way (:func:`~lightning_deblur.centring.centre_kernel`). It only re-registers
            the output: the optimization is unchanged, and so is the re-blurred estimate.
        centre_kernel_between_scales: also centre the estimates the next scale's
            generators are fitted to (a variant; it changes the optimization).
    """

    def __init__(
        self,
        image_net: ImageNetSpec = ImageNetSpec(),
        kernel_net: KernelNetSpec = KernelNetSpec(),
        optimizer: OptimizerSpec = OptimizerSpec(),
        iterations: int = 5000,
        input_perturbation: float = 0.001,
        kernel_l2_reduction: Literal["mean", "sum"] = "mean",
        scales: ScalesSpec = ScalesSpec(),
        refit: RefitSpec = RefitSpec(),
        kernel_prefilter: ShockFilterSpec | None = None,
        kernel_mode: Literal["blind", "fixed"] = "blind",
        colour: Literal["full", "luminance"] = "full",
        kernel_crop: KernelCropSpec = KernelCropSpec(),
        finish: FinishSpec = FinishSpec(),
        memory_format: Literal["auto", "channels_last", "contiguous"] = "auto",
        centre_kernel: bool = True,
        centre_kernel_between_scales: bool = False,
    ) -> None:
        super().__init__()
        # The resolved config.yaml of the run records these; no hparams copy is kept.
        self.image_spec = image_net
        self.kernel_spec = kernel_net
        self.optimizer_spec = optimizer
        self.scales_spec = scales
        self.refit_spec = refit
        self.kernel_prefilter = kernel_prefilter
        if iterations < 1:
            raise InputError(f"model.iterations must be positive, got {iterations}")
        if kernel_mode not in ("blind", "fixed"):
            raise InputError(f"model.kernel_mode must be 'blind' or 'fixed', got '{kernel_mode}'")
        if kernel_mode == "fixed" and scales.count != 1:
            raise InputError("a fixed (known) kernel runs at one scale: set --model.scales.count 1")
        self.kernel_mode = kernel_mode
        if colour not in ("full", "luminance"):
            raise InputError(f"model.colour must be 'full' or 'luminance', got '{colour}'")
        self.colour = colour
        self.kernel_crop_spec = kernel_crop
        self.finish_spec = finish
        if memory_format not in ("auto", "channels_last", "contiguous"):
            raise InputError(f"model.memory_format must be auto, channels_last or contiguous, got '{memory_format}'")
        self.memory_format = memory_format
        if refit.initial_kernel not in ("gaussian", "none"):
            raise InputError(f"model.refit.initial_kernel must be 'gaussian' or 'none', got '{refit.initial_kernel}'")
        self.iterations = iterations
        self.input_perturbation = input_perturbation
        if kernel_l2_reduction not in KERNEL_L2_REDUCTIONS:
            raise InputError(f"model.kernel_l2_reduction must be 'mean' or 'sum', got '{kernel_l2_reduction}'")
        self.kernel_l2_reduction = kernel_l2_reduction
        self.centre_kernel = centre_kernel
        self.centre_kernel_between_scales = centre_kernel_between_scales
        self.centring: dict | None = None
        """What centring found and did at the end of the blind scales (for metrics.json), or
        ``None`` before then and in non-blind jobs."""
        self.loss_weights: dict[str, float] = {"mse": 1.0}
        """Weight of each loss term for the current step; set by the schedule callbacks."""
        self.plan: list[Scale] = []
        self.scale_index = 0
        self.blind_scale_count = 0
        self.crop = None
        """The :class:`~lightning_deblur.tiles.Box` the kernel is estimated on, or ``None`` (whole image)."""
        self.tile_overlap = 0
        self.finish_start_net: SkipNet | None = None
        """The image net as every finishing tile starts it (a frozen copy, kept in checkpoints)."""
        self.refit_reports: list = []
        """``(net, scale index, FitReport)`` of every re-fit, in order."""
        self.image_net: SkipNet | None = None
        self.kernel_net: KernelNet | None = None
        self.observation: Observation | None = None
        self.latest_x: torch.Tensor | None = None
        self.latest_k: torch.Tensor | None = None
        self.latest_loss: torch.Tensor | None = None
        self.latest_psnr: torch.Tensor | None = None
        self.failure: str | None = None
        """Why the job stopped early (set by DivergenceGuard), or ``None``."""

    # ----------------------------------------------------------------- set-up
    @property
    def total_iterations(self) -> int:
        """Steps the job runs in all, over every scale (and the colour stage, if any)."""
        if self.plan:
            return self.plan[-1].end_step
        return (self.scales_spec.count - 1) * self.scales_spec.coarse_iterations + self.iterations

    @property
    def current_scale(self) -> Scale:
        return self.plan[self.scale_index]

    @property
    def is_finest_scale(self) -> bool:
        """At full resolution: the last blind scale, or a finishing stage after it."""
        return self.current_scale.finishing or self.scale_index == self.blind_scale_count - 1

    @property
    def has_finishing(self) -> bool:
        return bool(self.plan) and self.plan[-1].finishing

    @property
    def tile_count(self) -> int:
        """Finishing tiles in the plan (0 without a finishing stage)."""
        return len(self.plan) - self.blind_scale_count

    @property
    def estimate_is_full_size(self) -> bool:
        """Whether :meth:`estimate` covers the whole observation at full resolution."""
        return self.current_scale.finishing or (not self.has_finishing and self.is_finest_scale)

    @property
    def step_in_scale(self) -> int:
        """0-based index of the current step within the current scale."""
        return self.global_step - self.current_scale.start_step

    def attach_observation(
        self, observation: Observation, device: torch.device | None = None, bytes_per_value: int = 4
    ) -> None:
        """Plan the stages and build the generators for ``observation``; idempotent.

        Args:
            observation: the job's data.
            device: where the job will run; automatic tile sizes fit its free memory
                (``None``: one tile for the whole image).
            bytes_per_value: 4 for float32 activations, 2 under 16-bit autocast.
        """
        if self.image_net is not None:
            return
        self.observation = observation
        blind = self.kernel_mode == "blind"
        self.crop = choose_crop(observation.y, self.kernel_crop_spec) if blind else None
        blind_size = observation.size if self.crop is None else self.crop.size
        plan = []
        if blind:
            plan = checked_plan(
                blind_size,
                observation.kernel_size,
                self.image_spec,
                self.scales_spec,
                self.iterations,
                *blind_region_words(self.crop),
            )
        self.blind_scale_count = len(plan)
        channels = 3 if self.colour == "full" and observation.y_colour is not None else 1
        finishing_iterations = self._finishing_iterations(blind)
        if self.crop is not None and finishing_iterations < 1:
            raise InputError(
                "the kernel is estimated on a crop, so the whole image needs the finishing stage: "
                "set --model.finish.iterations to a positive number (or --model.kernel_crop.size null)"
            )
        if finishing_iterations > 0 and (not blind or self.crop is not None or channels == 3):
            start = plan[-1].end_step if plan else 0
            plan += self._finishing_stages(observation, channels, finishing_iterations, start, device, bytes_per_value)
        self.plan = plan
        self.image_net = self.image_spec.build(output_channels=1 if blind else channels)
        if not blind:
            if observation.kernel is None:
                raise InputError("non-blind mode (model.kernel_mode: fixed) needs the kernel: pass --data.kernel k.npy")
            self.register_buffer("fixed_kernel", observation.kernel.clone())
        else:
            self.kernel_net = self.kernel_spec.build(plan[0].kernel_size)
        self.register_buffer("y_full", observation.y.clone())
        self.register_buffer("sharp_full", None if observation.sharp is None else observation.sharp.clone())
        self.register_buffer("y_colour", None if observation.y_colour is None else observation.y_colour.clone())
        self.register_buffer(
            "sharp_colour", None if observation.sharp_colour is None else observation.sharp_colour.clone()
        )
        self.register_buffer("z_k", torch.rand(self.kernel_spec.input_size) * self.kernel_spec.noise_scale)
        self.register_buffer("ssim_window", ssim_window())
        self.register_buffer("y", None)
        self.register_buffer("sharp", None)
        self.register_buffer("z_x", None)
        self.register_buffer("blind_estimate", None)
        if self.has_finishing:
            height, width = observation.size
            self.register_buffer("finish_sum", torch.zeros(1, plan[-1].channels, height, width))
            self.register_buffer("finish_weight", torch.zeros(1, 1, height, width))
        self.enter_scale(0)

    def _finishing_iterations(self, blind: bool) -> int:
        """Steps per finishing tile. A non-blind job: ``model.iterations``. After blind
        scales: ``model.finish.iterations`` when set; otherwise a
        non-blind job's whole budget (``model.iterations``) when the tiles start from the
        blurred observation (after a kernel from a crop), and a fifth of it
        (1000 of 5000) when they start from the full-size blind estimate (the colour stage)."""
        if not blind:
            return self.iterations
        if self.finish_spec.iterations is not None:
            return self.finish_spec.iterations
        if self.crop is not None:
            return self.iterations
        return max(self.iterations // 5, 1)

    def _finishing_stages(
        self,
        observation: Observation,
        channels: int,
        iterations: int,
        start: int,
        device: torch.device | None,
        bytes_per_value: int,
    ) -> list[Scale]:
        """One finishing stage per tile of the full-size observation."""
        spec, kernel_size = self.finish_spec, observation.kernel_size
        min_support = SkipNet.min_input_size(self.image_spec.levels)
        tile_size = spec.tile_size
        if tile_size is None:
            smallest = max(min_support - min(kernel_size) + 1, 1)
            tile_size = (
                max(observation.size)
                if device is None
                else largest_fitting_tile(
                    self.image_spec, observation.size, kernel_size, device, channels, bytes_per_value, smallest
                )
            )
        boxes, self.tile_overlap = finishing_layout(observation.size, kernel_size, tile_size, spec.overlap)
        stages = []
        for box in boxes:
            check_tile_size(box.size, kernel_size, self.image_spec)
            index = self.blind_scale_count + len(stages)
            stages.append(Scale(index, box.size, kernel_size, iterations, start, finishing=True, channels=channels, tile=box))
            start += iterations
        return stages

    def enter_scale(self, index: int) -> None:
        """Switch data, input noise and kernel-net output size to scale ``index``.

        The observation (and sharp reference) are resampled from full resolution; ``z_x``
        is fresh uniform noise of the new support size; G_k gets an output layer of the
        new kernel size when it changes. The nets' weights are otherwise untouched: the
        caller re-fits them.
        """
        self.scale_index = index
        scale = self.current_scale
        if scale.finishing:
            self._enter_finishing_stage(scale)
            return
        y, sharp = self.y_full, self.sharp_full
        if self.crop is not None:
            y = y[..., self.crop.rows(), self.crop.columns()]
            sharp = None if sharp is None else sharp[..., self.crop.rows(), self.crop.columns()]
        self.y = resize_image(y, scale.image_size)
        self.sharp = None if sharp is None else resize_image(sharp, scale.image_size)
        self.z_x = self._fresh_input_noise(scale.support)
        if self.kernel_net is not None and tuple(self.kernel_net.kernel_size) != tuple(scale.kernel_size):
            self.kernel_net.replace_output_layer(scale.kernel_size)
        self.apply_memory_format()

    def apply_memory_format(self) -> None:
        """Put the image net and its input in the layout ``memory_format`` asks for on the
        current device (set once per scale, not per step)."""
        device = self.y_full.device
        measured_faster = device.type in ("cpu", "cuda")
        channels_last = self.memory_format == "channels_last" or (self.memory_format == "auto" and measured_faster)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.image_net.to(memory_format=layout)
        self.z_x = self.z_x.contiguous(memory_format=layout)

    def on_fit_start(self) -> None:
        # The device is known only now; "auto" may choose another layout than at set-up.
        self.apply_memory_format()

    def _fresh_input_noise(self, support: tuple[int, int]) -> torch.Tensor:
        """``z_x`` for a support: uniform in ``[0, noise_scale)``, ``(1, input_channels, H', W')``."""
        noise = torch.rand(1, self.image_spec.input_channels, *support, device=self.y_full.device)
        return noise * self.image_spec.noise_scale

    def _enter_finishing_stage(self, scale: Scale) -> None:
        """Data of the stage's tile (RGB or luminance), and the image net as every tile starts it.

        Leaving the blind scales, the kernel net is dropped (its parameters leave the
        optimizer) and the kernel becomes the ``fixed_kernel`` buffer; without a crop, the
        full-size blind estimate is kept as the tiles' starting estimate. The first
        finishing stage gives the image net an output layer of the stage's channels and
        keeps a frozen copy; every later tile starts from that copy, so all tiles start
        alike. On a resume, the checkpoint overwrites all of these.
        """
        device = self.y_full.device
        if self.kernel_net is not None:
            kernel = self.latest_k if self.latest_k is not None else torch.zeros(scale.kernel_size, device=device)
            self.register_buffer("fixed_kernel", kernel.detach().clone())
            self.kernel_net = None
            if self.crop is None and self.latest_x is not None:
                self.blind_estimate = self.latest_x.detach().clone()
        if self.finish_start_net is None:
            if self.image_net.head[0].out_channels != scale.channels:
                self.image_net.replace_head(scale.channels)
            self.finish_start_net = copy.deepcopy(self.image_net).requires_grad_(False)
        else:
            self.image_net.load_state_dict(self.finish_start_net.state_dict())
        rows, columns = scale.tile.rows(), scale.tile.columns()
        y_source = self.y_colour if scale.channels == 3 else self.y_full
        sharp_source = self.sharp_colour if scale.channels == 3 else self.sharp_full
        self.y = y_source[..., rows, columns]
        self.sharp = None if sharp_source is None else sharp_source[..., rows, columns]
        self.z_x = self._fresh_input_noise(scale.support)
        self.apply_memory_format()

    def finishing_start(self) -> torch.Tensor | None:
        """What the image net is fitted to before the current finishing tile, or ``None``
        (a non-blind job starts from the nets' initial weights, as the original does).

        With a full-size blind estimate: its tile, with the observation's chroma for RGB.
        With the kernel from a crop: the blurred tile itself, edge-padded to the support.

        Returns:
            ``(1, channels, h+kh-1, w+kw-1)`` in [0, 1].
        """
        scale = self.current_scale
        if self.kernel_mode == "fixed":
            return None
        if self.blind_estimate is not None:
            rows, columns = scale.tile.support_slices(scale.kernel_size)
            estimate = self.blind_estimate[..., rows, columns]
            return colour_support(estimate, self.y) if scale.channels == 3 else estimate
        return pad_to_support(self.y, scale.kernel_size)

    def blend_finished_tile(self) -> None:
        """Add the current tile's final estimate to the whole-image blend."""
        scale = self.current_scale
        estimate = crop_to_observation(self.latest_x, scale.kernel_size)
        add_tile(self.finish_sum, self.finish_weight, estimate, scale.tile, self.tile_overlap)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None or getattr(datamodule, "observation", None) is None:
            raise RuntimeError("DeblurJob needs a BlurredImage datamodule passed to trainer.fit")
        half = str(self.trainer.precision).startswith(("bf16", "16"))
        device = self.trainer.strategy.root_device
        self.attach_observation(datamodule.observation, device, 2 if half else 4)
        # Refuse now, with the memory it needs, rather than fail with an OOM mid-job.
        largest = max(self.plan, key=lambda stage: stage.support[0] * stage.support[1])
        check_fits(self.image_spec, largest.support, device, 2 if half else 4)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One Adam with two parameter groups (θ_x, θ_k); each remembers its ``base_lr``."""
        spec = self.optimizer_spec
        groups = [{"params": self.image_net.parameters(), "lr": spec.image_lr, "base_lr": spec.image_lr, "name": "image"}]
        if self.kernel_net is not None:
            groups.append(
                {"params": self.kernel_net.parameters(), "lr": spec.kernel_lr, "base_lr": spec.kernel_lr, "name": "kernel"}
            )
        return torch.optim.Adam(groups)

    def configure_callbacks(self) -> list:
        return [ScaleTransition()]

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep what a resumed job needs to continue exactly: the scale, the RNG streams."""
        checkpoint["deblur"] = {
            "scale_index": self.scale_index,
            # Centring happened at the end of the blind scales; a job resumed in a
            # finishing stage must still report it.
            "centring": self.centring,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Rebuild the sizes of the saved scale (so the saved weights fit), restore the RNG."""
        state = checkpoint.get("deblur")
        if state is None:
            raise InputError("this checkpoint was not written by a deblurring job; pass a run's checkpoints/last.ckpt")
        if state["scale_index"] != self.scale_index:
            self.enter_scale(state["scale_index"])
        saved_blind_estimate = checkpoint["state_dict"].get("blind_estimate")
        if saved_blind_estimate is not None and self.blind_estimate is None:
            self.blind_estimate = torch.empty_like(saved_blind_estimate, device=self.y_full.device)
        self.centring = state.get("centring")
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def on_train_batch_start(self, batch: int, batch_idx: int) -> int | None:
        # A resumed job may replay its epoch's loader from the start: stop at the budget.
        if self.global_step >= self.total_iterations:
            return -1
        return None

    # ------------------------------------------------------------------- step
    def forward(self, perturb: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Current estimates ``(x, k)``: ``(1, 1, H+kh-1, W+kw-1)`` in [0, 1] and ``(kh, kw)``."""
        z_x = self.z_x
        if perturb and self.input_perturbation > 0:
            z_x = z_x + self.input_perturbation * torch.randn_like(z_x)
        kernel = self.fixed_kernel if self.kernel_net is None else self.kernel_net(self.z_k)
        return self.image_net(z_x), kernel

    def loss(self, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted loss of the estimates ``(x, k)`` against the current observation.

        With a kernel pre-filter, the kernel's gradient comes from the data terms of
        ``k * shock(x)`` instead of ``k * x``; the image's gradient, the regularizers and
        the reported value are unchanged.

        Returns:
            ``(total, terms)`` as :func:`weighted_loss` gives them.
        """
        if self.kernel_prefilter is None:
            return weighted_loss(self._loss_inputs(x, k, blur_valid(x, k)), self.loss_weights)
        total, terms = weighted_loss(self._loss_inputs(x, k, blur_valid(x, k.detach())), self.loss_weights)
        sharpened = shock_filter(x.detach(), self.kernel_prefilter)
        data_weights = {name: w for name, w in self.loss_weights.items() if name in DATA_TERMS}
        if any(data_weights.values()):
            for_kernel, _ = weighted_loss(self._loss_inputs(sharpened, k, blur_valid(sharpened, k)), data_weights)
            total = total + (for_kernel - for_kernel.detach())
        return total, terms

    def _loss_inputs(self, x: torch.Tensor, k: torch.Tensor, y_hat: torch.Tensor) -> LossInputs:
        return LossInputs(y_hat, self.y, x, k, self.ssim_window, self.kernel_l2_reduction)

    def training_step(self, batch: int, batch_idx: int) -> torch.Tensor:
        x, k = self(perturb=True)
        total, terms = self.loss(x, k)
        self.latest_x, self.latest_k, self.latest_loss = x.detach().float(), k.detach(), total.detach()
        # Tensors go to the logger as they are and are read back (a host sync) only when
        # the logger writes. Nothing is logged with prog_bar=True: Lightning would read
        # those back every step; the progress bar reads latest_loss/latest_psnr itself.
        self.log("loss", total, batch_size=1)
        for name, value in terms.items():
            self.log(f"loss/{name}", value, batch_size=1)
        if self.sharp is not None:
            estimate = crop_to_observation(self.latest_x, self.current_scale.kernel_size)
            self.latest_psnr = psnr(estimate, self.sharp)
            self.log("psnr", self.latest_psnr, batch_size=1)
        return total

    # ---------------------------------------------------------------- results
    def end_blind_scales(self) -> None:
        """Centre the blind estimate (if ``centre_kernel``) and record the kernel's
        registration in :attr:`centring`; warn when centring pushes more than
        :data:`~lightning_deblur.centring.LOST_MASS_WARNING` of the kernel's mass out of
        its support (whether the kernel fills its support is the verdict's to judge).

        Runs once, at the finest blind scale, before the finishing stages take the kernel
        and the starting estimate (``_enter_finishing_stage``) or the results are written;
        later calls, non-blind jobs and jobs stopped at a coarser scale do nothing.
        """
        if self.centring is not None or self.kernel_mode != "blind" or self.latest_x is None:
            return
        if self.current_scale.finishing or self.scale_index != self.blind_scale_count - 1:
            return
        offset = kernel_centroid_offset(self.latest_k)
        shift, lost = (0, 0), 0.0
        if self.centre_kernel:
            self.latest_x, self.latest_k, shift, lost = centre_kernel(self.latest_x, self.latest_k)
        self.centring = {
            "kernel_centroid_offset": [round(value, 3) for value in offset],
            "kernel_shift": list(shift),
            "kernel_mass_lost": round(lost, 6),
        }
        size = "x".join(str(side) for side in self.latest_k.shape)
        if lost > LOST_MASS_WARNING:
            print(
                f"warning: centring pushed {lost:.1%} of the kernel's mass out of its {size} support; "
                "try a larger --data.kernel_size",
                file=sys.stderr,
            )

    def estimate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Latest estimate and the ``(kh, kw)`` kernel.

        In the blind scales: the current scale's ``(1, 1, h, w)`` estimate (of the crop,
        if any). In the finishing stages: the ``(1, C, H, W)`` blend of every tile so far,
        the current one included, with the blurred observation where no tile has
        landed yet (a job that stopped early still gets a full-size result).
        """
        if self.latest_x is None:
            raise RuntimeError("the job has not run a step yet")
        scale = self.current_scale
        if not scale.finishing:
            return crop_to_observation(self.latest_x, scale.kernel_size), self.latest_k
        weighted, weights = self.finish_sum.clone(), self.finish_weight.clone()
        already_blended = self.global_step >= scale.end_step and self.failure is None
        if not already_blended:
            estimate = crop_to_observation(self.latest_x, scale.kernel_size)
            add_tile(weighted, weights, estimate, scale.tile, self.tile_overlap)
        observation = self.y_colour if scale.channels == 3 else self.y_full
        return blended(weighted, weights, observation), self.fixed_kernel
