"""The handlers every bundle's trainer logs with, in one place: console statistics, TensorBoard
scalars, image grids (TensorBoard and a PNG) and a progress bar."""

from __future__ import annotations

import os
from pathlib import Path

from ignite.handlers import ProgressBar
from monai.handlers import StatsHandler, TensorBoardStatsHandler

from common.engines.base import loss_output
from common.handlers.image_grid import ImageGridHandler

__all__ = ["training_handlers"]


def training_handlers(output_dir: str | Path, log_interval: int, tag: str = "train_loss") -> list:
    """The logging handlers of a :class:`~common.engines.MultiNetworkTrainer`.

    Args:
        output_dir: the bundle's output folder; TensorBoard writes to ``output_dir/tensorboard``
            and the latest image grid to ``output_dir/images_latest.png``.
        log_interval: iterations between console lines and image grids.
        tag: the scalars' tag.

    Returns:
        ``StatsHandler`` (every ``log_interval`` iterations and each epoch), ``TensorBoardStatsHandler``
        (every iteration), :class:`~common.handlers.ImageGridHandler` (the trainer's declared
        rows) and ignite's ``ProgressBar``.
    """
    tensorboard = os.path.join(output_dir, "tensorboard")
    return [
        StatsHandler(tag_name=tag, output_transform=loss_output,
                     iteration_log=lambda engine, iteration: iteration % log_interval == 0),
        TensorBoardStatsHandler(log_dir=tensorboard, tag_name=tag, output_transform=loss_output),
        ImageGridHandler(log_dir=tensorboard, output_dir=str(output_dir), interval=log_interval),
        ProgressBar(persist=True),
    ]
