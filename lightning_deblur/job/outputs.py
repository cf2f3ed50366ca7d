"""Writes the results of a finished job into its run folder and says where they are."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer

from lightning_deblur.job.checkpointing import JobCheckpoint, JobTimer
from lightning_deblur.core.colour import luminance, replace_luminance
from lightning_deblur.core.errors import InputError
from lightning_deblur.job.image_logging import tensorboard_writer
from lightning_deblur.core.imagefiles import size_text, write_image, write_json, write_kernel_npy, write_kernel_png
from lightning_deblur.core.metrics import isnr_per_image, psnr_per_image, ssim_per_image
from lightning_deblur.core.provenance import provenance
from lightning_deblur.core.alignment import aligned_isnr, aligned_psnr, aligned_ssim, fits_levin_comparison
from lightning_deblur.core.verdict import Verdict, judge

RESULT_FILES = ("deblurred.png", "kernel.npy", "kernel.png", "metrics.json")
"""Files every finished job leaves in its run folder (``metrics.json`` is written last)."""


class ResultWriter(Callback):
    """At the end of a job, writes into the run folder (``trainer.log_dir``):

    - ``deblurred.png``: the ``H × W`` result in the input's bit depth (RGB inputs:
      all channels deblurred by the colour stage, or with ``model.colour: luminance``
      the deblurred luminance with the input's chroma);
    - ``kernel.npy``: float32 ``(kh, kw)``, sums to 1, physical orientation;
    - ``kernel.png``: the kernel scaled to its maximum and enlarged (nearest neighbour);
    - ``metrics.json``: ``status`` (``done``; ``failed`` with an ``error`` when the
      divergence guard stopped the job: the files then hold the last good estimate;
      ``stopped`` when the Trainer was told to stop before the plan's end, e.g. by
      ``--timer.duration``: the files hold the estimate so far, the checkpoint resumes it),
      final loss, iterations, wall time, the kernel's registration (blind jobs: its
      centroid offset before centring and the shift applied), the no-reference
      ``verdict`` with its signals (blind jobs, :mod:`lightning_deblur.core.verdict`), with
      several starts of the coarsest scale each one's score and signals (``starts``,
      :mod:`lightning_deblur.core.starts`) and the one the job continued from
      (``chosen_start``, 0-based), with ``--model.restarts`` the verdict on every pass
      over the blind scales (``attempts``) and how many restarts ran (``restarts``),
      and with a sharp reference
      PSNR, SSIM and ISNR of the result and of the input (on the luminance), plain
      and shift-aligned (see :func:`quality_figures`).

    Every file is written atomically; ``metrics.json`` comes last, so its presence
    means the run's results are complete.

    Args:
        verbose: print where the results are and the PSNR gain.
    """

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.write_results(trainer, pl_module)

    def write_results(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        """Write one job's result files into its run folder (``pl_module.run_folder()``);
        its ``metrics.json`` entries."""
        wall_time = training_time(trainer)
        folder = pl_module.run_folder()
        folder.mkdir(parents=True, exist_ok=True)
        observation = pl_module.observation
        metrics = {
            "status": "failed" if pl_module.failure else "stopped" if pl_module.stopped_early else "done",
            "image": str(observation.source.path),
            "kernel_size": list(pl_module.plan.kernel_size),
            "iterations": int(trainer.global_step),
            "wall_time_s": round(wall_time, 3),
            "seconds_per_iteration": round(wall_time / max(trainer.global_step, 1), 5),
            "device": str(pl_module.device),
            "precision": str(trainer.precision),
            "software": provenance(),
        }
        if pl_module.failure:
            metrics["error"] = pl_module.failure
        elif pl_module.stopped_early:
            metrics["error"] = stop_record(trainer, pl_module)
        if pl_module.latest_loss is not None:
            metrics["final_loss"] = float(pl_module.latest_loss)
        inputs = {p.resolve() for p in (observation.source.path, getattr(observation.sharp_source, "path", None)) if p}
        clashes = [name for name in RESULT_FILES if (folder / name).resolve() in inputs]
        if clashes:
            raise InputError(
                f"the run folder {folder} holds an input file named {clashes[0]}; results never overwrite inputs: "
                "move the input or choose another --trainer.logger.init_args.save_dir"
            )
        # A job stopped early at its finest blind scale is centred here (once per job).
        pl_module.end_blind_scales()
        if pl_module.centring is not None:
            metrics.update(pl_module.centring)
        if pl_module.start_records:
            metrics["starts"] = [record.as_metrics() for record in pl_module.start_records]
            if len(pl_module.start_records) == pl_module.plan.starts:
                metrics["chosen_start"] = pl_module.chosen_start
        if pl_module.kernel_size_choice is not None:
            metrics["kernel_size_choice"] = pl_module.kernel_size_choice
        if pl_module.attempt_records:
            metrics["attempts"] = pl_module.attempt_records
            metrics["restarts"] = pl_module.plan.attempts - 1
        if pl_module.latest_x is not None:
            image, kernel = pl_module.estimate()
            self._write_estimate(folder, observation, image, kernel)
            metrics["colour"] = "full" if image.shape[1] == 3 else ("luminance" if observation.source.is_colour else "grey")
            if pl_module.plan.crop is not None:
                metrics["kernel_crop"] = pl_module.plan.crop.as_list()
            if pl_module.plan.has_finishing:
                metrics["tiles"] = pl_module.plan.tile_count
            # The verdict and the quality figures both judge the luminance, comparable
            # between colour modes and methods.
            grey = luminance(image.float())
            if pl_module.kernel_mode == "blind" and pl_module.estimate_is_full_size:
                verdict = judge(pl_module.y_full, grey, kernel)
                metrics.update(verdict.as_metrics())
                writer = tensorboard_writer(trainer)
                if writer is not None:
                    writer.add_text("verdict", verdict.sentence(), trainer.global_step)
            if pl_module.sharp_full is not None and pl_module.estimate_is_full_size:
                metrics.update(quality_figures(grey, pl_module.y_full, pl_module.sharp_full))
                if image.shape[1] == 3 and pl_module.sharp_colour is not None:
                    metrics.update(colour_figures(image.float(), pl_module.y_colour, pl_module.sharp_colour))
        write_json(folder / "metrics.json", metrics)
        if self.verbose:
            print(summary_line(folder, metrics), flush=True)
        return metrics

    @staticmethod
    def _write_estimate(folder: Path, observation, image, kernel) -> None:
        kernel_array = kernel.float().cpu().numpy()
        write_image(folder / "deblurred.png", result_pixels(observation, image), observation.source.bit_depth)
        write_kernel_npy(folder / "kernel.npy", kernel_array / kernel_array.sum(dtype=np.float64))
        write_kernel_png(folder / "kernel.png", kernel_array)


def result_pixels(observation, image) -> np.ndarray:
    """The deblurred image as the user gets it: float64 in [0, 1] of the input's shape.

    Args:
        observation: the job's :class:`~lightning_deblur.job.data.Observation`.
        image: ``(1, C, H, W)`` full-size estimate (a job's ``estimate()``): RGB as it is;
            one channel with a colour input takes the input's chroma.

    Returns:
        ``(H, W, 3)`` for colour inputs, ``(H, W)`` for grey ones.
    """
    if image.shape[1] == 3:
        return image[0].permute(1, 2, 0).double().cpu().numpy()
    grey = image[0, 0].double().cpu().numpy()
    source = observation.source
    return replace_luminance(source.pixels, grey) if source.is_colour else grey


def stop_record(trainer: Trainer, pl_module: LightningModule) -> str:
    """The ``error`` of a job stopped before its plan's end: where it stopped, why, and the
    command line options that resume it (the run's ``config.yaml`` holds the others)."""
    stopped = f"stopped after {trainer.global_step} of {pl_module.plan.total_steps} steps"
    resume = ""
    if pl_module.reached_step_limit:
        stopped += f" (--trainer.max_steps {pl_module.requested_max_steps})"
        resume = " --trainer.max_steps -1"
    elif pl_module.stop_signal is not None:
        stopped += f" by {signal.Signals(pl_module.stop_signal).name}"
    # JobCheckpoint saves the step reached (after this writer) unless checkpoints are off.
    checkpoints = [c for c in trainer.callbacks if isinstance(c, JobCheckpoint) and c.every_n_steps]
    if not checkpoints:
        return f"{stopped} (no checkpoint to resume from: --checkpoint.every_n_steps is 0)"
    config = Path(trainer.log_dir or trainer.default_root_dir) / "config.yaml"
    return f"{stopped}; resume with --config {config} --ckpt_path {Path(checkpoints[0].dirpath) / 'last.ckpt'}{resume}"


def training_time(trainer: Trainer) -> float:
    """Seconds of training so far, from the trainer's :class:`Timer` (a resumed job counts
    the time before its checkpoint too: :meth:`JobTimer.job_time`)."""
    timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    if not timers:
        raise RuntimeError("ResultWriter needs a lightning.pytorch.callbacks.Timer among the trainer's callbacks")
    timer = timers[0]
    return timer.job_time() if isinstance(timer, JobTimer) else timer.time_elapsed("train")


def quality_figures(estimate, observation, sharp) -> dict:
    """Quality of the estimate and of the observation against the sharp reference.

    ``psnr``, ``ssim`` and ``isnr`` compare pixel for pixel. The ``aligned_*`` figures
    first search the best shift (integer and 0.25 px, up to 5 px, 15 px border crop), as
    blind results are only defined up to a small shift; they are left out for images
    too small for that crop.
    """
    figures = {
        "psnr": psnr_per_image(estimate, sharp),
        "ssim": ssim_per_image(estimate, sharp),
        "isnr": isnr_per_image(estimate, observation, sharp),
        "input_psnr": psnr_per_image(observation, sharp),
        "input_ssim": ssim_per_image(observation, sharp),
    }
    if fits_levin_comparison(sharp):
        figures["aligned_psnr"] = aligned_psnr(estimate, sharp)
        figures["aligned_ssim"] = aligned_ssim(estimate, sharp)
        figures["input_aligned_psnr"] = aligned_psnr(observation, sharp)
        figures["aligned_isnr"] = aligned_isnr(estimate, observation, sharp)
    return {name: round(float(value[0]), 4) for name, value in figures.items()}


def colour_figures(estimate, observation, sharp) -> dict:
    """PSNR of each RGB channel, of the estimate and of the observation (lists R, G, B)."""
    def per_channel(images):
        return [round(float(psnr_per_image(images[:, c : c + 1], sharp[:, c : c + 1])[0]), 4) for c in range(3)]

    return {"psnr_rgb": per_channel(estimate), "input_psnr_rgb": per_channel(observation)}


def summary_line(folder: Path, metrics: dict) -> str:
    """One line that says where the result is and, when known, how much PSNR it gained."""
    line = f"Result in {folder} ({metrics['iterations']} iterations, {metrics['wall_time_s']:.1f} s)"
    if metrics.get("status") == "failed":
        line = f"Job failed: {metrics['error']}. Files in {folder}"
    elif metrics.get("status") == "stopped":
        line = f"Job {metrics['error']}. Files so far in {folder}"
    if "psnr" in metrics:
        line += (
            f": PSNR {metrics['input_psnr']:.2f} dB -> {metrics['psnr']:.2f} dB "
            f"({metrics['isnr']:+.2f} dB), SSIM {metrics['input_ssim']:.3f} -> {metrics['ssim']:.3f}"
        )
    if "aligned_psnr" in metrics:
        line += f"; shift-aligned PSNR {metrics['input_aligned_psnr']:.2f} -> {metrics['aligned_psnr']:.2f} dB"
    if "kernel_size_choice" in metrics:
        choice = metrics["kernel_size_choice"]
        size, bound = (size_text(choice[key]) for key in ("kernel_size", "max_kernel_size"))
        line += f"; kernel size {size}, chosen by a probe at {choice['probe_image_size'][0]} px (at most {bound})"
    if "chosen_start" in metrics:
        borders = ", ".join(f"{start['kernel_border']:.2f}" for start in metrics["starts"])
        line += (
            f"; continued from start {metrics['chosen_start'] + 1} of {len(metrics['starts'])} "
            f"(lowest kernel border/peak at the coarsest scale: {borders})"
        )
    if metrics.get("restarts"):
        verdicts = ", ".join(attempt["verdict"] for attempt in metrics["attempts"])
        line += f"; restarted {metrics['restarts']}× on the no-blur verdict (passes: {verdicts})"
    if "verdict" in metrics:
        line += "; " + Verdict(metrics["verdict"], **metrics["verdict_signals"]).sentence()
    return line
