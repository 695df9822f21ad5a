"""The handlers every bundle's trainer logs with, in one place: console statistics, TensorBoard
scalars, image grids (TensorBoard and a PNG) and a progress bar."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ignite.handlers import ProgressBar
from monai.handlers import StatsHandler, TensorBoardStatsHandler, ValidationHandler

from common.engines.base import is_main_process, loss_output
from common.handlers.image_grid import ImageGridHandler

__all__ = ["training_handlers", "on_main_process"]


def on_main_process(handlers: Sequence) -> list:
    """``handlers`` on the main process (rank 0, or a run without torch.distributed), none elsewhere:
    one console log, one TensorBoard folder, one progress bar.

    Args:
        handlers: logging handlers.

    Returns:
        ``handlers`` or ``[]``.
    """
    return list(handlers) if is_main_process() else []


def training_handlers(
    output_dir: str | Path, log_interval: int, validation: ValidationHandler | None = None, tag: str = "train_loss"
) -> list:
    """The logging handlers of a :class:`~common.engines.MultiNetworkTrainer` (and its validation).

    Args:
        output_dir: the bundle's output folder; TensorBoard writes to ``output_dir/tensorboard``
            and the latest image grid to ``output_dir/images_latest.png``.
        log_interval: iterations between console lines and image grids.
        validation: a ``ValidationHandler`` to run too (:mod:`common.engines.validation`; ``None``: none).
        tag: the scalars' tag.

    Returns:
        ``StatsHandler`` (every ``log_interval`` iterations and each epoch), ``TensorBoardStatsHandler``
        (every iteration), :class:`~common.handlers.ImageGridHandler` (the trainer's declared
        rows) and ignite's ``ProgressBar`` on the main process only, and ``validation`` when
        given on every process (MONAI's metrics gather their values across processes).
    """
    tensorboard = os.path.join(output_dir, "tensorboard")
    return [
        *on_main_process(
            [
                StatsHandler(
                    tag_name=tag,
                    output_transform=loss_output,
                    iteration_log=lambda engine, iteration: iteration % log_interval == 0,
                ),
                TensorBoardStatsHandler(log_dir=tensorboard, tag_name=tag, output_transform=loss_output),
                ImageGridHandler(log_dir=tensorboard, output_dir=str(output_dir), interval=log_interval),
                ProgressBar(persist=True),
            ]
        ),
        *([validation] if validation is not None else []),
    ]
