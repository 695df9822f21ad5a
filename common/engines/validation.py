"""Validation during training: a MONAI ``SupervisedEvaluator`` on the validation split, run by a
``ValidationHandler`` every few epochs, its key metric in the console and TensorBoard, and
optionally the best network so far saved beside the final weights.

Two kinds: segmentation Dice on labelled *source* images (target labels are never read during
training), and translation PSNR against the references (the same subject rendered in the other
domain, where the datalist has them). The best network is saved by a small handler rather than
MONAI's ``CheckpointSaver(save_key_metric=True)``, which writes in place (``atomic=False``): a
crash while saving would leave a broken file where the best weights were.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedEvaluator, default_prepare_batch
from monai.handlers import (
    MeanDice,
    PeakSignalToNoiseRatio,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    from_engine,
)
from monai.transforms import AsDiscreted
from torch import nn

from common.data.datasets import SliceDataset, image_dataset
from common.data.io import paired_transform
from common.engines.base import is_main_process, unwrap
from common.engines.checkpoints import atomic_save

__all__ = ["segmentation_validation", "translation_validation"]

logger = logging.getLogger(__name__)


def _handler(
    network: nn.Module,
    dataset: torch.utils.data.Dataset,
    metric_name: str,
    metric: Callable,
    device: torch.device | str,
    interval: int,
    output_dir: str | Path,
    best_path: str | Path | None,
    batch_size: int,
    postprocessing: Callable | None = None,
    prepare_batch: Callable = default_prepare_batch,
) -> ValidationHandler:
    """The evaluator and its handler (shared by both kinds)."""
    handlers = [
        StatsHandler(iteration_log=False, tag_name=metric_name),
        TensorBoardStatsHandler(log_dir=os.path.join(output_dir, "tensorboard"), iteration_log=False),
    ]
    evaluator = SupervisedEvaluator(
        device=torch.device(device),
        val_data_loader=DataLoader(dataset, batch_size=batch_size, num_workers=0),
        network=network.to(device),
        prepare_batch=prepare_batch,
        postprocessing=postprocessing,
        key_val_metric={metric_name: metric},
        val_handlers=handlers,
    )
    if best_path is not None:

        def save_best(engine: Engine) -> None:
            if engine.state.best_metric_epoch == engine.state.epoch and is_main_process():
                atomic_save(unwrap(network).state_dict(), best_path)
                logger.info(
                    "Best %s so far (%.4f, epoch %d): saved %s",
                    metric_name,
                    engine.state.best_metric,
                    engine.state.epoch,
                    best_path,
                )

        evaluator.add_event_handler(Events.EPOCH_COMPLETED, save_best)
    return ValidationHandler(interval=interval, validator=evaluator, epoch_level=True)


def segmentation_validation(
    network: nn.Module,
    datalist: dict,
    num_classes: int,
    device: torch.device | str,
    output_dir: str | Path,
    interval: int = 1,
    best_path: str | Path | None = None,
    batch_size: int = 16,
) -> ValidationHandler | None:
    """Mean foreground Dice (``val_mean_dice``, MONAI ``MeanDice``, over 2D images or slices) of
    a segmenter on the labelled ``source.validation`` split.

    Args:
        network: the segmenter (class logits ``(B, K, H, W)``).
        datalist: a loaded datalist.
        num_classes: ``K``, with the background.
        device: where to run.
        output_dir: TensorBoard writes to ``output_dir/tensorboard``.
        interval: epochs between validations (0: none).
        best_path: where the network with the best Dice so far is saved (``None``: not saved).
        batch_size: images or slices per batch.

    Returns:
        The ``ValidationHandler`` to attach to the trainer (``None`` when ``interval`` is 0).

    Raises:
        DatalistError: the datalist has no ``source.validation`` split.
    """
    if interval <= 0:
        return None
    dataset = image_dataset(datalist, "source", "validation", keys=("image", "label"))
    onehot = AsDiscreted(keys=("pred", "label"), argmax=(True, False), to_onehot=(num_classes, num_classes))
    metric = MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))
    args = (network, dataset, "val_mean_dice", metric, device, interval, output_dir, best_path, batch_size)
    return _handler(*args, postprocessing=onehot)


def translation_validation(
    network: nn.Module,
    datalist: dict,
    device: torch.device | str,
    output_dir: str | Path,
    domain: str = "source",
    interval: int = 1,
    best_path: str | Path | None = None,
    batch_size: int = 16,
) -> ValidationHandler | None:
    """PSNR (``val_psnr``, MONAI ``PSNR`` on the [-1, 1] images, data range 2) of a translation
    network's output against the reference of each ``domain.validation`` entry.

    Args:
        network: the translation network.
        datalist: a loaded datalist.
        device: where to run.
        output_dir: TensorBoard writes to ``output_dir/tensorboard``.
        domain: the input domain (``source`` for an A-to-B network, ``target`` for B to A), or
            ``paired`` (the pairs' ``image`` and aligned ``reference``).
        interval: epochs between validations (0: none).
        best_path: where the network with the best PSNR so far is saved (``None``: not saved).
        batch_size: images or slices per batch.

    Returns:
        The ``ValidationHandler`` to attach to the trainer, or ``None`` without validations
        (``interval`` 0, no ``domain.validation`` split, or entries without a ``reference`` to
        compare with, as real data have none: logged).
    """
    if interval <= 0:
        return None
    items = datalist.get(domain, {}).get("validation", [])
    if not items or not all("reference" in e for e in items):
        logger.info("%s.validation has no references: no translation validation during training", domain)
        return None
    keys = ("image", "reference")
    transform = paired_transform(datalist, keys, "source" if domain == "paired" else domain)
    data = CacheDataset([{k: e[k] for k in keys} for e in items], transform, progress=False)
    dataset = SliceDataset(data, keys) if datalist["tensor_dim"] == 3 else data
    metric = PeakSignalToNoiseRatio(max_val=2.0, output_transform=from_engine(["pred", "label"]))
    args = (network, dataset, "val_psnr", metric, device, interval, output_dir, best_path, batch_size)
    return _handler(*args, prepare_batch=_reference_as_label)


def _reference_as_label(batchdata: dict, device: torch.device, non_blocking: bool = False, **kwargs) -> tuple:
    """The evaluator's inputs: the image, and the reference in the place of a label."""
    return (
        batchdata["image"].to(device, non_blocking=non_blocking),
        batchdata["reference"].to(device, non_blocking=non_blocking),
    )
