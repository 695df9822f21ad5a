"""The domain gap of a dataset: a U-Net trained on the source, scored on both test sets.

``measure_gap`` is what ``python -m common.data.synthetic --measure-gap`` runs: the
"no adaptation" lower bound every method in this project has to beat.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.inferers import SliceInferer
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from monai.utils import set_determinism
from tqdm import trange

from common.data.datalist import entries, load_datalist
from common.data.datasets import SliceDataset
from common.data.io import domain_transform
from common.metrics import evaluate_segmentation

__all__ = ["measure_gap", "score_segmenter", "train_segmenter"]

logger = logging.getLogger(__name__)


def _gap_splits(datalist: dict) -> dict[str, list[dict]]:
    """Source training entries and the labelled test entries of both domains.

    A paired dataset (``brain``) has no unpaired sections: its pairs' source images and
    aligned target renderings (``reference``) share one label map.
    """
    if "source" in datalist:
        return {
            "training": entries(datalist, "source", "training"),
            "source": entries(datalist, "source", "test"),
            "target": entries(datalist, "target", "test"),
        }
    test = entries(datalist, "paired", "test")
    return {
        "training": entries(datalist, "paired", "training"),
        "source": [{"image": e["image"], "label": e["label"]} for e in test],
        "target": [{"image": e["reference"], "label": e["label"]} for e in test],
    }


SEGMENTER_FEATURES = (16, 16, 32, 64, 128, 16)


def train_segmenter(
    samples,
    in_channels: int,
    out_channels: int,
    iterations: int = 600,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    desc: str = "source U-Net",
) -> torch.nn.Module:
    """The benchmark's fixed segmenter recipe: a 2D MONAI ``BasicUNet`` (features
    16-16-32-64-128-16), Dice + cross-entropy, Adam 1e-3, ``batch_size`` images per iteration.

    Args:
        samples: 2D samples ``{"image": (C, H, W), "label": (1, H, W)}`` (slices of volumes).
        in_channels: image channels.
        out_channels: classes including the background.
        iterations: training iterations (the loader is cycled).
        batch_size: images per iteration.
        device: torch device.
        desc: the progress bar's label.

    Returns:
        The trained network, in eval mode.
    """
    loader = DataLoader(samples, batch_size=min(batch_size, len(samples)), shuffle=True, drop_last=True)
    net = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=SEGMENTER_FEATURES)
    net = net.to(device)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = iter(())
    progress = trange(iterations, desc=desc, unit="it", leave=False)
    for _ in progress:
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = loss_function(net(batch["image"].to(device)), batch["label"].to(device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


def score_segmenter(net: torch.nn.Module, items, labels: dict[int, str], device: torch.device | str = "cpu") -> dict:
    """Mean Dice over images (volumes) and foreground classes, and per class.

    Args:
        net: a 2D segmenter; 3D volumes are segmented slice by slice.
        items: ``{"image": (C, *spatial), "label": (1, *spatial), "spacing": [...]}`` each.
        labels: the datalist's classes.
        device: torch device.

    Returns:
        ``{"dice": mean, "per_class": {name: mean Dice}}``.
    """
    scores = []
    for item in items:
        image = torch.as_tensor(item["image"])[None].to(device)
        with torch.no_grad():
            if image.ndim == 5:
                logits = SliceInferer(roi_size=image.shape[2:4], sw_batch_size=32, spatial_dim=2)(image, net)
            else:
                logits = net(image)
        prediction = logits.argmax(dim=1)[0].cpu().numpy()
        label = np.asarray(item["label"][0])
        scores.append(evaluate_segmentation(prediction, label, labels, item["spacing"]))
    per_class = {
        name: float(np.mean([s["per_class"][name]["dice"] for s in scores])) for name in scores[0]["per_class"]
    }
    return {"dice": float(np.mean([s["mean"]["dice"] for s in scores])), "per_class": per_class}


def measure_gap(
    datalist_path: str | Path,
    iterations: int = 600,
    seed: int = 0,
    batch_size: int = 16,
    device: str | None = None,
) -> dict:
    """Trains the benchmark's segmenter (:func:`train_segmenter`) on the source training split
    and scores it on both test splits.

    3D volumes are trained on as slices and segmented slice by slice, then scored per volume.

    Args:
        datalist_path: the dataset's datalist.
        iterations: training iterations.
        seed: random seed.
        batch_size: images (or slices) per iteration.
        device: torch device (default: CUDA when available).

    Returns:
        ``{"source_test": {...}, "target_test": {...}}``, each with the mean Dice over volumes and
        foreground classes (``dice``) and the per-class mean Dice (``per_class``).
    """
    set_determinism(seed=seed)
    datalist = load_datalist(datalist_path)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    labels = {int(k): v for k, v in datalist["labels"].items()}
    channels = datalist["domains"]["source"].get("channels", 1)

    splits = _gap_splits(datalist)
    train = CacheDataset(splits["training"], domain_transform(datalist, "source"), progress=False)
    samples = SliceDataset(train) if datalist["tensor_dim"] == 3 else train
    net = train_segmenter(samples, channels, max(labels) + 1, iterations, batch_size, device)
    result = {}
    for domain in ("source", "target"):
        test = CacheDataset(splits[domain], domain_transform(datalist, domain), progress=False)
        items = [
            {**item, "spacing": tuple(float(s) for s in item["label"].pixdim[: item["label"].ndim - 1])}
            for item in test
        ]
        result[f"{domain}_test"] = score_segmenter(net, items, labels, device)
        logger.info(
            "%s test: mean Dice %.3f %s",
            domain,
            result[f"{domain}_test"]["dice"],
            result[f"{domain}_test"]["per_class"],
        )
    return result
