"""GPU check (run by hand where a CUDA device exists): the aligned metrics run on the
inputs' device and agree with the CPU result."""

import torch

from lightning_deblur.core.alignment import aligned_psnr, kernel_error

if __name__ == "__main__":
    assert torch.cuda.is_available(), "this check needs a CUDA device"
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(2, 1, 40, 40, generator=generator)
    estimate = torch.roll(reference, (1, -2), (-2, -1))
    cpu = aligned_psnr(estimate, reference, border=6, max_shift=4)
    gpu = aligned_psnr(estimate.cuda(), reference.cuda(), border=6, max_shift=4)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)
    assert kernel_error(torch.ones(3, 3).cuda() / 9, torch.ones(5, 5).cuda() / 25).device.type == "cuda"
    print("aligned metrics on", torch.cuda.get_device_name(), "agree with the CPU:", cpu.tolist())
