"""Networks against their documented shapes and the CycleGAN architecture."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import PatchDiscriminator
from torch import nn

from common.networks import ResnetGenerator, patch_layers, patch_receptive_field


@pytest.mark.parametrize("channels,size", [((1, 1), 32), ((3, 1), 64), ((1, 3), 48)])
def test_generator_shapes_and_range(channels, size):
    net = ResnetGenerator(*channels, ngf=8, n_blocks=2)
    out = net(torch.randn(2, channels[0], size, size) * 3)
    assert out.shape == (2, channels[1], size, size)
    assert out.min() >= -1 and out.max() <= 1


def test_generator_architecture_is_cyclegans():
    net = ResnetGenerator(3, 3)  # ngf 64, 9 blocks
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m.kernel_size[0] for m in convs[:3]] == [7, 3, 3] and convs[-1].kernel_size == (7, 7)
    assert [m.out_channels for m in convs[:3]] == [64, 128, 256]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in convs) == 2
    assert len(convs) == 3 + 2 * 9 + 2 + 1
    assert convs[0].padding_mode == "reflect"
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 3 + 2 * 9 + 2
    # The CycleGAN code reports 11.378 M parameters for its RGB resnet_9blocks generator.
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 3) == 11.378
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert float(weights.std()) == pytest.approx(0.02, rel=0.05)  # N(0, 0.02) initialisation


def test_generator_errors():
    with pytest.raises(ValueError, match="divisible by 4"):
        ResnetGenerator(1, 1, ngf=4, n_blocks=1)(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="positive channel counts"):
        ResnetGenerator(0, 1)


def test_patch_discriminator_is_a_70x70_patchgan():
    # The receptive field is a property of the convolutions; instance norm (which mixes every
    # position through its statistics) is left out to measure it.
    disc = PatchDiscriminator(spatial_dims=2, channels=64, in_channels=1, num_layers_d=3, norm=None)
    x = torch.zeros(1, 1, 256, 256, requires_grad=True)
    out = disc(x)[-1]
    assert out.shape == (1, 1, 30, 30)  # as the CycleGAN code's 70x70 PatchGAN on 256x256
    out[0, 0, 15, 15].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_patch_receptive_field_is_measured_on_the_network(layers):
    disc = PatchDiscriminator(spatial_dims=2, channels=4, in_channels=1, num_layers_d=layers, norm=None)
    x = torch.zeros(1, 1, 160, 160, requires_grad=True)
    out = disc(x)[-1]
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert int(rows.max() - rows.min() + 1) == int(cols.max() - cols.min() + 1) == patch_receptive_field(layers)


def test_patch_layers_keep_the_papers_receptive_field_fraction():
    assert [patch_receptive_field(n) for n in range(4)] == [10, 16, 34, 70]
    # 70/256 = 27 %: 3 layers at 256 px, 2 at 128 (34/128), 1 at 64 (16/64), 0 at 32 (10/32).
    assert [patch_layers(size) for size in (256, 128, 64, 32)] == [3, 2, 1, 0]
    assert patch_layers(512) == 3  # never deeper than the paper's network
    with pytest.raises(ValueError, match="`image_size` must be a positive"):
        patch_layers(0)
