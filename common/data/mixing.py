"""Mixing two batches of images with a mask: SynthMix's k x k grid (Zhang et al., "SynthMix:
Mixing up Aligned Synthesis for Medical Cross-Modality Domain Adaptation", ISBI 2023), and the
CutMix (one box) and Mixup (a constant) baselines it is compared with.

A mask ``M`` in [0, 1] of shape ``(B, 1, H, W)`` mixes ``x_mix = M * x_T + (1 - M) * x_S``
(:func:`mix`): 1 where the pixel comes from the target-domain image (a real target image or a
translation into the target), 0 where from the source-domain one. :func:`domain_map` averages a
mask over the cells of a ``k x k`` grid: the Mixup Inspector's target (the target fraction of
each patch; exactly 0 or 1 for a SynthMix mask on the same grid).

``ratio`` (SynthMix's occupancy ratio lambda, CutMix's box area, Mixup's weight) is the fraction
of the image taken from the target, one per sample (:func:`draw_ratios`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from monai.utils.enums import StrEnum

__all__ = ["MixMode", "draw_ratios", "grid_mask", "box_mask", "constant_mask", "make_mask", "mix", "domain_map"]


class MixMode(StrEnum):
    """How two images are mixed."""

    SYNTHMIX = "synthmix"  # a k x k grid of whole cells from one image or the other
    CUTMIX = "cutmix"  # one box from the target image
    MIXUP = "mixup"  # a weighted average of both images


def draw_ratios(batch: int, alpha: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The target fractions of ``batch`` mixes.

    Args:
        batch: the number of mixes.
        alpha: ``None`` draws from U(0, 1); a positive value from Beta(alpha, alpha) (Mixup's and
            CutMix's prior; alpha = 1 is uniform).
        generator: the random generator (CPU).

    Returns:
        ``(batch,)`` ratios in [0, 1].

    Raises:
        ValueError: a non-positive ``alpha``.
    """
    if alpha is None:
        return torch.rand(batch, generator=generator)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive (Beta(alpha, alpha)), got {alpha}.")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # torch's Beta takes no generator
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, batch)).float()


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def grid_mask(
    ratios: torch.Tensor, k: int, size: int | tuple[int, int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """SynthMix's mask: a ``k x k`` binary grid with ``round(ratio * k * k)`` target cells chosen at
    random, upsampled (nearest) to the image.

    Args:
        ratios: ``(B,)`` occupancy ratios in [0, 1].
        k: cells per side (8 in SynthMix).
        size: the image's ``H`` (= ``W``) or ``(H, W)``, each divisible by ``k``.
        generator: the random generator (CPU).

    Returns:
        ``(B, 1, H, W)`` float mask of 0 and 1, constant within every cell.

    Raises:
        ValueError: ``k`` < 1, a size not divisible by ``k``, or ratios that are not a non-empty
            1D tensor in [0, 1].
    """
    height, width = _size(size)
    if k < 1 or height % k or width % k:
        raise ValueError(f"The image ({height} x {width}) must be divisible into k x k cells; got k={k}.")
    if ratios.ndim != 1 or not len(ratios) or ratios.min() < 0 or ratios.max() > 1:
        raise ValueError(f"Occupancy ratios must be a non-empty 1D tensor in [0, 1]; got {ratios.tolist()}.")
    cells = torch.round(ratios.double() * k * k).long()
    order = torch.stack([torch.randperm(k * k, generator=generator) for _ in range(len(ratios))])
    grid = (order < cells[:, None]).float().view(-1, 1, k, k)  # the first `cells` of a random order
    return grid.repeat_interleave(height // k, dim=2).repeat_interleave(width // k, dim=3)


def box_mask(
    ratios: torch.Tensor, size: int | tuple[int, int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """CutMix's mask: one box of the image's aspect with ``ratio`` of its area (rounded to whole
    pixels), placed uniformly at random inside the image.

    Args:
        ratios: ``(B,)`` area fractions in [0, 1].
        size: the image's ``H`` or ``(H, W)``.
        generator: the random generator (CPU).

    Returns:
        ``(B, 1, H, W)`` float mask of 0 and 1.
    """
    height, width = _size(size)
    mask = torch.zeros(len(ratios), 1, height, width)
    for index, ratio in enumerate(ratios.tolist()):
        h, w = round(height * math.sqrt(ratio)), round(width * math.sqrt(ratio))
        top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
        mask[index, :, top : top + h, left : left + w] = 1
    return mask


def constant_mask(ratios: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Mixup's mask: ``ratio`` everywhere.

    Args:
        ratios: ``(B,)`` weights of the target image.
        size: the image's ``H`` or ``(H, W)``.

    Returns:
        ``(B, 1, H, W)``.
    """
    height, width = _size(size)
    return ratios.float().view(-1, 1, 1, 1).expand(-1, 1, height, width).clone()


def make_mask(
    mode: MixMode | str,
    ratios: torch.Tensor,
    size: int | tuple[int, int],
    k: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The mask of a :class:`MixMode`.

    Args:
        mode: ``synthmix``, ``cutmix`` or ``mixup``.
        ratios: ``(B,)`` target fractions.
        size: the image's ``H`` or ``(H, W)``.
        k: SynthMix's cells per side.
        generator: the random generator (CPU).

    Returns:
        ``(B, 1, H, W)``.

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in list(MixMode):
        raise ValueError(f"Unknown mix mode {mode!r}; expected one of {', '.join(MixMode)}.")
    if mode == MixMode.SYNTHMIX:
        return grid_mask(ratios, k, size, generator)
    if mode == MixMode.CUTMIX:
        return box_mask(ratios, size, generator)
    return constant_mask(ratios, size)


def mix(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * target + (1 - mask) * source``.

    Args:
        source: ``(B, C, H, W)`` source-domain images.
        target: ``(B, C, H, W)`` target-domain images.
        mask: ``(B, 1, H, W)``, on any device (moved to the images').

    Returns:
        The mixes, ``(B, C, H, W)``.
    """
    mask = mask.to(device=source.device, dtype=source.dtype)
    return mask * target + (1 - mask) * source


def domain_map(mask: torch.Tensor, k: int) -> torch.Tensor:
    """The target fraction of every cell of a ``k x k`` grid (the Inspector's target map).

    Args:
        mask: ``(B, 1, H, W)`` with ``H`` and ``W`` divisible by ``k``.
        k: cells per side.

    Returns:
        ``(B, 1, k, k)``.
    """
    return F.adaptive_avg_pool2d(mask, k)
