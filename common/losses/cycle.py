"""Cycle-consistency and identity losses (L1), as in CycleGAN (Zhu et al. 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cycle_loss", "identity_loss"]


def cycle_loss(reconstructed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Cycle-consistency loss ``mean(|G_BA(G_AB(a)) - a|)``.

    Args:
        reconstructed: the image translated to the other domain and back.
        real: the original image, same shape.

    Returns:
        The scalar L1 loss (unweighted; the methods' configs carry lambda_cycle).

    Raises:
        ValueError: shapes differ.
    """
    return _l1(reconstructed, real, "reconstructed")


def identity_loss(same: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Identity loss ``mean(|G_AB(b) - b|)``: a generator fed its own output domain should not change it.

    Args:
        same: the generator's output for an image already in its output domain.
        real: that image, same shape.

    Returns:
        The scalar L1 loss (unweighted; CycleGAN weighs it 0.5 x lambda_cycle).

    Raises:
        ValueError: shapes differ.
    """
    return _l1(same, real, "same")


def _l1(output: torch.Tensor, real: torch.Tensor, name: str) -> torch.Tensor:
    if output.shape != real.shape:
        raise ValueError(
            f"`{name}` and `real` must have the same shape, got {tuple(output.shape)} and {tuple(real.shape)}."
        )
    return F.l1_loss(output.float(), real.float())
