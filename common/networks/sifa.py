"""SIFA's segmentation side (Chen et al., "Unsupervised Bidirectional Cross-Modality Adaptation via
Deeply Synergistic Image and Feature Alignment", IEEE TMI 2020), as its public code
(cchen-cc/SIFA, TensorFlow) builds it; the backbone SynthMix adds its Inspector to.

- :class:`SIFAEncoder`: the shared encoder ``E`` of target images and of source images
  translated to the target: a 7x7 convolution, residual blocks with batch norm whose
  channel-growing blocks pad their shortcut with zero channels, three 2x2 max poolings (1/8 of
  the image), two dilated residual blocks (dilation 2) and two 3x3 convolutions; optional
  dropout after every convolution (the code's ``keep_rate``: 1.0, no dropout, in its released
  ``config_param.json``; 0.75 in earlier versions). It returns the features the main segmenter
  reads and the low-level features of the last plain residual block (the second segmenter's
  input, "deep supervision").
- :class:`SIFASegmenter`: a 1x1 convolution to class logits, upsampled (bilinear) to the image.
- :class:`SIFASegmentationNetwork`: the encoder and the main segmenter as one image-to-logits
  network (the release network; no adaptation and the supervised upper bound train it alone).
- :class:`SIFADecoder`: features back to a source-domain image (``T -> S``): a 3x3 convolution,
  four residual blocks and three transposed convolutions with instance norm, a 7x7 convolution,
  tanh of the sum with the input image (the code's ``skip``).

The source-to-target generator is :class:`~common.networks.ResnetGenerator` with
``residual=True`` (ngf 32), the discriminators are MONAI ``PatchDiscriminator`` s (the source
one with two output channels: real/fake and the auxiliary "cycle-reconstructed source or
translated target" score).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.networks.generators import norm_layer

__all__ = ["SIFAEncoder", "SIFASegmenter", "SIFASegmentationNetwork", "SIFADecoder", "SIFAResidualBlock"]


def _conv(in_channels: int, out_channels: int, kernel: int, dilation: int = 1, dropout: float = 0.0) -> list[nn.Module]:
    """A zero-padded "same" convolution without bias (SIFA's ``general_conv2d``), then its dropout."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False)
    ]
    return layers + ([nn.Dropout(dropout)] if dropout > 0 else [])  # element-wise, as tf.nn.dropout


