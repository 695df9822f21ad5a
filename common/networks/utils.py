"""Helpers for building optimisers from configs."""

from __future__ import annotations

from torch import nn

__all__ = ["parameters"]


def parameters(*networks: nn.Module | None) -> list[nn.Parameter]:
    """The parameters of several networks, skipping ``None`` (a network a mode does not use).

    Args:
        networks: the networks of one optimiser.

    Returns:
        Their parameters, in order (empty when every network is ``None``: the optimiser of a
        variant that does not use them, disabled in the config; the trainer checks that every
        optimiser it is given holds exactly its networks' parameters).
    """
    return [p for network in networks if network is not None for p in network.parameters()]
