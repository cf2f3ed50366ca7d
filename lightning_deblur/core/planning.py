"""The plan of a job, decided once before it runs: its stages (blind scales, coarse to
fine, then the non-blind finishing tiles), the kernel crop and the tiles' overlap.

Pure functions of the decoded observation and the method's settings (and, for an
automatic tile size, of the device's free memory): nothing here builds a net, draws a
random number or knows about Lightning. The command line plans to check the inputs and
hands the plan to the job, so a job is planned exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from lightning_deblur.core.errors import InputError, check_at_least
from lightning_deblur.core.generators import ImageNetSpec
from lightning_deblur.core.imagefiles import check_job_sizes
from lightning_deblur.core.kernel_crop import KernelCropSpec, choose_crop
from lightning_deblur.core.kernel_support import KernelProbeSpec, default_max_kernel_size
from lightning_deblur.core.memory import check_fits
from lightning_deblur.core.nets import SkipNet
from lightning_deblur.core.physics import support_size
from lightning_deblur.core.resample import odd_size
from lightning_deblur.core.tiles import Box, FinishSpec, finishing_layout, largest_fitting_tile


@dataclass
class ScalesSpec:
    """How many scales, how far apart, and how long each runs.

    Attributes:
        count: number of scales; 1 runs at full resolution only (the original method).
        ratio: size ratio between consecutive scales; the coarsest is ``ratio**-(count-1)``
            of the input (1/2 for 3 scales at √2).
        min_kernel_size: floor of the kernel side at coarse scales (odd, pixels); never
            above the full kernel size.
        coarse_iterations: iterations at every scale but the finest.
    """

    count: int = 3
    ratio: float = math.sqrt(2)
    min_kernel_size: int = 7
    coarse_iterations: int = 500

    def __post_init__(self) -> None:
        check_at_least(self.count, 1, "--model.scales.count", ScalesSpec.count)


@dataclass(frozen=True)
class Scale:
    """One stage of the plan: a blind scale or a finishing tile.

    Attributes:
        index: position in the plan; 0 is the coarsest scale.
        image_size: ``(H, W)`` of the observation at this stage, pixels.
        kernel_size: ``(kh, kw)`` at this stage, odd.
        iterations: optimization steps of this stage.
        start_step: global step at which the stage begins.
        finishing: a non-blind stage after the blind scales (or the whole of a
            non-blind job): the kernel is fixed and the image net deblurs one tile of the
            full-size observation (``tile``) in ``channels`` channels.
        channels: image channels of the stage: 1 (luminance or grey) or 3 (RGB).
        tile: the box of the full-size observation a finishing stage deblurs.
        start: with several starts (``JobPlan.starts``), which run of the coarsest scale
            this stage is, 0-based; ``None`` for every other stage and in a one-start plan.
        attempt: which pass over the blind scales the stage belongs to: 0, then one more
            per restart (:meth:`JobPlan.with_restart`); 0 for finishing stages.
        probe: the kernel-size probe of a job given ``--data.kernel_size auto``
            (:mod:`~lightning_deblur.core.kernel_support`): a blind stage before the
            method's own, whose kernel sets the size of every later stage.
    """

    index: int
    image_size: tuple[int, int]
    kernel_size: tuple[int, int]
    iterations: int
    start_step: int
    finishing: bool = False
    channels: int = 1
    tile: Box | None = None
    start: int | None = None
    attempt: int = 0
    probe: bool = False

    @property
    def support(self) -> tuple[int, int]:
        return support_size(self.image_size, self.kernel_size)

    @property
    def end_step(self) -> int:
        return self.start_step + self.iterations


@dataclass(frozen=True)
class JobPlan:
    """Everything a job's course depends on, fixed before its first step.

    Attributes:
        stages: the blind scales (coarsest first), then one finishing stage per tile.
        blind_scale_count: how many of ``stages`` are blind scales (0 in a non-blind job).
        crop: the box of the observation the kernel is estimated on, or ``None`` (all of it).
        tile_overlap: pixels neighbouring finishing tiles share (0 without tiles).
        starts: runs of the coarsest scale, each from fresh generators; the best-scoring
            one continues (its stages come first, and count among the blind scales).

    A job given ``--data.kernel_size auto`` begins with a probe stage (``stages[0]``,
    counted among the blind scales); until it ends, the later stages hold the largest
    kernel size allowed, and :meth:`after_probe` then replaces them.
    """

    stages: tuple[Scale, ...]
    blind_scale_count: int
    crop: Box | None = None
    tile_overlap: int = 0
    starts: int = 1

    @property
    def total_steps(self) -> int:
        """Optimization steps of the whole job (the Trainer's ``max_steps``)."""
        return self.stages[-1].end_step

    @property
    def kernel_size(self) -> tuple[int, int]:
        """``(kh, kw)`` at full resolution: the size the result's kernel has."""
        return self.stages[-1].kernel_size

    @property
    def probe_stages(self) -> int:
        """1 where the plan begins with a kernel-size probe, else 0."""
        return int(bool(self.stages) and self.stages[0].probe)

    def begins_afresh(self, stage: Scale) -> bool:
        """Whether ``stage`` begins as a job does, with only the kernel fitted (nothing handed
        up): a start of the coarsest scale or the first stage after the kernel-size probe
        (both from fresh generators), or a restart's coarsest scale (G_x kept)."""
        return stage.start is not None or self.begins_attempt(stage) or self.follows_probe(stage)

    def follows_probe(self, stage: Scale) -> bool:
        """Whether ``stage`` comes right after the probe: it starts from fresh generators,
        as the job would without a probe."""
        return self.probe_stages == 1 and stage.index == 1

    def after_probe(self, replanned: JobPlan) -> JobPlan:
        """This plan's probe followed by ``replanned`` (the job planned with the kernel size
        the probe chose, without a probe), whose stages move back by the probe's steps."""
        probe = self.stages[0]
        moved = tuple(
            replace(stage, index=stage.index + 1, start_step=stage.start_step + probe.end_step)
            for stage in replanned.stages
        )
        return replace(replanned, stages=(probe, *moved), blind_scale_count=replanned.blind_scale_count + 1)

    @property
    def has_finishing(self) -> bool:
        return self.stages[-1].finishing

    @property
    def tile_count(self) -> int:
        """Finishing tiles in the plan (0 without a finishing stage)."""
        return len(self.stages) - self.blind_scale_count

    @property
    def finishing_channels(self) -> int:
        """Image channels of the finishing stage (1 without one)."""
        return self.stages[-1].channels if self.has_finishing else 1

    @property
    def attempts(self) -> int:
        """Passes over the blind scales: 1 as planned, one more for every restart the job
        has made (:meth:`with_restart`; their stages follow the first pass's and count
        among the blind scales). Read from the last blind stage."""
        return self.stages[self.blind_scale_count - 1].attempt + 1 if self.blind_scale_count else 1

    @property
    def scale_count(self) -> int:
        """Blind scales of one pass (the coarsest counted once however many starts it has)."""
        return (self.blind_scale_count - (self.starts - 1) - self.probe_stages) // self.attempts

    def scale_number(self, stage: Scale) -> int:
        """0-based position of a blind stage among the scales of its pass, counting the
        coarsest scale once however many starts it has (-1 for the probe)."""
        if stage.probe:
            return -1
        if stage.start is not None:
            return 0
        return stage.index - (self.starts - 1) - self.probe_stages - stage.attempt * self.scale_count

    def begins_attempt(self, stage: Scale) -> bool:
        """Whether ``stage`` is the coarsest scale of a restart: it begins as the job did,
        with new input noise and G_k fitted to the initial kernel (G_x keeps its weights)."""
        return stage.attempt > 0 and not stage.finishing and self.scale_number(stage) == 0

    def scale_name(self, stage: Scale) -> str:
        """``scale<s>`` (``s`` its :meth:`scale_number`), with ``_start<k>`` for a start of
        the coarsest scale and ``_restart<a>`` for a restart's pass: the name of the files a
        blind stage leaves; ``probe`` for the kernel-size probe."""
        if stage.probe:
            return "probe"
        suffix = "" if stage.start is None else f"_start{stage.start}"
        suffix += f"_restart{stage.attempt}" if stage.attempt else ""
        return f"scale{self.scale_number(stage)}{suffix}"

    @property
    def attempt_steps(self) -> int:
        """Steps of one pass over the blind scales with one start: what a restart adds."""
        last_pass = self.stages[self.blind_scale_count - self.scale_count : self.blind_scale_count]
        return sum(stage.iterations for stage in last_pass)

    def with_restart(self) -> JobPlan:
        """This plan with one more pass over the blind scales after the last pass (one start
        of the coarsest scale, whatever ``starts`` says; never the kernel-size probe),
        before the finishing stages, which move back by its steps."""
        blind, count = self.blind_scale_count, self.scale_count
        previous = self.stages[blind - count : blind]
        step, added = self.stages[blind - 1].end_step, []
        for offset, stage in enumerate(previous):
            added.append(replace(stage, index=blind + offset, start_step=step, start=None, attempt=self.attempts))
            step += stage.iterations
        shift = step - self.stages[blind - 1].end_step
        finishing = tuple(
            replace(stage, index=stage.index + count, start_step=stage.start_step + shift)
            for stage in self.stages[blind:]
        )
        stages = self.stages[:blind] + tuple(added) + finishing
        return replace(self, stages=stages, blind_scale_count=blind + count)


def plan_scales(
    image_size: tuple[int, int],
    kernel_size: tuple[int, int],
    spec: ScalesSpec,
    finest_iterations: int,
    starts: int = 1,
) -> list[Scale]:
    """Sizes and iteration budgets of every scale, coarsest first.

    Scale ``s`` of ``n`` has factor ``ratio**-(n-1-s)``; its image size is the input size
    times the factor, rounded; its kernel size the full kernel size times the factor,
    rounded to odd, at least ``min_kernel_size`` (and at most the full size). With
    ``starts`` > 1 the coarsest scale is planned that many times in a row (stage ``k``
    has ``start=k``), so step counts and ``max_steps`` include every start; the job
    refuses several starts with one scale.
    """
    scales, start = [], 0
    for index in range(spec.count):
        factor = spec.ratio ** -(spec.count - 1 - index)
        finest = index == spec.count - 1
        image = image_size if finest else scaled_image_size(image_size, factor)
        kernel = kernel_size if finest else scaled_kernel_size(kernel_size, factor, spec.min_kernel_size)
        iterations = finest_iterations if finest else spec.coarse_iterations
        repeated = index == 0 and starts > 1
        for run in range(starts if repeated else 1):
            scales.append(Scale(len(scales), image, kernel, iterations, start, start=run if repeated else None))
            start += iterations
    return scales


def scaled_image_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    """``(H, W)`` times ``factor``, rounded half up (at least 1): a coarser scale's image."""
    # A little slack: √2·√2 is not exactly 2 in floating point.
    return tuple(max(1, math.floor(side * factor + 0.5 + 1e-9)) for side in size)


def scaled_kernel_size(size: tuple[int, int], factor: float, floor: int) -> tuple[int, int]:
    """``(kh, kw)`` times ``factor``, rounded to odd, at least ``floor`` and at most ``size``:
    a coarser scale's kernel."""
    return tuple(min(full, max(floor, odd_size(full * factor))) for full in size)


def automatic_size_bound(observation, region: tuple[int, int]) -> tuple[int, int]:
    """The largest kernel size an automatic size may take on ``region`` (the image or the
    kernel crop): ``--data.max_kernel_size``, or :func:`default_max_kernel_size`."""
    if observation.max_kernel_size is not None:
        return tuple(observation.max_kernel_size)
    side = default_max_kernel_size(region)
    return side, side


def probe_stage(region: tuple[int, int], bound: tuple[int, int], probe: KernelProbeSpec) -> Scale:
    """The kernel-size probe: ``region`` shrunk by ``probe.scale`` with the bound's kernel
    shrunk alike (odd, at least 3), for ``probe.iterations`` steps from step 0."""
    image, kernel = scaled_image_size(region, probe.scale), scaled_kernel_size(bound, probe.scale, 3)
    return Scale(0, image, kernel, probe.iterations, 0, probe=True)


def check_stage_size(size: tuple[int, int], kernel_size: tuple[int, int], image_spec: ImageNetSpec, what: str, enlarge: str):
    """Refuse a stage too small for its kernel or for the image net (``what`` and
    ``enlarge`` name the region and its fix in the message)."""
    min_support = SkipNet.min_input_size(image_spec.levels)
    check_job_sizes(size, kernel_size, min_support, image_spec.levels, what, enlarge)


def plan_job(
    observation,
    *,
    blind: bool,
    colour: str,
    image_spec: ImageNetSpec,
    scales: ScalesSpec,
    iterations: int,
    kernel_crop: KernelCropSpec,
    finish: FinishSpec,
    starts: int = 1,
    probe: KernelProbeSpec = KernelProbeSpec(),
    device: torch.device | None = None,
    bytes_per_value: int = 4,
) -> JobPlan:
    """Plan a job on ``observation`` (a :class:`~lightning_deblur.job.data.Observation`).

    Args:
        blind: estimate the kernel (blind scales), or deblur with the observation's known
            kernel (finishing stages only).
        colour: ``full`` adds a 3-channel finishing stage for RGB inputs; ``luminance`` not.
        image_spec, scales, iterations, kernel_crop, finish, starts, probe: the method's
            settings, as :class:`~lightning_deblur.job.deblur_job.DeblurJob` takes them.
            Where the observation's kernel size is automatic (``None``), a probe stage
            comes first and every later stage holds the largest size allowed
            (:func:`automatic_size_bound`) until the probe's end replaces them.
        device: where the job will run: an automatic tile size fits its free memory and
            the largest stage is checked against it; ``None`` skips both (one tile).
        bytes_per_value: 4 for float32 activations, 2 under 16-bit autocast.

    Raises:
        InputError: a missing known kernel, a stage too small for the kernel or the image
            net, a crop without finishing steps, or a stage too large for the device.
    """
    if not blind and observation.kernel is None:
        raise InputError("non-blind mode (model.kernel_mode: fixed) needs the kernel: pass --data.kernel k.npy")
    automatic = observation.kernel_size is None
    if automatic and not blind:
        raise InputError("a known kernel (model.kernel_mode: fixed) has its own size: leave --data.kernel_size out, not auto")
    crop = choose_crop(observation.y, kernel_crop) if blind else None
    stages: list[Scale] = []
    region = observation.size if crop is None else crop.size
    kernel_size = automatic_size_bound(observation, region) if automatic else observation.kernel_size
    if blind:
        stages = plan_scales(region, kernel_size, scales, iterations, starts)
        if automatic:
            first = probe_stage(region, kernel_size, probe)
            stages = [first] + [
                replace(stage, index=stage.index + 1, start_step=stage.start_step + first.iterations) for stage in stages
            ]
        words = ("image", "a larger image") if crop is None else ("kernel crop", "a larger crop (--model.kernel_crop.size or .box)")
        probe_words = ("kernel-size probe", "a larger image, --model.kernel_probe.scale nearer 1, or a kernel size instead of auto")
        for scale in reversed(stages):  # the full-size check first: its message is the clearest
            check_stage_size(scale.image_size, scale.kernel_size, image_spec, *(probe_words if scale.probe else words))
    blind_scale_count = len(stages)
    channels = 3 if colour == "full" and observation.y_colour is not None else 1
    steps_per_tile = finishing_iterations(blind, crop is not None, iterations, finish)
    if crop is not None and steps_per_tile < 1:
        raise InputError(
            "the kernel is estimated on a crop, so the whole image needs the finishing stage: "
            "set --model.finish.iterations to a positive number (or --model.kernel_crop.size null)"
        )

    def checked_layout(tile_size: int) -> tuple[list[Box], int]:
        boxes, overlap = finishing_layout(observation.size, kernel_size, tile_size, finish.overlap)
        for box in boxes:
            check_stage_size(box.size, kernel_size, image_spec, "tile", "a larger --model.finish.tile_size")
        return boxes, overlap

    # A tile size given is checked even where this job has no finishing stage: it is wrong.
    layout = None if finish.tile_size is None else checked_layout(finish.tile_size)
    overlap = 0
    if steps_per_tile > 0 and (not blind or crop is not None or channels == 3):
        if layout is None:
            layout = checked_layout(automatic_tile_size(observation, kernel_size, image_spec, channels, device, bytes_per_value))
        boxes, overlap = layout
        start = stages[-1].end_step if stages else 0
        for box in boxes:
            stages.append(Scale(len(stages), box.size, kernel_size, steps_per_tile, start, True, channels, box))
            start += steps_per_tile
    plan = JobPlan(tuple(stages), blind_scale_count, crop, overlap, starts if blind else 1)
    if device is not None:
        # Refuse now, with the memory it needs, rather than fail with an OOM mid-job.
        largest = max(plan.stages, key=lambda stage: stage.support[0] * stage.support[1])
        check_fits(image_spec, largest.support, device, bytes_per_value)
    return plan


def plan_job_from_options(observation, model, device: torch.device | None = None, bytes_per_value: int = 4) -> JobPlan:
    """:func:`plan_job` with the method's settings read from a job's options: the one
    mapping from options to a plan, used by the command line's input check and by the job.

    Args:
        observation: the job's :class:`~lightning_deblur.job.data.Observation`.
        model: the job's options, either the ``model`` section of a parsed ``fit``
            configuration (settings as nested namespaces) or a
            :class:`~lightning_deblur.job.deblur_job.DeblurJob`'s ``hparams`` (settings as
            spec objects, or as dicts where the command line made the job).
        device, bytes_per_value: as for :func:`plan_job`.
    """

    def spec(kind, value):
        if isinstance(value, kind):
            return value
        return kind(**(value if isinstance(value, dict) else vars(value)))  # a dict: the CLI's hparams

    return plan_job(
        observation,
        blind=model.get("kernel_mode", "blind") != "fixed",
        colour=model.get("colour", "full"),
        image_spec=spec(ImageNetSpec, model.image_net),
        scales=spec(ScalesSpec, model.scales),
        iterations=model.iterations,
        kernel_crop=spec(KernelCropSpec, model.kernel_crop),
        finish=spec(FinishSpec, model.finish),
        starts=model.get("starts", 1),
        probe=spec(KernelProbeSpec, model.get("kernel_probe", KernelProbeSpec())),
        device=device,
        bytes_per_value=bytes_per_value,
    )


def finishing_iterations(blind: bool, cropped: bool, iterations: int, finish: FinishSpec) -> int:
    """Steps per finishing tile. A non-blind job: ``iterations``. After blind scales:
    ``finish.iterations`` when set; otherwise a non-blind job's whole budget
    (``iterations``) when the tiles start from the blurred observation (after a kernel
    from a crop), and a fifth of it (1000 of 5000) when they start from the full-size
    blind estimate (the colour stage)."""
    if not blind:
        return iterations
    if finish.iterations is not None:
        return finish.iterations
    if cropped:
        return iterations
    return max(iterations // 5, 1)


def automatic_tile_size(
    observation, kernel_size: tuple[int, int], image_spec: ImageNetSpec, channels: int, device, bytes_per_value: int
) -> int:
    """The largest tile side whose step fits in ``device``'s free memory; the whole image
    without a device."""
    if device is None:
        return max(observation.size)
    smallest = max(SkipNet.min_input_size(image_spec.levels) - min(kernel_size) + 1, 1)
    return largest_fitting_tile(image_spec, observation.size, kernel_size, device, channels, bytes_per_value, smallest)