class SIFAResidualBlock(nn.Module):
    """``ReLU(N(conv(ReLU(N(conv(x))))) + shortcut(x))`` with 3x3 convolutions (dilated or not) and
    dropout after each; a block that grows the channels pads its shortcut with zero channels,
    half on each side (SIFA's ``build_resnet_block(_ds)`` and ``build_drn_block``).

    Args:
        in_channels: input channels.
        out_channels: output channels (``>= in_channels``, an even difference).
        dilation: of both convolutions (2 in the dilated blocks).
        norm: ``batch`` (the encoder) or ``instance`` (the decoder).
        dropout: drop probability after each convolution (the encoder's).

    Raises:
        ValueError: fewer output than input channels, or an odd difference.
    """

    def __init__(
        self, in_channels: int, out_channels: int, dilation: int = 1, norm: str = "batch", dropout: float = 0.0
    ) -> None:
        super().__init__()
        if out_channels < in_channels or (out_channels - in_channels) % 2:
            raise ValueError(
                f"SIFAResidualBlock pads its shortcut with zero channels on both sides: out_channels ({out_channels}) "
                f"must be at least in_channels ({in_channels}) and differ from it by an even number."
            )
        self.pad = (out_channels - in_channels) // 2
        self.block = nn.Sequential(
            *_conv(in_channels, out_channels, 3, dilation, dropout),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            *_conv(out_channels, out_channels, 3, dilation, dropout),
            norm_layer(norm, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the block.

        Args:
            x: features ``(B, in_channels, H, W)``.

        Returns:
            ``(B, out_channels, H, W)``.
        """
        shortcut = F.pad(x, (0, 0, 0, 0, self.pad, self.pad)) if self.pad else x
        return torch.relu(self.block(x) + shortcut)


class SIFAEncoder(nn.Module):
    """SIFA's shared encoder (``build_encoder``) with ``channels`` = ``fb`` (16 in SIFA).

    Layout (``c`` = ``channels``): 7x7 conv to ``c``; R(c); pool; R(c -> 2c); pool; R(2c -> 4c),
    R(4c); pool; R(4c -> 8c), R(8c); R(8c -> 16c), R(16c), R(16c), R(16c); R(16c -> 32c), R(32c)
    (the low-level output); two dilated R(32c); two 3x3 convolutions (the output). Every
    convolution is followed by dropout, batch norm and (but the last of a block) ReLU.

    Args:
        in_channels: image channels.
        channels: first-layer filters (``fb``).
        dropout: drop probability after each convolution (1 - the code's keep rate; 0 as its
            released config, 0.25 as earlier versions).

    Raises:
        ValueError: non-positive sizes or a dropout outside [0, 1).

    Shapes:
        ``(B, in_channels, H, W) -> ((B, 32c, H/8, W/8), (B, 32c, H/8, W/8))`` for ``H`` and
        ``W`` divisible by 8: the features and the low-level features.
    """

    def __init__(self, in_channels: int, channels: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        if min(in_channels, channels) < 1 or channels % 2 or not 0 <= dropout < 1:
            raise ValueError(
                f"SIFAEncoder needs positive channel counts, an even `channels` (its first block doubles them "
                f"with zero channels on both sides) and a dropout in [0, 1); got in_channels={in_channels}, "
                f"channels={channels}, dropout={dropout}."
            )
        c = channels

        def res(i: int, o: int, dilation: int = 1) -> nn.Module:
            return SIFAResidualBlock(i, o, dilation, "batch", dropout)

        self.low_level = nn.Sequential(
            *_conv(in_channels, c, 7, dropout=dropout),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            res(c, c),
            nn.MaxPool2d(2),
            res(c, 2 * c),
            nn.MaxPool2d(2),
            res(2 * c, 4 * c),
            res(4 * c, 4 * c),
            nn.MaxPool2d(2),
            res(4 * c, 8 * c),
            res(8 * c, 8 * c),
            res(8 * c, 16 * c),
            res(16 * c, 16 * c),
            res(16 * c, 16 * c),
            res(16 * c, 16 * c),
            res(16 * c, 32 * c),
            res(32 * c, 32 * c),
        )
        self.high_level = nn.Sequential(
            res(32 * c, 32 * c, dilation=2),
            res(32 * c, 32 * c, dilation=2),
            *_conv(32 * c, 32 * c, 3, dropout=dropout),
            nn.BatchNorm2d(32 * c),
            nn.ReLU(inplace=True),
            *_conv(32 * c, 32 * c, 3, dropout=dropout),
            nn.BatchNorm2d(32 * c),
            nn.ReLU(inplace=True),
        )
        self.out_channels = 32 * c
        for module in self.modules():  # SIFA: truncated normal, std 0.01
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes a batch.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            The features and the low-level features, both ``(B, 32c, H/8, W/8)``.

        Raises:
            ValueError: not a 4D batch, or a spatial size not divisible by 8.
        """
        if x.ndim != 4 or x.shape[2] % 8 or x.shape[3] % 8:
            raise ValueError(f"SIFAEncoder expects (B, C, H, W) with H and W divisible by 8, got {x.shape}.")
        low = self.low_level(x)
        return self.high_level(low), low


class SIFASegmenter(nn.Module):
    """A 1x1 convolution to class logits, then dropout, upsampled bilinearly to the image size
    (SIFA's ``build_segmenter``; used on the features and, as the second segmenter, on the
    low-level features).

    Args:
        in_channels: feature channels.
        num_classes: classes, background included.
        dropout: drop probability after the convolution (as the encoder's).
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.head = nn.Sequential(*_conv(in_channels, num_classes, 1, dropout=dropout))
        nn.init.trunc_normal_(self.head[0].weight, std=0.01, a=-0.02, b=0.02)

    def forward(self, features: torch.Tensor, size: list[int]) -> torch.Tensor:
        """Class logits at ``size``.

        Args:
            features: ``(B, in_channels, h, w)``.
            size: the image's ``(H, W)`` (a list, or the tuple ``image.shape[2:]``).

        Returns:
            ``(B, num_classes, H, W)`` logits.
        """
        return F.interpolate(self.head(features), size=list(size), mode="bilinear", align_corners=False)


class SIFASegmentationNetwork(nn.Module):
    """``S(E(x))``: the shared encoder's features through the main segmenter, at the image's size
    (what SIFA evaluates on target images).

    Args:
        encoder: a :class:`SIFAEncoder`.
        segmenter: a :class:`SIFASegmenter` on its features.

    Shapes:
        ``(B, C, H, W) -> (B, num_classes, H, W)`` logits, ``H`` and ``W`` divisible by 8.
    """

    def __init__(self, encoder: SIFAEncoder, segmenter: SIFASegmenter) -> None:
        super().__init__()
        self.encoder, self.segmenter = encoder, segmenter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segments a batch.

        Args:
            x: images ``(B, C, H, W)``.

        Returns:
            Class logits ``(B, num_classes, H, W)``.
        """
        return self.segmenter(self.encoder(x)[0], x.shape[2:])


class SIFADecoder(nn.Module):
    """SIFA's decoder (``build_decoder``): encoder features back to a source-domain image.

    Layout (``g`` = ``ngf``): 3x3 conv to ``4g``; four residual blocks; transposed 3x3 stride-2
    convolutions to ``2g, 2g, g`` (one per upsampling beyond the last, which goes to ``g``);
    every layer with instance norm and ReLU; a 7x7 convolution to ``out_channels``; tanh of its
    sum with the input image (``residual``, the code's ``skip``) or of itself.

    Args:
        in_channels: feature channels (the encoder's ``out_channels``).
        out_channels: image channels.
        ngf: filters (32 in SIFA).
        n_upsampling: stride-2 transposed convolutions (3: the encoder's three poolings).
        residual: add the input image before the tanh.

    Raises:
        ValueError: non-positive sizes.
    """

    def __init__(
        self, in_channels: int, out_channels: int = 1, ngf: int = 32, n_upsampling: int = 3, residual: bool = True
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, ngf, n_upsampling) < 1:
            raise ValueError(
                f"SIFADecoder needs positive sizes; got in_channels={in_channels}, out_channels={out_channels}, "
                f"ngf={ngf}, n_upsampling={n_upsampling}."
            )
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 4 * ngf, 3, padding=1),
            nn.InstanceNorm2d(4 * ngf),
            nn.ReLU(inplace=True),
            *(SIFAResidualBlock(4 * ngf, 4 * ngf, norm="instance") for _ in range(4)),
        ]
        channels = 4 * ngf
        for index in range(n_upsampling):
            out = ngf if index == n_upsampling - 1 else 2 * ngf
            layers += [
                nn.ConvTranspose2d(channels, out, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, out_channels, 7, padding=3))
        self.model = nn.Sequential(*layers)
        self.residual, self.multiple = residual, 2**n_upsampling
        for module in self.modules():  # SIFA: truncated normal, std 0.02
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)

    def forward(self, features: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """Decodes features to an image in [-1, 1].

        Args:
            features: ``(B, in_channels, h, w)``.
            image: the encoded image ``(B, out_channels, h * 2**n_upsampling, ...)``, added
                before the tanh when ``residual``.

        Returns:
            ``(B, out_channels, H, W)``.

        Raises:
            ValueError: ``residual`` without an image of the output's shape.
        """
        out = self.model(features)
        if not self.residual:
            return torch.tanh(out)
        if image is None or image.shape != out.shape:
            raise ValueError(
                f"SIFADecoder(residual=True) adds the encoded image to its output {tuple(out.shape)}; got "
                f"{None if image is None else tuple(image.shape)}."
            )
        return torch.tanh(out + image)
