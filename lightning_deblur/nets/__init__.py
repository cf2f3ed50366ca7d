"""Plain ``nn.Module`` generators, the image net G_x and the kernel net G_k, and their specs."""

from lightning_deblur.nets.kernel_fcn import KernelNet
from lightning_deblur.nets.non_local import NonLocalBlock
from lightning_deblur.nets.skip import SkipNet
from lightning_deblur.nets.specs import ImageNetSpec, KernelNetSpec

__all__ = ["ImageNetSpec", "KernelNet", "KernelNetSpec", "NonLocalBlock", "SkipNet"]
