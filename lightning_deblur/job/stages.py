"""The state of a job that changes from stage to stage: what it deblurs now (the
observation at the current scale, or the current finishing tile), the generators'
inputs and output sizes, the kernel once it is fixed, the finishing tiles' blend, and
the results read from it. Mixed into :class:`~lightning_deblur.job.deblur_job.DeblurJob`.

Everything a stage change needs is registered in :meth:`JobStages.build`, before the
fit, with shapes the plan gives; stage changes only fill it in. The generators' output
layers are the exception: a new kernel size or image channel count needs a freshly
initialized layer, made at the change (its random draw is part of the method).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

from lightning_deblur.core.centring import LOST_MASS_WARNING, centre_kernel, kernel_centroid_offset
from lightning_deblur.core.colour import colour_support
from lightning_deblur.core.generators import copy_state, empty_net
from lightning_deblur.core.kernel_support import kernel_size_choice
from lightning_deblur.core.metrics import ssim_window
from lightning_deblur.core.physics import crop_to_observation, pad_to_support, support_size
from lightning_deblur.core.planning import JobPlan, Scale
from lightning_deblur.core.resample import resize_image
from lightning_deblur.core.starts import StartRecord, best_start, score_start
from lightning_deblur.core.tiles import add_tile, blended
from lightning_deblur.core.verdict import NO_BLUR, judge
from lightning_deblur.job.data import Observation
from lightning_deblur.job.lightning_internals import attached_trainer, set_step_limit, step_limit


class JobStages:
    """Stage state of a :class:`~lightning_deblur.job.deblur_job.DeblurJob` (an ``nn.Module`` mix-in).

    Attributes set by :meth:`build` (shapes for a grey ``H × W`` observation, kernel
    ``kh × kw``, stage support ``H' × W'``): ``y_full``/``sharp_full`` ``(1, 1, H, W)``,
    ``y_colour``/``sharp_colour`` ``(1, 3, H, W)`` or ``None``, ``y``/``sharp`` the current
    stage's ``(1, C, h, w)``, ``z_x`` ``(1, input_channels, H', W')``, ``z_k``
    ``(input_size,)``, and with a finishing stage ``fixed_kernel`` ``(kh, kw)``,
    ``finish_sum``/``finish_weight`` (the blend), ``finish_start_net`` (the image net as
    every tile starts it) and, when the tiles start from the full-size blind estimate,
    ``blind_estimate`` ``(1, 1, H+kh-1, W+kw-1)``. With several starts of the coarsest
    scale (coarsest support ``h' × w'``, kernel ``kh0 × kw0``), the best start so far:
    ``best_start_image_net``, ``best_start_kernel_net``, ``best_start_x``
    ``(1, 1, h', w')``, ``best_start_k`` ``(kh0, kw0)`` and ``best_start_z_k``.
    """

    def init_stage_state(self) -> None:
        self.plan = None  # set before build(): by the command line, or in setup
        self.scale_index = 0
        self.centring: dict | None = None
        """What centring found and did at the end of the blind scales (for metrics.json), or
        ``None`` before then and in non-blind jobs."""
        self.refit_reports: list = []
        """``(net, scale index, FitReport)`` of every re-fit, in order."""
        self.image_net = self.kernel_net = self.finish_start_net = None
        self.observation: Observation | None = None
        self.latest_x = self.latest_k = self.latest_loss = self.latest_psnr = None
        self.failure: str | None = None
        """Why the job stopped early (set by DivergenceGuard), or ``None``."""
        self.stop_signal: int | None = None
        """The signal (SIGTERM, SIGINT) that stopped the job at a step boundary
        (:class:`~lightning_deblur.job.checkpointing.StopOnSignal`), or ``None``."""
        self.requested_max_steps: int | None = None
        """The Trainer's own ``max_steps`` (``None``: no limit), read by :meth:`take_step_limit`
        before the plan's step count replaces it."""
        self.start_records: list[StartRecord] = []
        """The score of every start of the coarsest scale that has ended, in order."""
        self.attempt_records: list[dict] = []
        """With ``restarts``: the verdict of every pass over the blind scales that has ended,
        in order (:meth:`end_attempt`)."""
        self.best_start_image_net = self.best_start_kernel_net = None
        self.initial_rng: torch.Tensor | None = None
        """The CPU random state as :meth:`build` found it (kept for the kernel-size probe)."""
        self.kernel_size_choice: dict | None = None
        """With ``--data.kernel_size auto``, after the probe: the size chosen and what it was
        chosen from (for metrics.json and the final line), else ``None``."""

    # ------------------------------------------------------------- properties
    def run_folder(self) -> Path:
        """The folder of this job's result files: the trainer's run folder (the logger's,
        or the root directory without a logger)."""
        return Path(self.trainer.log_dir or self.trainer.default_root_dir)

    @property
    def plan(self) -> JobPlan | None:
        """The job's stages: set before :meth:`build` (by the command line, or in ``setup``),
        grown by a restart, replaced by a resumed job's grown plan."""
        return self._plan

    @plan.setter
    def plan(self, plan: JobPlan | None) -> None:
        self._plan = plan
        self.limit_steps_to_plan()

    def take_step_limit(self, trainer) -> None:
        """Read the Trainer's own ``max_steps`` (``--trainer.max_steps``; -1: none) into
        :attr:`requested_max_steps`, before :meth:`limit_steps_to_plan` replaces it. Called
        first thing in ``setup``."""
        requested = step_limit(trainer)
        self.requested_max_steps = None if requested is None or requested < 0 else requested

    def limit_steps_to_plan(self) -> None:
        """Stop the Trainer after the plan's last step, or at the Trainer's own ``max_steps``
        when that comes first, whenever the plan is set or grows while a Trainer holds the
        job; ``setup`` calls it for a plan set before the fit. The data loader holds more
        steps than that where restarts may add some, so this limit, not the loader's
        length, ends a fit."""
        trainer = attached_trainer(self)
        if trainer is not None and self._plan is not None:
            steps = self._plan.total_steps
            if self.requested_max_steps is not None:
                steps = min(steps, self.requested_max_steps)
            set_step_limit(trainer, steps)

    @property
    def current_scale(self) -> Scale:
        return self.plan.stages[self.scale_index]

    @property
    def is_finest_scale(self) -> bool:
        """At full resolution: the last blind scale, or a finishing stage after it."""
        return self.current_scale.finishing or self.scale_index == self.plan.blind_scale_count - 1

    @property
    def at_last_blind_scale(self) -> bool:
        """At the plan's last blind scale (the finest of the last pass), not a finishing stage."""
        return not self.current_scale.finishing and self.scale_index == self.plan.blind_scale_count - 1

    @property
    def centring_due(self) -> bool:
        """Whether :meth:`end_blind_scales` has still to register the estimate: a blind job
        at its last blind scale that has not been through it yet."""
        return self.centring is None and self.kernel_mode == "blind" and self.at_last_blind_scale

    @property
    def estimate_is_full_size(self) -> bool:
        """Whether :meth:`estimate` covers the whole observation at full resolution."""
        return self.current_scale.finishing or (not self.plan.has_finishing and self.is_finest_scale)

    @property
    def stopped_early(self) -> bool:
        """Whether the job ended before its plan's last step without failing: the Trainer
        was told to stop (``--timer.duration``, a signal, ``--trainer.max_steps``, another
        callback). The run is then resumable from its checkpoint and not complete."""
        return self.failure is None and self.plan is not None and self.global_step < self.plan.total_steps

    @property
    def between_stages(self) -> bool:
        """Whether the current stage has taken its last step and the next one is not yet
        entered. A fit that stops at a stage's end leaves the job so (the end's bookkeeping
        done: scales/, starts, verdicts, the probe's choice), its results are that stage's
        estimate, and its checkpoint enters the next stage when resumed
        (:class:`~lightning_deblur.job.multiscale.ScaleTransition`)."""
        plan = self.plan
        return (
            plan is not None
            and self.failure is None
            and self.scale_index + 1 < len(plan.stages)
            and self.global_step == self.current_scale.end_step
        )

    @property
    def reached_step_limit(self) -> bool:
        """Whether the job stopped early at the Trainer's own ``max_steps``, as asked."""
        limit = self.requested_max_steps
        return self.stopped_early and limit is not None and self.global_step >= limit

    @property
    def most_steps(self) -> int:
        """Steps the job can take: its plan's, and the restarts it may still make on top
        (each a pass over the blind scales)."""
        restarts_left = max(self.restarts - (self.plan.attempts - 1), 0)
        return self.plan.total_steps + restarts_left * self.plan.attempt_steps

    @property
    def step_in_scale(self) -> int:
        """0-based index of the current step within the current stage."""
        return self.global_step - self.current_scale.start_step

    # ----------------------------------------------------------------- set-up
    def build(self, observation: Observation) -> None:
        """Build the generators and register every buffer for ``observation`` and
        :attr:`plan`; enter the first stage. Idempotent."""
        if self.image_net is not None:
            return
        self.observation, plan = observation, self.plan
        # The random stream as the job begins: after a kernel-size probe the method draws
        # its generators from here again, as a job given that size would.
        self.initial_rng = torch.get_rng_state()
        blind = plan.blind_scale_count > 0
        self.image_net = self.image_spec.build(output_channels=1 if blind else plan.finishing_channels)
        if blind:
            self.kernel_net = self.kernel_spec.build(plan.stages[0].kernel_size)
        for name in ("y", "sharp", "y_colour", "sharp_colour"):
            value = getattr(observation, name)
            self.register_buffer(name + ("_full" if name in ("y", "sharp") else ""), None if value is None else value.clone())
        self.register_buffer("z_k", torch.rand(self.kernel_spec.input_size) * self.kernel_spec.noise_scale)
        self.register_buffer("ssim_window", ssim_window())
        for name in ("y", "sharp", "z_x", "blind_estimate"):
            self.register_buffer(name, None)
        self.register_buffer("fixed_kernel", None if blind else observation.kernel.clone())
        if plan.has_finishing:
            channels, size = plan.finishing_channels, observation.size
            self.register_buffer("finish_sum", torch.zeros(1, channels, *size))
            self.register_buffer("finish_weight", torch.zeros(1, 1, *size))
            # The first tile copies the image net into it.
            self.finish_start_net = empty_net(lambda: self.image_spec.build(output_channels=channels))
        if plan.starts > 1:
            self.best_start_image_net = empty_net(lambda: self.image_spec.build(output_channels=1))
            self.register_buffer("best_start_x", None)
            self.register_buffer("best_start_k", None)
            self.register_buffer("best_start_z_k", torch.zeros_like(self.z_k))
        self.size_kernel_buffers()
        self.enter_scale(0)

    def size_kernel_buffers(self) -> None:
        """Size what holds kernel-sized state from one stage for another, zero-filled, as
        the plan gives it: the buffers a blind job's finishing stage fills from the blind
        scales (the full-size kernel, and without a crop the full-size estimate), and with
        several starts the holders of the best start (its kernel net, estimates and
        kernel at the coarsest scale). At :meth:`build`, and again when the kernel-size
        probe or a checkpoint changes the plan."""
        plan, device = self.plan, self.y_full.device
        if plan.has_finishing and plan.blind_scale_count:
            self.fixed_kernel = torch.zeros(plan.kernel_size, device=device)
            if plan.crop is None:
                self.blind_estimate = torch.zeros(1, 1, *support_size(self.y_full.shape[-2:], plan.kernel_size), device=device)
        if plan.starts > 1:
            first = plan.stages[plan.probe_stages]  # the coarsest scale's first start
            self.best_start_kernel_net = empty_net(lambda: self.kernel_spec.build(first.kernel_size)).to(device)
            self.best_start_x = torch.zeros(1, 1, *first.support, device=device)
            self.best_start_k = torch.zeros(first.kernel_size, device=device)

    def enter_scale(self, index: int) -> None:
        """Switch data, input noise and kernel-net output size to stage ``index``.

        The observation (and sharp reference) are resampled from full resolution; ``z_x``
        is fresh uniform noise of the new support size; G_k gets an output layer of the
        new kernel size when it changes. The nets' weights are otherwise untouched: the
        caller re-fits them. A start of the coarsest scale after the first gets fresh
        generators and ``z_k`` instead, drawn as :meth:`build` draws them.
        """
        self.scale_index = index
        scale = self.current_scale
        if scale.finishing:
            self._enter_finishing_stage(scale)
            return
        if self.plan.follows_probe(scale):
            # The method begins as a job given the chosen size does: from the random stream
            # as the job began (on a CPU, bit for bit the same generators, noise and steps).
            torch.set_rng_state(self.initial_rng)
            self._fresh_generators(scale)
        elif scale.start:  # a start after the first (the first has build's generators)
            self._fresh_generators(scale)
        y, sharp, crop = self.y_full, self.sharp_full, self.plan.crop
        if crop is not None:
            y = y[..., crop.rows(), crop.columns()]
            sharp = None if sharp is None else sharp[..., crop.rows(), crop.columns()]
        self.y = resize_image(y, scale.image_size)
        self.sharp = None if sharp is None else resize_image(sharp, scale.image_size)
        self.z_x = self._fresh_input_noise(scale.support)
        if self.kernel_net is not None and tuple(self.kernel_net.kernel_size) != tuple(scale.kernel_size):
            self.kernel_net.replace_output_layer(scale.kernel_size)
        self.apply_memory_format()

    def apply_memory_format(self) -> None:
        """Put the image net and its input in the layout ``memory_format`` asks for on the
        current device (set once per stage, not per step)."""
        device = self.y_full.device
        measured_faster = device.type in ("cpu", "cuda")
        channels_last = self.memory_format == "channels_last" or (self.memory_format == "auto" and measured_faster)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.image_net.to(memory_format=layout)
        self.z_x = self.z_x.contiguous(memory_format=layout)

    def _fresh_generators(self, scale: Scale) -> None:
        """New G_x, G_k (on the device and in the dtype of the ones they replace) and ``z_k``,
        in the order :meth:`build` draws them."""
        like = next(self.image_net.parameters())
        self.image_net = self.image_spec.build(output_channels=1).to(device=like.device, dtype=like.dtype)
        self.kernel_net = self.kernel_spec.build(scale.kernel_size).to(device=like.device, dtype=like.dtype)
        self.z_k = torch.rand(self.kernel_spec.input_size, device=like.device) * self.kernel_spec.noise_scale

    def _fresh_input_noise(self, support: tuple[int, int]) -> torch.Tensor:
        """``z_x`` for a support: uniform in ``[0, noise_scale)``, ``(1, input_channels, H', W')``."""
        noise = torch.rand(1, self.image_spec.input_channels, *support, device=self.y_full.device)
        return noise * self.image_spec.noise_scale

    def _enter_finishing_stage(self, scale: Scale) -> None:
        """Data of the stage's tile (RGB or luminance), and the image net as every tile starts it.

        Entering the first tile after the blind scales, the kernel net is dropped (its
        parameters leave the optimizer) and its kernel fills ``fixed_kernel``; without a
        crop, the full-size blind estimate fills ``blind_estimate``. The first tile gives
        the image net an output layer of the stage's channels and copies it into
        ``finish_start_net``; every later tile starts from that copy, so all tiles start
        alike. On a resume, the checkpoint overwrites all of these.
        """
        if self.kernel_net is not None:  # leaving the blind scales (or resuming past them)
            if self.latest_k is not None:
                self.fixed_kernel.copy_(self.latest_k)
            self.kernel_net = None
            if self.blind_estimate is not None and self.latest_x is not None:
                self.blind_estimate.copy_(self.latest_x)
        if self.image_net.head[0].out_channels != scale.channels:
            self.image_net.replace_head(scale.channels)
        if scale.index == self.plan.blind_scale_count:
            self.finish_start_net.load_state_dict(self.image_net.state_dict())
        else:
            self.image_net.load_state_dict(self.finish_start_net.state_dict())
        rows, columns = scale.tile.rows(), scale.tile.columns()
        y_source = self.y_colour if scale.channels == 3 else self.y_full
        sharp_source = self.sharp_colour if scale.channels == 3 else self.sharp_full
        self.y = y_source[..., rows, columns]
        self.sharp = None if sharp_source is None else sharp_source[..., rows, columns]
        self.z_x = self._fresh_input_noise(scale.support)
        self.apply_memory_format()

    @property
    def chosen_start(self) -> int | None:
        """The start the job continues from (the best of those ended so far), or ``None``
        in a one-start job or before the first start ends."""
        return best_start(self.start_records) if self.start_records else None

    def end_start(self) -> None:
        """Score the start of the coarsest scale that just ended (from :attr:`latest_x`,
        :attr:`latest_k` and the observation at that scale) and record it. A start that
        scores best so far is copied aside (the last one need not be); after the last
        start, the best one's nets, ``z_k`` and estimates come back, so the next scale
        continues from it."""
        scale = self.current_scale
        self.start_records.append(score_start(self.y, self.latest_x, self.latest_k))
        best, last = self.chosen_start, scale.start == self.plan.starts - 1
        live = (self.image_net, self.kernel_net, self.latest_x, self.latest_k, self.z_k)
        kept = (self.best_start_image_net, self.best_start_kernel_net, self.best_start_x, self.best_start_k, self.best_start_z_k)
        if best == scale.start and not last:
            copy_state(live, kept)
        elif last and best != scale.start:
            copy_state(kept, live)

    def end_attempt(self) -> dict | None:
        """At the end of a pass over the blind scales (its finest scale), in a job with
        ``restarts``: judge the pass's estimate (:func:`~lightning_deblur.core.verdict.judge`,
        before centring), record the verdict, and when it is ``no-blur`` and restarts are
        left, extend :attr:`plan` by another pass (:meth:`JobPlan.with_restart`).

        Only the no-blur verdict restarts: a new draw of the generators can leave that
        solution, while a kernel held at its support's border asks for a larger kernel
        size, which a restart does not change. The pass a job ends with is its result,
        whatever its verdict (no signal of a finished run tells the better of two:
        docs/RESULTS.md); the grown plan extends the Trainer's step budget (``plan``'s setter).

        Returns:
            the record of the pass (``attempt``, ``end_step``, ``verdict``,
            ``verdict_signals``), or ``None`` where no pass ended or the job has no restarts.
        """
        if self.restarts == 0 or not self.at_last_blind_scale:
            return None
        scale = self.current_scale
        verdict = judge(self.y, crop_to_observation(self.latest_x, scale.kernel_size), self.latest_k)
        record = {"attempt": scale.attempt, "end_step": scale.end_step, **verdict.as_metrics()}
        self.attempt_records.append(record)
        if verdict.label == NO_BLUR and scale.attempt < self.restarts:
            self.plan = self.plan.with_restart()
        return record

    def end_probe(self) -> dict | None:
        """At the end of the kernel-size probe: measure its kernel, choose the full-size
        kernel size (:func:`~lightning_deblur.core.kernel_support.size_from_probe`), and
        replace :attr:`plan` by the probe followed by the job planned with that size.

        Returns:
            :attr:`kernel_size_choice`, or ``None`` where the current stage is no probe.
        """
        scale = self.current_scale
        if not scale.probe or self.latest_k is None:
            return None
        region = self.plan.crop.size if self.plan.crop is not None else self.observation.size
        choice = kernel_size_choice(self.latest_k, scale.image_size, region, self.plan.kernel_size, self.kernel_probe.threshold)
        chosen = tuple(choice["kernel_size"])
        self.plan = self.plan.after_probe(self.plan_on(replace(self.observation, kernel_size=chosen), self.trainer))
        self.size_kernel_buffers()
        self.kernel_size_choice = choice
        return self.kernel_size_choice

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
        add_tile(self.finish_sum, self.finish_weight, estimate, scale.tile, self.plan.tile_overlap)

    # ---------------------------------------------------------------- results
    def end_blind_scales(self) -> None:
        """Centre the blind estimate (if ``centre_kernel``) and record the kernel's
        registration in :attr:`centring`; warn when centring pushes more than
        :data:`~lightning_deblur.core.centring.LOST_MASS_WARNING` of the kernel's mass out of
        its support (whether the kernel fills its support is the verdict's to judge).

        Runs once, at the finest blind scale, before the finishing stages take the kernel
        and the starting estimate or the results are written; later calls, non-blind jobs
        and jobs stopped at a coarser scale do nothing.
        """
        if self.latest_x is None or not self.centring_due:
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

    def estimate_as_written(self) -> torch.Tensor:
        """The current blind scale's ``(1, C, h, w)`` estimate registered as the results would
        be if the blind scales ended now: at the last blind scale, before
        :meth:`end_blind_scales` has run, moved as its centring would move it.

        Quality read during the job (``curve.csv``) scores this, so a row compares with
        ``metrics.json``: centring moves the image by whole pixels, which changes its plain
        PSNR and, where the move takes the best shift past the aligned search's reach, its
        aligned PSNR too (by 4.4 dB on a 255×255 Levin input).
        """
        x = self.latest_x
        if self.centre_kernel and self.centring_due:
            x = centre_kernel(x, self.latest_k).x
        return crop_to_observation(x, self.current_scale.kernel_size)

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
            add_tile(weighted, weights, estimate, scale.tile, self.plan.tile_overlap)
        observation = self.y_colour if scale.channels == 3 else self.y_full
        return blended(weighted, weights, observation), self.fixed_kernel
