"""MI2GAN's X-shape dual auto-encoders: a content encoder and a decoder per domain.

The paper gives the layer types (instance norm, leaky ReLU) and leaves the sizes to its arXiv
version, which is not available here; the reconstruction mirrors the CycleGAN generator's
sampling path (``c7s1-c, d2c, d4c`` down, ``u2c, uc, c7s1-out`` up), so that a content feature
``z`` has ``4 c`` channels at a quarter of the image size, the level where the generator's
residual blocks work. Built from MONAI ``Convolution`` blocks.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from common.networks.generators import init_normal

__all__ = ["ContentEncoder", "ContentDecoder"]

LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.2, "inplace": True})


def _check(in_channels: int, out_channels: int, channels: int, n_downsampling: int) -> None:
    if min(in_channels, out_channels, channels) < 1 or n_downsampling < 0:
        raise ValueError(
            f"Auto-encoder sizes must be positive (n_downsampling non-negative), got in/out channels "
            f"{in_channels}/{out_channels}, channels={channels}, n_downsampling={n_downsampling}."
        )


class ContentEncoder(nn.Module):
    """``Enc``: an image to its content feature map (``c7s1-c``, then ``n_downsampling`` stride-2
    3x3 convolutions doubling the channels; instance norm and leaky ReLU 0.2 after each).

    Args:
        in_channels: image channels.
        channels: filters of the first layer (the feature has ``channels * 2**n_downsampling``).
        n_downsampling: stride-2 convolutions.

    Raises:
        ValueError: non-positive sizes.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H / 2**n, W / 2**n)``.
    """

    def __init__(self, in_channels: int, channels: int = 64, n_downsampling: int = 2) -> None:
        super().__init__()
        _check(in_channels, 1, channels, n_downsampling)
        layers = [Convolution(2, in_channels, channels, kernel_size=7, act=LEAKY_RELU, norm="instance")]
        for level in range(n_downsampling):
            width = channels * 2**level
            layers.append(Convolution(2, width, 2 * width, strides=2, kernel_size=3, act=LEAKY_RELU, norm="instance"))
        self.model = nn.Sequential(*layers)
        self.out_channels = channels * 2**n_downsampling
        self.apply(init_normal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encodes a batch.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            The content features.
        """
        return self.model(x)


class ContentDecoder(nn.Module):
    """``Dec``: a content feature map to an image of its domain (``n_downsampling`` stride-2 3x3
    transposed convolutions halving the channels with instance norm and leaky ReLU 0.2, then
    ``c7s1-out`` and tanh).

    Args:
        out_channels: image channels.
        channels: filters of the last hidden layer (the input has ``channels * 2**n_downsampling``).
        n_downsampling: stride-2 transposed convolutions.

    Raises:
        ValueError: non-positive sizes.

    Shapes:
        ``(B, channels * 2**n, h, w) -> (B, out_channels, h * 2**n, w * 2**n)``, in [-1, 1].
    """

    def __init__(self, out_channels: int, channels: int = 64, n_downsampling: int = 2) -> None:
        super().__init__()
        _check(1, out_channels, channels, n_downsampling)
        layers = []
        for level in reversed(range(n_downsampling)):
            width = channels * 2**level
            layers.append(
                Convolution(
                    2,
                    2 * width,
                    width,
                    strides=2,
                    kernel_size=3,
                    act=LEAKY_RELU,
                    norm="instance",
                    is_transposed=True,
                    output_padding=1,
                )
            )
        layers += [Convolution(2, channels, out_channels, kernel_size=7, conv_only=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.in_channels = channels * 2**n_downsampling
        self.apply(init_normal)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decodes a batch of content features.

        Args:
            z: features ``(B, channels * 2**n_downsampling, h, w)``.

        Returns:
            Images in [-1, 1].
        """
        return self.model(z)
