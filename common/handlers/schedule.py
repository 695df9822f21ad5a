"""Learning-rate schedules."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["linear_decay"]


def linear_decay(optimizer: torch.optim.Optimizer, constant_epochs: int, decay_epochs: int) -> LambdaLR:
    """CycleGAN's schedule: the initial rate for ``constant_epochs``, then linear decay towards zero
    over ``decay_epochs`` (epoch ``e`` from 0 uses ``1 - max(0, e + 1 - constant) / (decay + 1)``).

    Step it once per epoch (MONAI ``LrScheduleHandler(epoch_level=True)``).

    Args:
        optimizer: the optimiser.
        constant_epochs: epochs at the initial rate.
        decay_epochs: epochs of linear decay.

    Returns:
        The scheduler.

    Raises:
        ValueError: negative epoch counts.
    """
    if constant_epochs < 0 or decay_epochs < 0:
        raise ValueError(f"Epoch counts must be non-negative, got {constant_epochs} and {decay_epochs}.")
    return LambdaLR(optimizer, lambda epoch: 1.0 - max(0, epoch + 1 - constant_epochs) / float(decay_epochs + 1))
