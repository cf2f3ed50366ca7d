"""Blind image deblurring with deep image priors, as PyTorch Lightning jobs."""

__version__ = "0.1.0"
