"""RegGAN's registration losses (Kong et al., NeurIPS 2021): the correction loss between the
registered translation and the target, and the smoothness of the displacement field."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["correction_loss", "smoothness_loss"]


def correction_loss(registered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RegGAN's correction loss ``mean(|T(G(x)) - y|)``: L1 between the translation warped onto the
    (noisy, misaligned) target and that target.

    Args:
        registered: the warped translation ``T(G(x))``.
        target: the target image ``y``, same shape.

    Returns:
        The scalar loss, in float32 (unweighted; RegGAN weighs it 20).

    Raises:
        ValueError: shapes differ.
    """
    if registered.shape != target.shape:
        raise ValueError(
            f"`registered` and `target` must have the same shape, got {list(registered.shape)} and {list(target.shape)}."
        )
    return F.l1_loss(registered.float(), target.float())


def smoothness_loss(displacement: torch.Tensor) -> torch.Tensor:
    """Smoothness of a displacement field: the mean squared forward difference along each
    spatial axis, summed over the axes, in pixels (RegGAN's ``smooothing_loss``).

    MONAI's ``DiffusionLoss`` uses central differences ``(u[i+1] - u[i-1]) / 2``, which are
    about a quarter of this for smooth fields and blind to pixel-scale oscillation, so RegGAN's
    weight of 10 would mean something else there.

    Args:
        displacement: ``(B, spatial_dims, *S)``, every spatial size at least 2.

    Returns:
        ``sum_axes mean((u[i+1] - u[i])^2)``, in float32 (unweighted; RegGAN weighs it 10).

    Raises:
        ValueError: not a batch of 2D or 3D fields with one channel per axis, or a size below 2.
    """
    spatial = displacement.ndim - 2
    if spatial not in (2, 3) or displacement.shape[1] != spatial or min(displacement.shape[2:]) < 2:
        raise ValueError(
            "`displacement` must be (B, spatial_dims, *S) with 2 or 3 spatial axes of size >= 2, got "
            f"{list(displacement.shape)}."
        )
    field = displacement.float()
    return sum(torch.diff(field, dim=axis).pow(2).mean() for axis in range(2, field.ndim))
