"""SIFA's encoder, segmenters and decoder (cchen-cc/SIFA's layout) and the residual ResNet generator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.losses import SIFATaskLoss
from common.networks import (
    ResnetGenerator,
    SIFADecoder,
    SIFAEncoder,
    SIFAResidualBlock,
    SIFASegmentationNetwork,
    SIFASegmenter,
)


@pytest.mark.parametrize("size", [32, 64])
def test_encoder_shapes_and_layout(size):
    encoder = SIFAEncoder(1, channels=2)
    features, low = encoder(torch.rand(2, 1, size, size))
    assert features.shape == low.shape == (2, 64, size // 8, size // 8)  # 32 x fb channels at 1/8
    assert encoder.out_channels == 64
    blocks = [m for m in encoder.modules() if isinstance(m, SIFAResidualBlock)]
    assert len(blocks) == 14  # r1-r12 and the two dilated blocks
    dilations = [b.block[0].dilation[0] for b in blocks]
    assert dilations == [1] * 12 + [2, 2]
    assert sum(isinstance(m, nn.MaxPool2d) for m in encoder.modules()) == 3
    assert all(isinstance(m, nn.BatchNorm2d) for b in blocks for m in b.block if "Norm" in type(m).__name__)
    # The low-level output is the input of the dilated blocks: the second segmenter's features.
    encoder.eval()
    with torch.no_grad():
        x = torch.rand(1, 1, size, size)
        assert torch.equal(encoder(x)[1], encoder.low_level(x))


def test_encoder_dropout_is_active_in_training_only():
    encoder = SIFAEncoder(1, channels=2, dropout=0.25)  # keep rate 0.75, as earlier versions of the code
    x = torch.rand(2, 1, 32, 32)
    encoder.train()
    assert not torch.equal(encoder(x)[0], encoder(x)[0])
    encoder.eval()
    assert torch.equal(encoder(x)[0], encoder(x)[0])
    plain = SIFAEncoder(1, channels=2).train()  # the released config: keep rate 1.0, no dropout
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_growing_block_pads_its_shortcut_with_zero_channels():
    block = SIFAResidualBlock(2, 6).eval()
    for module in block.block:
        if isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.weight)
    x = torch.rand(1, 2, 8, 8)  # positive: the ReLU keeps it
    with torch.no_grad():
        out = block(x)
    assert torch.allclose(out[:, 2:4], x) and not out[:, :2].any() and not out[:, 4:].any()
    with pytest.raises(ValueError, match="differ from it by an even number"):
        SIFAResidualBlock(2, 5)
    with pytest.raises(ValueError, match="must be at least in_channels"):
        SIFAResidualBlock(4, 2)


def test_segmenter_upsamples_to_the_image():
    segmenter = SIFASegmenter(64, 5).eval()
    logits = segmenter(torch.rand(2, 64, 4, 4), (32, 32))
    assert logits.shape == (2, 5, 32, 32)


def test_segmentation_network_is_the_encoder_then_the_main_segmenter_and_scripts():
    torch.manual_seed(0)
    encoder, segmenter = SIFAEncoder(1, 2).eval(), SIFASegmenter(64, 3).eval()
    network = SIFASegmentationNetwork(encoder, segmenter).eval()
    x = torch.randn(2, 1, 24, 40)
    expected = segmenter(encoder(x)[0], x.shape[2:])
    assert expected.shape == (2, 3, 24, 40)
    torch.testing.assert_close(network(x), expected)
    torch.testing.assert_close(torch.jit.script(network)(x), expected)  # exportable (MONAI's ckpt_export)


def test_task_loss_total_is_the_sum_of_its_terms():
    logits, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
    ce, dice = SIFATaskLoss()(logits, labels)
    assert ce > 0 and dice > 0
    torch.testing.assert_close(SIFATaskLoss(total=True)(logits, labels), ce + dice)


def test_decoder_adds_the_image_before_the_tanh():
    decoder = SIFADecoder(64, 1, ngf=4)
    features, image = torch.rand(2, 64, 4, 4), torch.rand(2, 1, 32, 32) * 2 - 1
    assert decoder(features, image).shape == (2, 1, 32, 32)
    last = decoder.model[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    assert torch.allclose(decoder(features, image), torch.tanh(image))
    with pytest.raises(ValueError, match="adds the encoded image"):
        decoder(features)
    plain = SIFADecoder(64, 1, ngf=4, residual=False)
    nn.init.zeros_(plain.model[-1].weight)
    nn.init.zeros_(plain.model[-1].bias)
    assert not plain(features).any()


def test_residual_generator():
    generator = ResnetGenerator(1, 1, ngf=4, n_blocks=1, residual=True)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    nn.init.zeros_(generator.model[-1].weight)
    assert torch.allclose(generator(x), torch.tanh(x))
    # The same parameters as the plain generator: its weights load either way.
    plain = ResnetGenerator(1, 1, ngf=4, n_blocks=1)
    plain.load_state_dict(generator.state_dict())
    assert not torch.allclose(plain(x), generator(x))
    with pytest.raises(ValueError, match=r"in_channels \(1\) must equal out_channels \(3\)"):
        ResnetGenerator(1, 3, residual=True)


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="divisible by 8"):
        SIFAEncoder(1, channels=2)(torch.rand(1, 1, 20, 20))
    with pytest.raises(ValueError, match="dropout in"):
        SIFAEncoder(1, dropout=1.0)
    with pytest.raises(ValueError, match="an even `channels`"):
        SIFAEncoder(1, channels=3)
    with pytest.raises(ValueError, match="positive sizes"):
        SIFADecoder(0)
