"""Blind image deblurring with deep image priors, as PyTorch Lightning jobs.

``deblur(image, kernel_size, config="improved")`` runs one job from Python
(:mod:`lightning_deblur.api`); ``python -m lightning_deblur`` is the command line.
"""

from lightning_deblur.api import DeblurResult, deblur

__all__ = ["DeblurResult", "deblur"]
__version__ = "0.1.0"
