"""The source-domain segmenter that translation-based adaptation (MI2GAN) feeds: trained once
with MONAI's ``SupervisedTrainer`` on labelled source images, or loaded when already trained."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from monai.engines import SupervisedTrainer
from torch import nn

__all__ = ["train_or_load"]

logger = logging.getLogger(__name__)


def train_or_load(trainer: SupervisedTrainer, network: nn.Module, path: str | Path, reuse: bool = False,
                  save: bool = True) -> nn.Module:
    """Runs ``trainer`` and saves ``network``'s weights to ``path``, or, with ``reuse`` and an
    existing ``path``, loads them instead (a resumed run keeps the segmenter it started with).

    Args:
        trainer: the segmenter's trainer (its ``network`` is ``network``).
        network: the segmenter.
        path: where its bare ``state_dict`` is written.
        reuse: load ``path`` when it exists instead of training.
        save: write ``path`` (``False`` on the other ranks of a distributed run).

    Returns:
        The trained segmenter.
    """
    path = Path(path)
    if reuse and path.is_file():
        network.load_state_dict(torch.load(path, map_location=trainer.state.device, weights_only=True))
        logger.info("Loaded the segmenter from %s (no retraining on resume)", path)
        return network
    trainer.run()
    if save:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), path)
        logger.info("Trained the segmenter for %d iterations; saved %s", trainer.state.iteration, path)
    return network
