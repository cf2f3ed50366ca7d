import pytest
import torch

from lightning_deblur.core.nets import KernelNet, NonLocalBlock, SkipNet


def count(module: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_image_net_matches_the_reference_architecture():
    net = SkipNet()
    assert sum(p.numel() for p in net.parameters()) == 2_365_521
    assert sum(p.numel() for p in SkipNet(output_channels=3).parameters()) == 2_365_779
    assert count(net, torch.nn.Conv2d) == 38
    assert count(net, torch.nn.BatchNorm2d) == 33
    assert count(net, NonLocalBlock) == 3


def test_kernel_net_matches_the_reference_parameter_counts():
    assert sum(p.numel() for p in KernelNet((27, 27)).parameters()) == 930_729
    assert sum(p.numel() for p in KernelNet((13, 13)).parameters()) == 370_169


@pytest.mark.parametrize("size", [(41, 35), (33, 33), (61, 61), (38, 47)])
def test_image_net_output_has_the_input_size_and_lies_in_unit_range(size):
    torch.manual_seed(0)
    net = SkipNet(down_channels=8, up_channels=8, skip_channels=4)
    out = net(torch.rand(1, 8, *size) * 0.1)
    assert out.shape == (1, 1, *size)
    assert out.min() >= 0 and out.max() <= 1


def test_non_local_block_starts_as_identity():
    block = NonLocalBlock(16)
    x = torch.randn(1, 16, 9, 7)
    torch.testing.assert_close(block(x), x)


def test_kernel_net_gives_a_non_negative_kernel_summing_to_one():
    torch.manual_seed(0)
    net = KernelNet((7, 5), input_size=20, hidden=30)
    with torch.no_grad():
        net.output.weight.mul_(50)  # a peaked kernel, not just the near-uniform start
    k = net(torch.rand(20))
    assert k.shape == (7, 5)
    assert k.dtype == torch.float32
    assert (k >= 0).all()
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_kernel_net_output_layer_can_be_replaced_for_a_new_size():
    net = KernelNet((7, 7), input_size=20, hidden=30)
    hidden_before = net.hidden.weight.clone()
    net.replace_output_layer((9, 11))
    assert net(torch.rand(20)).shape == (9, 11)
    torch.testing.assert_close(net.hidden.weight, hidden_before)
