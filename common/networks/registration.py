"""The registration network R of RegGAN: a dense displacement field, in pixels, that aligns a
translated image to its (misaligned) target.

Two choices: :class:`ResUNetRegistration`, the residual U-Net of RegGAN's public code (max-pool
levels down to a 2 x 2 bottleneck, 32 then 64 filters, a residual block after every down
convolution, three bottleneck residual blocks, a refinement block, leaky ReLU and no batch
norm, output initialised N(0, 1e-5)), the default; and :class:`RegistrationNetwork`, MONAI's
``LocalNet`` (DeepReg's multi-level displacement extraction) with a zero-initialised output.
:func:`registration_network` builds either by name. At the start of training both predict
(almost) the identity transform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.nets import LocalNet
from torch import nn
from torch.nn import functional

from common.networks.generators import ResidualBlock

__all__ = ["RegistrationNetwork", "ResUNetRegistration", "registration_network"]


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


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Convolution + leaky ReLU 0.2, Kaiming-normal weights (fan in), zero bias; no normalisation."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.LeakyReLU(0.2))


class ResUNetRegistration(nn.Module):
    """``R(moving, fixed)``: RegGAN's public registration network, a residual U-Net (2D).

    Down path, per level: 3x3 convolution + leaky ReLU, a residual block (the skip), 2 x 2 max
    pooling; ``levels`` levels with ``channels`` filters at the first and ``deep_channels`` after.
    Bottleneck: 1x1 convolution to twice the filters, ``bottleneck_blocks`` residual blocks, 1x1
    back. Up path, per level: bilinear up-sampling to the skip's size, concatenation, 3x3
    convolution + leaky ReLU (``deep_channels``, the last ``channels``). Then a refinement
    residual block and 1x1 convolution, and a 3x3 output convolution to the displacement,
    initialised N(0, 1e-5) so that R starts near the identity. Residual blocks are CycleGAN's
    (instance norm inside, as in the public code); no batch norm anywhere.

    The displacement is in pixels in the convention of :class:`RegistrationNetwork` (MONAI's
    ``Warp``): channel 0 moves along the rows, channel 1 along the columns.

    Args:
        in_channels: channels of each of the two images.
        image_size: the image size the network is built for: ``levels`` defaults to
            ``log2(image_size) - 1`` (a 2 x 2 bottleneck: 7 levels at 256, 5 at 64).
        channels: filters of the first level (32 in the public code).
        deep_channels: filters of the other levels (64).
        bottleneck_blocks: residual blocks at the bottleneck (3).
        levels: down-sampling levels (overrides ``image_size``).

    Raises:
        ValueError: non-positive sizes, or fewer than one level.

    Shapes:
        ``(B, C, H, W), (B, C, H, W) -> (B, 2, H, W)``; ``H`` and ``W`` divisible by ``2 ** levels``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 256,
        channels: int = 32,
        deep_channels: int = 64,
        bottleneck_blocks: int = 3,
        levels: int | None = None,
    ) -> None:
        super().__init__()
        levels = int(math.log2(image_size)) - 1 if levels is None else levels
        if min(in_channels, channels, deep_channels, levels) < 1 or bottleneck_blocks < 0:
            raise ValueError(
                "ResUNetRegistration needs positive in_channels, channels, deep_channels and levels (image_size >= 4), "
                f"got in_channels={in_channels}, channels={channels}, deep_channels={deep_channels}, levels={levels}, "
                f"image_size={image_size}, bottleneck_blocks={bottleneck_blocks}."
            )
        self.levels, self.multiple = levels, 2**levels
        widths = [channels] + [deep_channels] * (levels - 1)
        self.down = nn.ModuleList()
        previous = 2 * in_channels
        for width in widths:
            self.down.append(nn.Sequential(_conv(previous, width, 3), ResidualBlock(width)))
            previous = width
        self.bottleneck = nn.Sequential(
            _conv(previous, 2 * previous, 1),
            *[ResidualBlock(2 * previous) for _ in range(bottleneck_blocks)],
            _conv(2 * previous, previous, 1),
        )
        self.up = nn.ModuleList()
        for k, skip in enumerate(reversed(widths)):
            width = channels if k == levels - 1 else deep_channels
            self.up.append(_conv(previous + skip, width, 3))
            previous = width
        self.refine = nn.Sequential(ResidualBlock(previous), _conv(previous, previous, 1))
        self.output = nn.Conv2d(previous, 2, 3, padding=1)
        nn.init.normal_(self.output.weight, 0.0, 1e-5)
        nn.init.zeros_(self.output.bias)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Predicts the displacement from ``moving`` to ``fixed``, in pixels.

        Args:
            moving: the image to warp (RegGAN: the translation ``G(x)``), ``(B, C, H, W)``.
            fixed: the image to align it to (RegGAN: the target ``y``), same shape.

        Returns:
            The displacement field, ``(B, 2, H, W)``.

        Raises:
            ValueError: shapes differ, images are not 2D, or a size is not divisible by ``2 ** levels``.
        """
        if moving.shape != fixed.shape or moving.ndim != 4:
            raise ValueError(
                f"`moving` and `fixed` must be 2D batches (B, C, H, W) of one shape, got {list(moving.shape)} "
                f"and {list(fixed.shape)}."
            )
        if any(s % self.multiple for s in moving.shape[2:]):
            raise ValueError(
                f"ResUNetRegistration with {self.levels} levels needs sizes divisible by {self.multiple}, got "
                f"{list(moving.shape[2:])}; build it with this image_size (or fewer levels)."
            )
        x, skips = torch.cat([moving, fixed], dim=1), []
        for block in self.down:
            skip = block(x)
            skips.append(skip)
            x = functional.max_pool2d(skip, 2)
        x = self.bottleneck(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = functional.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.output(self.refine(x))


def registration_network(
    kind: str = "resunet",
    in_channels: int = 1,
    image_size: int = 256,
    channels: int = 32,
    deep_channels: int = 64,
    bottleneck_blocks: int = 3,
    levels: int | None = None,
) -> nn.Module:
    """RegGAN's R by name: ``resunet`` (:class:`ResUNetRegistration`, the public code's) or
    ``localnet`` (:class:`RegistrationNetwork`, MONAI's LocalNet).

    Args:
        kind: ``resunet`` or ``localnet``.
        in_channels: channels of each image.
        image_size: ``resunet``: the size its levels are derived from.
        channels: filters of the first level.
        deep_channels: ``resunet``: filters of the other levels.
        bottleneck_blocks: ``resunet``: residual blocks at the bottleneck.
        levels: down-sampling levels (``None``: derived from ``image_size`` for ``resunet``, 3 for
            ``localnet``).

    Returns:
        The network.

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "resunet":
        return ResUNetRegistration(in_channels, image_size, channels, deep_channels, bottleneck_blocks, levels)
    if kind == "localnet":
        return RegistrationNetwork(in_channels, 2, channels, 3 if levels is None else levels)
    raise ValueError(f"Unknown registration network {kind!r}; expected 'resunet' or 'localnet'.")
