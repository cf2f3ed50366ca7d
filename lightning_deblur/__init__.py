"""Blind image deblurring with deep image priors, as PyTorch Lightning jobs.

``deblur(image, kernel_size, config="improved")`` runs one job from Python
(:mod:`lightning_deblur.commands.api`); ``Trainer().fit(DeblurJob.from_config(...),
BlurredImage(...))`` runs it under a Trainer of one's own; ``python -m lightning_deblur``
is the command line. The package's layers are its folders: ``core/`` (no Lightning),
``job/`` (the LightningModule and its callbacks), ``commands/`` (what users run).
"""

from lightning_deblur.commands.api import DeblurResult, deblur
from lightning_deblur.core.version import __version__

__all__ = ["BlurredImage", "DeblurJob", "DeblurResult", "__version__", "deblur"]


def __getattr__(name: str):
    # The job and its datamodule load Lightning: only when asked for, so that the data
    # commands (synth, evaluate) start without it.
    if name == "DeblurJob":
        from lightning_deblur.job.deblur_job import DeblurJob

        return DeblurJob
    if name == "BlurredImage":
        from lightning_deblur.job.data import BlurredImage

        return BlurredImage
    raise AttributeError(f"module 'lightning_deblur' has no attribute {name!r}")
