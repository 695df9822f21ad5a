"""Helpers for building optimisers from configs."""

from __future__ import annotations

from torch import nn

__all__ = ["parameters"]


def parameters(*networks: nn.Module | None) -> list[nn.Parameter]:
    """The parameters of several networks, skipping ``None`` (a network a mode does not use).

    Args:
        networks: the networks of one optimiser.

    Returns:
        Their parameters, in order.

    Raises:
        ValueError: every network is ``None``.
    """
    present = [n for n in networks if n is not None]
    if not present:
        raise ValueError("An optimiser needs at least one network; every network given is None.")
    return [p for network in present for p in network.parameters()]
