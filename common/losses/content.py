"""MI2GAN's content feature distillation loss (eq. 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss"]


def distillation_loss(
    image: torch.Tensor, translation: torch.Tensor, reconstruction: torch.Tensor, cross_reconstruction: torch.Tensor
) -> torch.Tensor:
    """``L_dis = |I_ab - I'_ab|_1 + |I_a - I'_a|_1`` (MI2GAN eq. 5), each term a mean absolute error.

    With ``z_a = Enc_A(I_a)``: ``I'_a = Dec_A(z_a)`` reconstructs the image in its own domain and
    ``I'_ab = Dec_B(z_a)`` must match the generator's translation ``I_ab = G_AB(I_a)``, so the
    decoders carry the domain information and ``z_a`` keeps the content.

    Args:
        image: ``I_a``.
        translation: ``I_ab = G_AB(I_a)``.
        reconstruction: ``I'_a = Dec_A(Enc_A(I_a))``.
        cross_reconstruction: ``I'_ab = Dec_B(Enc_A(I_a))``.

    Returns:
        The scalar loss.

    Raises:
        ValueError: an image and its reconstruction differ in shape.
    """
    for a, b, name in ((translation, cross_reconstruction, "translation"), (image, reconstruction, "image")):
        if a.shape != b.shape:
            raise ValueError(f"`{name}` {tuple(a.shape)} and its reconstruction {tuple(b.shape)} differ in shape.")
    return F.l1_loss(cross_reconstruction, translation) + F.l1_loss(reconstruction, image)
