"""Plain ``nn.Module`` generators: the image net G_x and the kernel net G_k (their
settings, as the command line sets them, are in :mod:`lightning_deblur.core.generators`)."""

from lightning_deblur.core.nets.kernel_fcn import KernelNet
from lightning_deblur.core.nets.non_local import NonLocalBlock
from lightning_deblur.core.nets.skip import SkipNet

__all__ = ["KernelNet", "NonLocalBlock", "SkipNet"]
