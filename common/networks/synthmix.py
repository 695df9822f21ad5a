"""SynthMix's Mixup Inspector (Zhang et al., ISBI 2023, section 2.3): "Extending the PatchGAN to an
encoder-decoder architecture", it maps an image to a ``k x k`` map of domain logits (one per
patch of ``size / k`` pixels: target or source), with "an additional branch [that passes] these
feature maps through a 4x4 convolution and a global average pooling layer", supervised by the
target fraction of the mix.

The paper gives no layers; reconstructed (documented in the bundle): a PatchGAN encoder (4x4
stride-2 convolutions, ``channels`` doubling up to 8x, instance norm from the second layer,
leaky ReLU 0.2) down to a ``bottleneck x bottleneck`` map (4 x 4: the coarsest grid of the
paper's ablation, k = 4), then a decoder of 4x4 stride-2 transposed convolutions (instance norm,
ReLU) up to ``k x k`` (none for k = 4, one for k = 8, three for k = 32: "the decoder layers [...]
modified [...] to produce matching k x k output") and a 3x3 convolution to one logit per cell;
the auxiliary branch is a 4x4 convolution on the bottleneck features to one channel, averaged
over the map to one logit per image.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MixupInspector"]


def _log2(value: int, what: str) -> int:
    exponent = round(math.log2(value)) if value > 0 else -1
    if exponent < 0 or 2**exponent != value:
        raise ValueError(f"MixupInspector needs a power of two for {what}, got {value}.")
    return exponent


class MixupInspector(nn.Module):
    """The Mixup Inspector.

    Args:
        in_channels: image channels.
        image_size: the (square) image side, a power of two.
        k: cells per side of the domain map, a power of two between ``bottleneck`` and ``image_size``.
        channels: first-layer filters (PatchGAN's ndf, 64).
        bottleneck: side of the encoder's output map, a power of two.

    Raises:
        ValueError: sizes that are not powers of two or a ``k`` outside ``[bottleneck, image_size]``.

    Shapes:
        ``(B, in_channels, image_size, image_size) -> ((B, 1, k, k), (B, 1))``: the cells' target
        logits and the image's target-fraction logit.
    """

    def __init__(self, in_channels: int, image_size: int, k: int = 8, channels: int = 64, bottleneck: int = 4) -> None:
        super().__init__()
        size, cells, low = _log2(image_size, "image_size"), _log2(k, "k"), _log2(bottleneck, "bottleneck")
        if not low <= cells <= size or min(in_channels, channels) < 1:
            raise ValueError(
                f"MixupInspector needs bottleneck <= k <= image_size and positive channels; got bottleneck="
                f"{bottleneck}, k={k}, image_size={image_size}, in_channels={in_channels}, channels={channels}."
            )
        encoder: list[nn.Module] = []
        previous = in_channels
        for index in range(size - low):
            out = channels * min(2**index, 8)
            encoder += [nn.Conv2d(previous, out, 4, stride=2, padding=1)]
            encoder += [nn.InstanceNorm2d(out, affine=True)] if index else []
            encoder += [nn.LeakyReLU(0.2, inplace=True)]
            previous = out
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = []
        features = previous
        for _ in range(cells - low):
            out = max(previous // 2, channels)
            decoder += [
                nn.ConvTranspose2d(previous, out, 4, stride=2, padding=1),
                nn.InstanceNorm2d(out, affine=True),
                nn.ReLU(inplace=True),
            ]
            previous = out
        decoder.append(nn.Conv2d(previous, 1, 3, padding=1))
        self.decoder = nn.Sequential(*decoder)
        self.auxiliary = nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(features, 1, 4))  # 4x4, size kept
        self.image_size, self.k = image_size, k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inspects a batch.

        Args:
            x: images ``(B, in_channels, image_size, image_size)``.

        Returns:
            The ``(B, 1, k, k)`` map of target logits and the ``(B, 1)`` target-fraction logits.

        Raises:
            ValueError: another image size.
        """
        if x.ndim != 4 or tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"MixupInspector was built for {self.image_size} x {self.image_size} images, got {tuple(x.shape)}."
            )
        features = self.encoder(x)
        return self.decoder(features), self.auxiliary(features).mean((2, 3))
