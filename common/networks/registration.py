"""The registration network R of RegGAN: a dense displacement field, in pixels, that aligns a
translated image to its (misaligned) target.

RegGAN's public code uses its own residual U-Net (seven levels at 256x256, leaky ReLU, no
normalisation, zero-initialised output). MONAI has an encoder-decoder built for exactly this
job, DeepReg's ``LocalNet`` (multi-level displacement extraction), so R is that network with a
zero-initialised output layer: at the start of training R predicts the identity transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import LocalNet

__all__ = ["RegistrationNetwork"]


class RegistrationNetwork(LocalNet):
    """``R(moving, fixed)``: the displacement that warps ``moving`` onto ``fixed``.

    The two images are concatenated along the channels (``concat(G(x), y)`` in RegGAN) and
    mapped to a displacement field with one channel per spatial axis, in pixels, in the
    convention of MONAI's ``Warp``: channel ``i`` moves along array axis ``i + 2`` (for 2D,
    channel 0 along the rows ``H``, channel 1 along the columns ``W``), and the warped image at
    ``p`` samples the moving image at ``p + ddf(p)``.

    Args:
        in_channels: channels of each of the two images.
        spatial_dims: 2 (slices) or 3.
        channels: filters of the first level (doubling at each level).
        levels: down-sampling levels; images must be divisible by ``2 ** levels``. The
            displacement is extracted (and averaged) from every level, coarse to fine.
        init_zeros: initialise the output layer to zero (RegGAN's ``init_to_identity``).

    Raises:
        ValueError: non-positive sizes.

    Shapes:
        ``(B, C, *S), (B, C, *S) -> (B, spatial_dims, *S)``.
    """

    def __init__(
        self, in_channels: int = 1, spatial_dims: int = 2, channels: int = 32, levels: int = 3, init_zeros: bool = True
    ) -> None:
        if min(in_channels, channels, levels) < 1 or spatial_dims not in (2, 3):
            raise ValueError(
                f"RegistrationNetwork needs positive in_channels, channels and levels and spatial_dims 2 or 3, got "
                f"in_channels={in_channels}, channels={channels}, levels={levels}, spatial_dims={spatial_dims}."
            )
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=2 * in_channels,
            num_channel_initial=channels,
            extract_levels=tuple(range(levels + 1)),
            out_kernel_initializer="zeros" if init_zeros else "kaiming_uniform",
            out_channels=spatial_dims,
        )
        self.multiple = 2**levels

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Predicts the displacement from ``moving`` to ``fixed``.

        Args:
            moving: the image to warp (RegGAN: the translation ``G(x)``), ``(B, C, *S)``.
            fixed: the image to align it to (RegGAN: the target ``y``), same shape.

        Returns:
            The displacement field in pixels, ``(B, spatial_dims, *S)``.

        Raises:
            ValueError: shapes differ, or a spatial size not divisible by ``2 ** levels``.
        """
        if moving.shape != fixed.shape:
            raise ValueError(
                f"`moving` and `fixed` must have the same shape, got {list(moving.shape)} and {list(fixed.shape)}."
            )
        sizes: Sequence[int] = moving.shape[2:]
        if any(s % self.multiple for s in sizes):
            raise ValueError(
                f"RegistrationNetwork with {self.multiple.bit_length() - 1} levels needs spatial sizes divisible by "
                f"{self.multiple}, got {list(sizes)}; change `levels` or the image size."
            )
        return super().forward(torch.cat([moving, fixed], dim=1))
