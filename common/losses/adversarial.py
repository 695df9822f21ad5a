"""Adversarial losses for patch discriminators: LSGAN (the default of every method here),
vanilla (non-saturating BCE) and hinge.

Only the least-squares criterion is MONAI's ``PatchAdversarialLoss``, with
``no_activation_leastsq=True`` so that it is the plain MSE on the raw output the papers use.
MONAI's other two criteria are not what the papers mean: its BCE applies a sigmoid and then
``BCELoss``, which is refused under CUDA autocast and loses precision for large logits (the
logits form used here is stable), and its hinge passes the output through ``tanh`` first
(the standard hinge loss of Lim & Ye 2017 does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from monai.utils.enums import StrEnum
from torch import nn

__all__ = ["AdversarialCriterion", "AdversarialLoss", "discriminator_logits"]


class AdversarialCriterion(StrEnum):
    """The adversarial criteria :class:`AdversarialLoss` offers."""

    LSGAN = "lsgan"
    VANILLA = "vanilla"
    HINGE = "hinge"


def discriminator_logits(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The logits of a discriminator's output.

    MONAI's ``PatchDiscriminator`` returns a list of its intermediate features followed by the
    logits; only the last element is scored, so that the features do not enter the loss.

    Args:
        output: a tensor of logits, or the list/tuple returned by ``PatchDiscriminator``.

    Returns:
        The logits tensor.

    Raises:
        ValueError: an empty list, or something that is not a tensor.
    """
    if isinstance(output, (list, tuple)):
        if not output:
            raise ValueError("`output` is an empty list; expected PatchDiscriminator's list ending with the logits.")
        output = output[-1]
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"`output` must be a tensor or a list of tensors, got {type(output).__name__}.")
    return output


class AdversarialLoss(nn.Module):
    """Adversarial loss on a discriminator's raw output (no final activation).

    ============  ===============================  ===============================  ==================
    criterion     discriminator, real              discriminator, fake              generator
    ============  ===============================  ===============================  ==================
    ``lsgan``     ``mean((D - 1)^2)``              ``mean(D^2)``                    ``mean((D - 1)^2)``
    ``vanilla``   ``BCEWithLogits(D, 1)``          ``BCEWithLogits(D, 0)``          ``BCEWithLogits(D, 1)``
    ``hinge``     ``mean(relu(1 - D))``            ``mean(relu(1 + D))``            ``-mean(D)``
    ============  ===============================  ===============================  ==================

    The loss is computed in float32 whatever the output's dtype (bf16 under AMP).

    Args:
        criterion: one of ``"lsgan"``, ``"vanilla"``, ``"hinge"``.

    Raises:
        ValueError: an unknown criterion.

    Example::

        loss = AdversarialLoss("lsgan")
        d_loss = 0.5 * (loss(disc(real), True) + loss(disc(fake.detach()), False))
        g_loss = loss(disc(fake), True, for_discriminator=False)
    """

    def __init__(self, criterion: AdversarialCriterion | str = AdversarialCriterion.LSGAN) -> None:
        super().__init__()
        if criterion not in list(AdversarialCriterion):
            raise ValueError(
                f"Unknown adversarial criterion {criterion!r}; expected one of {', '.join(AdversarialCriterion)}."
            )
        self.criterion = AdversarialCriterion(criterion)
        self._least_squares = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)

    def forward(
        self,
        output: torch.Tensor | Sequence[torch.Tensor],
        target_is_real: bool,
        for_discriminator: bool = True,
    ) -> torch.Tensor:
        """Scores a discriminator's output.

        Args:
            output: the discriminator's logits, or ``PatchDiscriminator``'s list output.
            target_is_real: whether the output should be judged real.
            for_discriminator: ``False`` for the generator's loss (then ``target_is_real``
                must be ``True``); it only changes the hinge criterion.

        Returns:
            The scalar loss.

        Raises:
            ValueError: a generator loss asked with ``target_is_real=False``, or an invalid output.
        """
        if not for_discriminator and not target_is_real:
            raise ValueError("A generator loss always targets real (`target_is_real=True`).")
        logits = discriminator_logits(output).float()
        if self.criterion == AdversarialCriterion.LSGAN:
            return self._least_squares(logits, target_is_real=target_is_real, for_discriminator=for_discriminator)
        if self.criterion == AdversarialCriterion.VANILLA:
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)
        if not for_discriminator:
            return -logits.mean()
        return F.relu(1 - logits).mean() if target_is_real else F.relu(1 + logits).mean()
