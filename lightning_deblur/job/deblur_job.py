"""One deblurring job as a LightningModule: optimize the two generators on one image."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import yaml
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Timer

from lightning_deblur.core.errors import InputError
from lightning_deblur.core.generators import ImageNetSpec, KernelNetSpec, OptimizerSpec, make_adam
from lightning_deblur.core.kernel_crop import KernelCropSpec
from lightning_deblur.core.kernel_support import KernelProbeSpec
from lightning_deblur.core.losses import DATA_TERMS, KERNEL_L2_REDUCTIONS, LossInputs, weighted_loss
from lightning_deblur.core.metrics import psnr
from lightning_deblur.core.physics import blur_valid, crop_to_observation
from lightning_deblur.core.planning import JobPlan, ScalesSpec, plan_job_from_options
from lightning_deblur.core.precision import activation_bytes
from lightning_deblur.core.schedule import LearningRateSchedule, LossSchedule
from lightning_deblur.core.shock_filter import ShockFilterSpec, shock_filter
from lightning_deblur.core.tiles import FinishSpec
from lightning_deblur.job.checkpointing import JobTimer, StopOnSignal
from lightning_deblur.job.data import BlurredImage, Observation, observation_in
from lightning_deblur.job.divergence import DivergenceGuard
from lightning_deblur.job.lightning_internals import attached_trainer
from lightning_deblur.job.multiscale import RefitSpec, ScaleTransition
from lightning_deblur.job.outputs import ResultWriter
from lightning_deblur.job.stages import JobStages


class DeblurJob(JobStages, LightningModule):
    """Blind deconvolution of one image with two deep-prior generators, coarse to fine.

    Each training step draws ``x = G_x(z_x + ε)`` on the support ``(H+kh-1, W+kw-1)`` of
    the current stage and ``k = G_k(z_k)``, re-blurs ``y_hat = k * x`` (valid, float32)
    and minimizes the loss terms weighted as ``schedule`` gives them for the step within
    the stage. The stages (scales, then finishing tiles) are planned once
    (:mod:`~lightning_deblur.core.planning`); :class:`~lightning_deblur.job.stages.JobStages` holds
    the state that changes between them, and the :class:`ScaleTransition` callback moves
    the job from one to the next. The defaults are the improved method (3 scales,
    re-fitted initialization, its loss and learning-rate schedules);
    ``configs/selfdeblur.yaml`` holds the original (:meth:`from_config` reads any config).

    The job is the whole method under a plain ``lightning.Trainer``: it declares the
    callbacks the method needs (:meth:`configure_callbacks`: the scale transitions, the
    divergence guard, the result files and the timer they read), so
    ``Trainer().fit(DeblurJob.from_config("configs/improved.yaml"), BlurredImage(...))``
    runs what ``python -m lightning_deblur fit`` runs. Callbacks added from outside observe
    (TensorBoard pictures, curves, progress, checkpoints).

    Args:
        image_net: shape of G_x.
        kernel_net: shape of G_k.
        optimizer: learning rates of the two parameter groups.
        iterations: optimization steps at the finest scale.
        input_perturbation: std of the Gaussian noise ε added to ``z_x`` every step.
        kernel_l2_reduction: form of the kernel ℓ2 term: ``mean`` of ``k²`` or ``sum``
            (``‖k‖²``, as the improved method's paper writes it).
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
            way (:func:`~lightning_deblur.core.centring.centre_kernel`). It only re-registers
            the output: the optimization is unchanged, and so is the re-blurred estimate.
        centre_kernel_between_scales: also centre the estimates the next scale's
            generators are fitted to (a variant; it changes the optimization).
        schedule: the loss terms' weights over the steps of each stage (set on the
            command line under ``schedule``).
        lr_schedule: the learning-rate milestones within each stage (set on the command
            line under ``lr_schedule``).
        starts: runs of the coarsest scale, each from fresh generators (new weights, new
            ``z_x`` and ``z_k``, the initial kernel fit redone); the job continues from
            the one with the best no-reference score (:mod:`~lightning_deblur.core.starts`).
            1, the default, is the papers' method. Blind jobs of two or more scales.
        restarts: at most this many restarts of a blind job: when the verdict on a pass
            over the blind scales (at its finest scale) is ``no-blur``
            (:mod:`~lightning_deblur.core.verdict`), the job runs every blind scale once more
            (new input noise, G_k fitted to the initial kernel again, G_x continuing from
            the weights the last pass ended with) and continues with that pass; each pass's verdict goes to ``metrics.json``
            (``attempts``) and TensorBoard (``attempt/``). 0, the default, is the papers'
            method.
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
        schedule: LossSchedule = LossSchedule(),
        lr_schedule: LearningRateSchedule = LearningRateSchedule(),
        starts: int = 1,
        restarts: int = 0,
        kernel_probe: KernelProbeSpec = KernelProbeSpec(),
    ) -> None:
        super().__init__()
        check_choices(
            iterations, kernel_mode, scales, colour, memory_format, refit, kernel_l2_reduction, starts, restarts
        )
        # Recorded in checkpoints, so DeblurJob.load_from_checkpoint(path) rebuilds the job.
        self.save_hyperparameters()
        self.image_spec, self.kernel_spec, self.optimizer_spec = image_net, kernel_net, optimizer
        self.scales_spec, self.refit_spec, self.kernel_prefilter = scales, refit, kernel_prefilter
        self.kernel_mode, self.colour, self.memory_format = kernel_mode, colour, memory_format
        self.kernel_crop_spec, self.finish_spec = kernel_crop, finish
        self.schedule, self.lr_schedule = schedule, lr_schedule
        self.iterations, self.input_perturbation = iterations, input_perturbation
        self.kernel_l2_reduction, self.starts, self.restarts = kernel_l2_reduction, starts, restarts
        self.kernel_probe = kernel_probe
        self.centre_kernel, self.centre_kernel_between_scales = centre_kernel, centre_kernel_between_scales
        self.loss_weights: dict[str, float] = {"mse": 1.0}
        """Weight of each loss term for the current step (from ``schedule``, before each step)."""
        self.init_stage_state()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """Lightning's :meth:`~lightning.pytorch.LightningModule.load_from_checkpoint`, always
        with ``weights_only=True`` (torch 2.3-2.5 default to ``False``, under which a crafted
        checkpoint runs code)."""
        kwargs.pop("weights_only", None)
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, weights_only=True, **kwargs)

    # ----------------------------------------------------------------- set-up
    def plan_for(self, observation: Observation, device: torch.device | None = None, bytes_per_value: int = 4) -> JobPlan:
        """This job's plan on ``observation`` (see :func:`~lightning_deblur.core.planning.plan_job`)."""
        return plan_job_from_options(observation, self.hparams, device, bytes_per_value)

    def plan_on(self, observation: Observation, trainer) -> JobPlan:
        """The plan for the trainer's device and precision (16-bit autocast halves activations)."""
        return self.plan_for(observation, trainer.strategy.root_device, activation_bytes(trainer.precision))

    def setup(self, stage: str) -> None:
        self.take_step_limit(self.trainer)
        self.build(planned_observation(self, self.trainer))
        self.limit_steps_to_plan()

    def configure_optimizers(self) -> dict:
        """One Adam with a parameter group per generator (θ_x, and θ_k in the blind scales),
        and the learning-rate schedule as a per-step ``LambdaLR``.

        Every stage change brings new parameters (a new kernel-net output layer, re-fitted
        weights, the kernel net dropped), so :class:`ScaleTransition` has the strategy run
        this again (``trainer.strategy.setup_optimizers``), the way Lightning set it up at
        the start: fresh Adam state, and a scheduler whose own step counter restarts at 0,
        which is the step within the stage that the milestones count.
        """
        spec = self.optimizer_spec
        groups = [{"params": self.image_net.parameters(), "lr": spec.image_lr, "name": "image"}]
        if self.kernel_net is not None:
            groups.append({"params": self.kernel_net.parameters(), "lr": spec.kernel_lr, "name": "kernel"})
        optimizer = make_adam(groups, spec.fused)
        return {"optimizer": optimizer, "lr_scheduler": self.lr_schedule.scheduler(optimizer, self.is_finest_scale)}

    @classmethod
    def from_config(cls, config: str | Path | dict) -> DeblurJob:
        """The job a ``fit`` configuration describes: a YAML file (``configs/improved.yaml``)
        or its content as a dict. Its ``model``, ``schedule`` and ``lr_schedule`` sections
        are read (the Trainer's, the data's and the callbacks' are not), with every value
        a section leaves out at its default, as on the command line."""
        from jsonargparse import ArgumentParser

        content = yaml.safe_load(Path(config).read_text()) if isinstance(config, (str, Path)) else dict(config)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "model")
        # The schedules have keys of their own in a fit configuration (as on the command line).
        model = {**(content.get("model") or {})}
        for key in ("schedule", "lr_schedule"):
            model[key] = {**model.get(key, {}), **(content.get(key) or {})}
        # jsonargparse deprecates ``instantiate_classes`` for ``instantiate`` from 4.49 on;
        # older releases have only the former.
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        return instantiate(parser.parse_object({"model": model})).model

    def configure_callbacks(self) -> list:
        """The callbacks the method needs, in the order they act after a step: the
        divergence guard, the stop on SIGTERM/SIGINT, the scale transition (which enters
        no new stage once the fit is told to stop); the result writer and the timer whose
        wall time it reports. A guard, writer or timer the Trainer already has (the
        command line configures its own, and the Trainer's callbacks act first) is kept."""
        trainer = attached_trainer(self)
        present = trainer.callbacks if trainer is not None else []
        makers = {Timer: lambda: JobTimer(interval="step"), ResultWriter: ResultWriter, DivergenceGuard: DivergenceGuard}
        missing = [make() for kind, make in makers.items() if not any(isinstance(c, kind) for c in present)]
        return missing + [StopOnSignal(), ScaleTransition()]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.loss_weights = self.schedule.weights_at(self.step_in_scale, self.is_finest_scale)

    def on_fit_start(self) -> None:
        # The device is known only now; "auto" may choose another layout than at set-up.
        self.apply_memory_format()

    # ------------------------------------------------------------------- step
    def forward(self, perturb: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Current estimates ``(x, k)``: ``(1, C, H+kh-1, W+kw-1)`` in [0, 1] and ``(kh, kw)``."""
        return self.image_net(self.image_input(perturb)), self.kernel()

    def image_input(self, perturb: bool = True) -> torch.Tensor:
        """G_x's input: ``z_x``, plus fresh Gaussian noise of std ``input_perturbation``
        when ``perturb`` (one draw from the random stream per step)."""
        if perturb and self.input_perturbation > 0:
            return self.z_x + self.input_perturbation * torch.randn_like(self.z_x)
        return self.z_x

    def kernel(self) -> torch.Tensor:
        """The current kernel ``(kh, kw)``: G_k's output, or the fixed kernel."""
        return self.fixed_kernel if self.kernel_net is None else self.kernel_net(self.z_k)

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
        # Tensors go to the logger as they are and are read back (a host sync) only when
        # the logger writes. Nothing is logged with prog_bar=True: Lightning would read
        # those back every step; the progress bar reads latest_loss/latest_psnr itself.
        for name, value in self.record_step(x, k, total, terms).items():
            self.log(name, value, batch_size=1)
        return total

    def record_step(
        self, x: torch.Tensor, k: torch.Tensor, total: torch.Tensor, terms: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Keep a step's estimates and loss as the latest (detached), and return what the
        step logs: the loss, each term under ``loss/``, and with a sharp reference ``psnr``."""
        self.latest_x, self.latest_k, self.latest_loss = x.detach().float(), k.detach(), total.detach()
        logged = {"loss": total, **{f"loss/{name}": value for name, value in terms.items()}}
        if self.sharp is not None:
            estimate = crop_to_observation(self.latest_x, self.current_scale.kernel_size)
            self.latest_psnr = logged["psnr"] = psnr(estimate, self.sharp)
        return logged

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep what a resumed job needs to continue exactly: the plan, the stage, the RNG streams."""
        checkpoint["deblur"] = {
            "plan": self.plan,
            "scale_index": self.scale_index,
            # Centring happened at the end of the blind scales; a job resumed in a
            # finishing stage must still report it.
            "centring": self.centring,
            "starts": self.start_records,
            "attempts": self.attempt_records,
            "kernel_size_choice": self.kernel_size_choice,
            # Between stages, the next stage starts from the last estimate (handed up to it).
            "latest": (self.latest_x, self.latest_k) if self.between_stages else None,
            "initial_rng": self.initial_rng,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Rebuild the sizes of the saved stage (so the saved weights fit). Resuming a fit,
        also restore the RNG; loaded outside a fit (``load_from_checkpoint``), first build
        the job from the plan and the observation the checkpoint holds."""
        state = checkpoint.get("deblur")
        if state is None:
            raise InputError("this checkpoint was not written by a deblurring job; pass a run's checkpoints/last.ckpt")
        resuming = attached_trainer(self) is not None
        if not resuming:
            self.plan = state["plan"]
            self.build(observation_in(checkpoint["state_dict"], self.plan))
        elif state["plan"] != self.plan:
            # The plan changed after the job began: a restart grew it, the kernel-size probe
            # chose the size of the later stages (or the device's memory gave other tiles).
            self.plan = state["plan"]
            self.size_kernel_buffers()
        if state["scale_index"] != self.scale_index:
            self.enter_scale(state["scale_index"])
        self.centring = state.get("centring")
        self.start_records = list(state.get("starts", []))
        self.attempt_records = list(state.get("attempts", []))
        self.kernel_size_choice = state.get("kernel_size_choice")
        if state.get("latest") is not None:
            self.latest_x, self.latest_k = (tensor.to(self.device) for tensor in state["latest"])
        if state.get("initial_rng") is not None:
            self.initial_rng = state["initial_rng"]
        if resuming:
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])


def planned_observation(module: LightningModule, trainer) -> Observation:
    """The observation of the trainer's :class:`BlurredImage` datamodule, with the job
    ``module`` planned on it if it is not yet: the command line
    plans at parse time (its input check), a Trainer used directly does not."""
    datamodule = trainer.datamodule
    if not isinstance(datamodule, BlurredImage):
        raise RuntimeError(f"{type(module).__name__} needs a BlurredImage datamodule passed to trainer.fit")
    observation = datamodule.load()
    if module.plan is None:
        module.plan = module.plan_on(observation, trainer)
    return observation


def check_choices(
    iterations, kernel_mode, scales, colour, memory_format, refit, kernel_l2_reduction, starts, restarts=0
) -> None:
    """Refuse settings outside their choices (the command line checks them too; code may not)."""
    if iterations < 1:
        raise InputError(f"model.iterations must be positive, got {iterations}")
    if kernel_mode not in ("blind", "fixed"):
        raise InputError(f"model.kernel_mode must be 'blind' or 'fixed', got '{kernel_mode}'")
    if kernel_mode == "fixed" and scales.count != 1:
        raise InputError("a fixed (known) kernel runs at one scale: set --model.scales.count 1")
    if starts < 1:
        raise InputError(f"model.starts must be at least 1 (1: one start, the papers' method), got {starts}")
    if starts > 1 and (kernel_mode != "blind" or scales.count < 2):
        raise InputError(
            "several starts repeat the coarsest scale of a blind multiscale job: "
            "set --model.starts 1, or --model.kernel_mode blind with --model.scales.count 2 or more"
        )
    if restarts < 0:
        raise InputError(f"model.restarts must be 0 or more (0: no restarts, the papers' method), got {restarts}")
    if restarts > 0 and kernel_mode != "blind":
        raise InputError("restarts rerun the blind scales: set --model.restarts 0 with a known kernel")
    if colour not in ("full", "luminance"):
        raise InputError(f"model.colour must be 'full' or 'luminance', got '{colour}'")
    if memory_format not in ("auto", "channels_last", "contiguous"):
        raise InputError(f"model.memory_format must be auto, channels_last or contiguous, got '{memory_format}'")
    if refit.initial_kernel not in ("gaussian", "none"):
        raise InputError(f"model.refit.initial_kernel must be 'gaussian' or 'none', got '{refit.initial_kernel}'")
    if kernel_l2_reduction not in KERNEL_L2_REDUCTIONS:
        raise InputError(f"model.kernel_l2_reduction must be 'mean' or 'sum', got '{kernel_l2_reduction}'")
