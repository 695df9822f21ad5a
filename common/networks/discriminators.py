"""A patch discriminator that scores a whole image: MONAI's ``PatchDiscriminator`` whose patch
logits are averaged into one score per image, the discriminator of RegGAN's public code."""

from __future__ import annotations

import torch
from monai.networks.nets import PatchDiscriminator

__all__ = ["PooledPatchDiscriminator"]


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
