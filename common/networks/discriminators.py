"""A patch discriminator that scores a whole image: MONAI's ``PatchDiscriminator`` whose patch
logits are averaged into one score per image, the discriminator of RegGAN's public code; and the
depth that keeps a PatchGAN's receptive field the same fraction of a smaller image."""

from __future__ import annotations

import torch
from monai.networks.nets import PatchDiscriminator

__all__ = ["PooledPatchDiscriminator", "patch_receptive_field", "patch_layers"]

#: The PatchGAN of pix2pix/CycleGAN: 3 layers, a 70 x 70 receptive field on 256 x 256 images.
PAPER_LAYERS, PAPER_IMAGE_SIZE = 3, 256


def patch_receptive_field(num_layers_d: int) -> int:
    """The receptive field, in pixels, of one logit of MONAI's ``PatchDiscriminator``.

    The network is a 4 x 4 stride-2 convolution, ``num_layers_d`` 4 x 4 convolutions (stride 2,
    the last stride 1) and a 4 x 4 stride-1 output convolution: 10, 16, 34, 70, 142 pixels for
    0-4 layers (70 for the paper's 3).

    Args:
        num_layers_d: ``PatchDiscriminator``'s ``num_layers_d`` (>= 0).

    Returns:
        The side of the square of input pixels one output logit sees.
    """
    if num_layers_d < 0:
        raise ValueError(f"`num_layers_d` must be >= 0, got {num_layers_d}.")
    strides = [2, *([2] * (num_layers_d - 1)), *([1] if num_layers_d else []), 1]
    field, jump = 1, 1
    for stride in strides:
        field, jump = field + 3 * jump, jump * stride
    return field


def patch_layers(image_size: int, layers: int = PAPER_LAYERS, paper_size: int = PAPER_IMAGE_SIZE) -> int:
    """The ``num_layers_d`` whose receptive field is closest to the paper's fraction of the image.

    The paper's 70 x 70 PatchGAN sees 70/256 = 27 % of the side of its images; the same network
    on a 64 x 64 image sees all of it, so it judges the whole image and cannot police local
    statistics. This returns the depth whose receptive field fraction
    ``patch_receptive_field(n) / image_size`` is closest to ``patch_receptive_field(layers) / paper_size``
    (ties go to the deeper network): 3 at 256 px, 2 at 128 px, 1 at 64 px, 0 at 32 px.

    Args:
        image_size: the side of the training images, in pixels.
        layers: the paper's ``num_layers_d`` (default 3).
        paper_size: the paper's image side (default 256).

    Returns:
        The number of layers, between 0 and ``layers``.
    """
    if image_size < 1:
        raise ValueError(f"`image_size` must be a positive number of pixels, got {image_size}.")
    fraction = patch_receptive_field(layers) / paper_size
    return min(range(layers, -1, -1), key=lambda n: abs(patch_receptive_field(n) / image_size - fraction))


class PooledPatchDiscriminator(PatchDiscriminator):
    """MONAI's ``PatchDiscriminator`` followed by global average pooling of its logits.

    RegGAN's discriminator is the 70x70 PatchGAN whose output map is averaged into a single
    score per image before the least-squares loss (``F.avg_pool2d`` over the whole map in the
    public code), so the adversarial loss is ``(mean(D(x)) - 1)^2`` rather than CycleGAN's
    ``mean((D(x) - 1)^2)``.

    Args:
        args: ``PatchDiscriminator``'s arguments (``spatial_dims``, ``num_layers_d``,
            ``channels``, ``in_channels``, ``norm``, ...).
        kwargs: likewise.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Scores a batch.

        Args:
            x: images ``(B, in_channels, H, W[, D])``.

        Returns:
            One logit per image and output channel, ``(B, out_channels)``.
        """
        logits = super().forward(x)[-1]
        return logits.mean(dim=tuple(range(2, logits.ndim)))
