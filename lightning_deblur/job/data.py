"""The data side of a job: one blurred image, its kernel size, and a stream of steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lightning_deblur.core.colour import luminance
from lightning_deblur.core.errors import InputError
from lightning_deblur.core.package_files import resolve_path
from lightning_deblur.core.imagefiles import LoadedImage, parse_kernel_size, read_image, read_kernel
from lightning_deblur.core.kernel_support import AUTO, is_automatic


@dataclass
class Observation:
    """The blurred image a job deblurs, as tensors, plus what is needed to write results.

    Attributes:
        y: ``(1, 1, H, W)`` float32 luminance (or grey) in [0, 1].
        kernel_size: ``(kh, kw)`` in pixels, both odd; ``None`` where the job finds it
            (``--data.kernel_size auto``, :mod:`~lightning_deblur.core.kernel_support`).
        source: the decoded input file (colour, bit depth, path).
        sharp: ``(1, 1, H, W)`` float32 luminance of the sharp reference, if given.
        sharp_source: the decoded sharp reference file, if given.
        kernel: ``(kh, kw)`` float32 known kernel (physical orientation, sums to 1), for
            non-blind jobs.
        y_colour: ``(1, 3, H, W)`` float32 RGB of a colour input, for the colour stage.
        sharp_colour: ``(1, 3, H, W)`` RGB of a colour sharp reference.
        max_kernel_size: ``(kh, kw)`` bound of an automatic kernel size, or ``None`` (the
            default bound, or a size given).
    """

    y: torch.Tensor
    kernel_size: tuple[int, int] | None
    source: LoadedImage
    sharp: torch.Tensor | None = None
    sharp_source: LoadedImage | None = None
    kernel: torch.Tensor | None = None
    y_colour: torch.Tensor | None = None
    sharp_colour: torch.Tensor | None = None
    max_kernel_size: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.y.shape[-2], self.y.shape[-1]


def _to_tensor(pixels) -> torch.Tensor:
    return torch.from_numpy(luminance(pixels)).float()[None, None]


def _colour_tensor(pixels) -> torch.Tensor | None:
    """``(1, 3, H, W)`` float32 for RGB pixels, ``None`` for grey ones."""
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float()[None] if pixels.ndim == 3 else None


def load_observation(
    image: str,
    kernel_size: int | tuple[int, int] | str | None,
    sharp: str | None = None,
    kernel: str | None = None,
    max_kernel_size: int | tuple[int, int] | str | None = None,
) -> Observation:
    """Read and check the job's input files.

    Args:
        image: blurred image path (or ``example:NAME``).
        kernel_size: odd size, ``(kh, kw)``, text (``"27x31"``) or ``"auto"``; may be
            ``None`` when ``kernel`` is given.
        sharp: optional sharp reference of the same size.
        kernel: optional known kernel (``.npy`` or image), for non-blind jobs.
        max_kernel_size: bound of an automatic kernel size (odd, as ``kernel_size``).

    Raises:
        InputError: unreadable files, a bad kernel size or kernel, a blurred image of one
            flat colour, or a sharp reference whose size differs from the blurred image.
    """
    automatic = is_automatic(kernel_size)
    if max_kernel_size is not None and not automatic:
        raise InputError("--data.max_kernel_size bounds an automatic size: add --data.kernel_size auto, or leave it out")
    if automatic and kernel is not None:
        raise InputError("--data.kernel gives the kernel and its size: leave --data.kernel_size out, not auto")
    known_kernel = None
    if kernel is not None:
        known_kernel = read_kernel(resolve_path(kernel), "--data.kernel")
        height, width = known_kernel.shape
        if min(height, width) < 3 or height % 2 == 0 or width % 2 == 0:
            padded = "×".join(str(max(side + 1 - side % 2, 3)) for side in (height, width))
            raise InputError(
                f"the kernel in '{kernel}' is {height}×{width}, but a kernel needs odd sides of at least 3 (a centre "
                f"pixel); pad it with zeros to {padded}, centred, and give that to --data.kernel"
            )
        if kernel_size is None:
            kernel_size = known_kernel.shape
        if tuple(parse_kernel_size(kernel_size)) != tuple(known_kernel.shape):
            raise InputError(
                f"--data.kernel is {known_kernel.shape[0]}×{known_kernel.shape[1]} but --data.kernel_size says "
                f"{kernel_size}; leave --data.kernel_size out or make them agree"
            )
    if kernel_size is None:
        raise InputError("the blur size is missing; pass --data.kernel_size (an odd number of pixels, e.g. 27)")
    if automatic:
        kernel_size = None
        if max_kernel_size is not None:
            max_kernel_size = parse_kernel_size(max_kernel_size, "--data.max_kernel_size")
    else:
        kernel_size = parse_kernel_size(kernel_size, also=AUTO)
    source = read_image(resolve_path(image), "--data.image")
    if np.ptp(source.pixels) == 0:
        raise InputError(
            f"'{source.path}' is one flat colour (every pixel {source.pixels.flat[0]:.3g}): there is nothing to "
            "deblur; give --data.image a photo"
        )
    observation = Observation(
        y=_to_tensor(source.pixels),
        kernel_size=kernel_size,
        source=source,
        y_colour=_colour_tensor(source.pixels),
        max_kernel_size=max_kernel_size,
    )
    if known_kernel is not None:
        observation.kernel = torch.from_numpy(known_kernel).float()
    if sharp is not None:
        sharp_source = read_image(resolve_path(sharp), "--data.sharp")
        if sharp_source.size != source.size:
            raise InputError(
                f"the sharp reference is {sharp_source.size[0]}×{sharp_source.size[1]} but the blurred image is "
                f"{source.size[0]}×{source.size[1]}; --data.sharp must match the blurred image pixel for pixel"
            )
        observation.sharp = _to_tensor(sharp_source.pixels)
        observation.sharp_source = sharp_source
        if observation.y_colour is not None:
            observation.sharp_colour = _colour_tensor(sharp_source.pixels)
    return observation


def observation_in(state_dict: dict, plan) -> Observation:
    """The observation a checkpoint's buffers hold (without the decoded source file), its
    kernel size the full-size one of ``plan`` (the job's :class:`~lightning_deblur.core.planning.JobPlan`)."""
    return Observation(
        y=state_dict["y_full"],
        kernel_size=plan.kernel_size,
        source=None,
        sharp=state_dict.get("sharp_full"),
        kernel=state_dict.get("fixed_kernel"),
        y_colour=state_dict.get("y_colour"),
        sharp_colour=state_dict.get("sharp_colour"),
    )


class StepIndices(Dataset):
    """``length`` items, each its own index as a plain ``int``.

    The image itself lives on the device inside the job; the loader only paces the
    steps, so nothing is copied to the device per step.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


class StepPacer(DataLoader):
    """The job's loader: it paces the steps and carries no data (:class:`StepIndices`).

    Its state is empty and restoring it does nothing: where in the loader a resumed fit
    starts makes no difference to the job, whose ``max_steps`` ends the fit. Saying so
    makes it resumable to Lightning, which otherwise warns that a checkpoint taken
    mid-epoch may give unreliable results.
    """

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class BlurredImage(LightningDataModule):
    """One blurred photo and the size of its blur.

    Args:
        image: path of the blurred image (PNG, JPEG or TIFF; 8 or 16 bit; grey or RGB),
            or ``example:NAME`` for a bundled example.
        kernel_size: blur size in pixels: one odd number, or ``[kh, kw]`` (also written
            ``KHxKW``, as in a manifest). An upper bound of the true blur is safe. ``auto``:
            the job finds it (a probe at half resolution first,
            :mod:`~lightning_deblur.core.kernel_support`). May be left out when ``kernel``
            is given.
        sharp: optional sharp reference of the same size, for PSNR/SSIM/ISNR.
        kernel: optional known kernel (``.npy``, or an image scaled to any maximum), in
            physical orientation; used by non-blind jobs (``model.kernel_mode: fixed``).
        max_kernel_size: with ``kernel_size: auto``, the largest size the job may choose
            (odd, or ``[kh, kw]``); ``None``: a sixth of the short side of the region the
            kernel is estimated on (41 px at 255 px).
    """

    def __init__(
        self,
        image: str,
        kernel_size: int | tuple[int, int] | str | None = None,
        sharp: str | None = None,
        kernel: str | None = None,
        max_kernel_size: int | tuple[int, int] | str | None = None,
    ) -> None:
        super().__init__()
        self.image = image
        self.kernel_size = kernel_size
        self.sharp = sharp
        self.kernel = kernel
        self.max_kernel_size = max_kernel_size
        self.observation: Observation | None = None

    def load(self) -> Observation:
        """The decoded, checked inputs; read once, on the first call."""
        if self.observation is None:
            self.observation = load_observation(self.image, self.kernel_size, self.sharp, self.kernel, self.max_kernel_size)
        return self.observation

    def setup(self, stage: str) -> None:
        self.load()

    def train_dataloader(self) -> StepPacer:
        # One item per step the job can take (its plan's, and any restarts'): the Trainer's
        # max_steps (the plan's steps, which the job sets and a restart grows)
        # ends the fit, also when a resumed fit replays this loader from its start.
        steps = self.trainer.lightning_module.most_steps
        # batch_size=None: items pass through uncollated, so each batch is a plain int.
        # Its own generator: the loader draws a seed per epoch, and drawing it from the
        # global RNG would shift the job's noise stream between a run and its resumption.
        return StepPacer(StepIndices(steps), batch_size=None, shuffle=False, generator=torch.Generator())
