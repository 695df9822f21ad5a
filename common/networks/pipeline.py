"""Translate-then-segment as one network: a translator into the segmenter's domain followed by
the segmenter, so that an adaptation bundle can be served as a segmentation model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import BasicUNet, FlexibleUNet
from torch import nn

__all__ = ["TranslateThenSegment", "sub_state_dict", "unet_segmenter"]


class TranslateThenSegment(nn.Module):
    """``segmenter(translator(x))``, returned as a label map (or as logits).

    Args:
        translator: an image-to-image network into the segmenter's training domain, or ``None``
            for no translation (direct transfer).
        segmenter: a segmentation network returning class logits ``(B, K, H, W)``.
        return_logits: return the logits instead of the label map.

    Shapes:
        ``(B, C, H, W) -> (B, 1, H, W)`` label indices as float (or ``(B, K, H, W)`` logits).
    """

    def __init__(self, translator: nn.Module | None, segmenter: nn.Module, return_logits: bool = False) -> None:
        super().__init__()
        self.translator = translator if translator is not None else nn.Identity()
        self.segmenter = segmenter
        self.return_logits = return_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translates and segments a batch.

        Args:
            x: normalised images of the translator's input domain.

        Returns:
            The label map (or logits).
        """
        logits = self.segmenter(self.translator(x))
        if self.return_logits:
            return logits
        return torch.argmax(logits, dim=1, keepdim=True).to(logits.dtype)


def sub_state_dict(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of one submodule in a state_dict, with the prefix removed.

    Args:
        state: e.g. a :class:`TranslateThenSegment` state_dict.
        prefix: the submodule's name (``translator``).

    Returns:
        A state_dict for the submodule alone.

    Raises:
        KeyError: no entry starts with ``prefix.``.
    """
    head = prefix.rstrip(".") + "."
    sub = {key[len(head) :]: value for key, value in state.items() if key.startswith(head)}
    if not sub:
        raise KeyError(f"No weights under {head!r}; the state_dict has {sorted({k.split('.')[0] for k in state})}.")
    return sub


def unet_segmenter(
    in_channels: int, out_channels: int, backbone: str = "resnet50", features: Sequence[int] | None = None
) -> nn.Module:
    """A 2D U-Net segmenter named by two settings, so that a trained bundle can record which one
    it trained: MONAI's ``FlexibleUNet`` with an encoder ``backbone`` (e.g. ``resnet50``, the
    ResUNet-50; no pretrained weights), or with ``backbone="unet"`` MONAI's ``BasicUNet`` with
    ``features`` (its six filter counts; MONAI's default when ``None``).

    Args:
        in_channels: image channels.
        out_channels: classes.
        backbone: a ``FlexibleUNet`` backbone, or ``unet``.
        features: the ``BasicUNet`` filters (``backbone="unet"`` only).

    Returns:
        The network.
    """
    if backbone == "unet":
        extra = {} if features is None else {"features": tuple(features)}
        return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, **extra)
    return FlexibleUNet(
        in_channels=in_channels, out_channels=out_channels, backbone=backbone, pretrained=False, spatial_dims=2
    )
