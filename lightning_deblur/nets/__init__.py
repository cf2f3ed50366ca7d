"""Plain ``nn.Module`` generators: the image net G_x and the kernel net G_k (their
settings, as the command line sets them, are in :mod:`lightning_deblur.generators`)."""

from lightning_deblur.nets.kernel_fcn import KernelNet
from lightning_deblur.nets.non_local import NonLocalBlock
from lightning_deblur.nets.skip import SkipNet

__all__ = ["KernelNet", "NonLocalBlock", "SkipNet"]
