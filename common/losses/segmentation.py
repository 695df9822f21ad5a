"""SIFA's segmentation task loss (cchen-cc/SIFA ``losses.task_loss``): a class-weighted cross
entropy whose weights are recomputed on every batch, and a soft Dice loss (MONAI's ``DiceLoss``
with squared predictions, pooled over the batch, background included)."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn

__all__ = ["SIFATaskLoss", "batch_weighted_cross_entropy"]


def batch_weighted_cross_entropy(logits: torch.Tensor, onehot: torch.Tensor, clip: float = 0.005) -> torch.Tensor:
    """``mean over pixels of -sum_c w_c g_c log(clip(p_c, clip, 1))`` with ``w_c = 1 - n_c / n``,
    ``n_c`` the batch's pixels of class ``c`` (SIFA's ``_softmax_weighted_loss``: rare classes weigh more).

    Args:
        logits: ``(B, C, H, W)``.
        onehot: ``(B, C, H, W)`` one-hot labels.
        clip: the smallest probability in the logarithm (SIFA: 0.005).

    Returns:
        The scalar loss.
    """
    probabilities = torch.softmax(logits.float(), 1).clamp(clip, 1)
    onehot = onehot.float()
    weights = 1 - onehot.sum((0, 2, 3)) / onehot.sum()
    return -(weights.view(1, -1, 1, 1) * onehot * probabilities.log()).sum(1).mean()


class SIFATaskLoss(nn.Module):
    """SIFA's ``task_loss``: ``(weighted cross entropy, Dice loss)``, both on logits.

    The Dice part is ``1 - mean_c 2 sum(p_c g_c) / (sum(p_c^2) + sum(g_c) + 1e-7)`` over the
    whole batch and every class (MONAI ``DiceLoss(softmax=True, squared_pred=True, batch=True)``).

    Args:
        clip: the cross entropy's smallest probability.
        total: return the sum of both terms (one scalar, as MONAI's ``SupervisedTrainer`` takes
            a loss; SIFA's no-adaptation and supervised segmenters train on it).
    """

    def __init__(self, clip: float = 0.005, total: bool = False) -> None:
        super().__init__()
        self.clip, self.total = clip, total
        self.dice = DiceLoss(softmax=True, squared_pred=True, batch=True, smooth_nr=0.0, smooth_dr=1e-7)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Scores logits against a label map.

        Args:
            logits: ``(B, C, H, W)``.
            labels: ``(B, 1, H, W)`` class indices.

        Returns:
            The weighted cross entropy and the Dice loss (their sum with ``total``).
        """
        onehot = torch.zeros_like(logits, dtype=torch.float32).scatter_(1, labels.long(), 1.0)
        ce, dice = batch_weighted_cross_entropy(logits, onehot, self.clip), self.dice(logits.float(), onehot)
        return ce + dice if self.total else (ce, dice)
