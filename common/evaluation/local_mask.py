"""Where global-local alignment's local feature mask falls, on labelled target test volumes, and
the paper's Fig. 6 (the mask next to the prediction error).

The paper's claim is that the mask, formed from ``D1``'s uncertainty, marks the locations with a
larger local domain gap, which are where the target prediction goes wrong. Per target test
volume, every slice is segmented as the release network does (``S_P((1 + M) S_E(x))``), the
mask ``M`` is brought to the image size (nearest), and scored against the error map
(prediction != label):

- ``mask_on_error`` / ``mask_off_error``: the mask's mean over the wrongly / rightly
  predicted pixels;
- ``mask_error_auc``: the area under the ROC curve of the mask as a detector of the error pixels
  (MONAI's ``compute_roc_auc``; 0.5: the mask does not follow the errors, 1: it marks exactly
  them, below 0.5: it marks the right pixels); NaN for a volume without errors;
- ``error_rate``: the share of wrong pixels;
- ``mask_on_structures`` / ``mask_on_background``: the mask's mean over the labelled structures /
  the background (the paper's Fig. 6 reading: after style transfer the mask should fall on the
  segmentation targets rather than the background);
- ``d1_target``: ``D1``'s mean probability that the target features are the target's (its
  training label; 0.5: ``D1`` cannot tell the domains apart, 1: it still separates them).

Target labels are read here, for evaluation only.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from monai.data import CacheDataset
from monai.metrics import compute_roc_auc
from torch import nn

from common.data.datalist import DatalistError, entries
from common.data.io import domain_transform
from common.evaluation.report import as_slices, show_image, summarise, write_tables
from common.networks.global_local import local_feature_mask, reweight_features

__all__ = ["evaluate_local_mask"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_local_mask(
    features: nn.Module,
    predictor: nn.Module,
    discriminator: nn.Module,
    datalist: dict,
    output_dir: str | Path,
    mask: str = "entropy",
    split: str = "test",
    device: torch.device | str = "cpu",
    examples: int = 3,
) -> dict:
    """Scores the local feature mask against the prediction error per target volume and draws
    image, label, prediction, error and mask for the middle slice of the first volumes.

    Args:
        features: ``S_E``.
        predictor: ``S_P``.
        discriminator: ``D1``.
        datalist: a loaded datalist whose target ``split`` entries are labelled.
        output_dir: where ``metrics.json``/``metrics.csv`` and ``mask_error.png`` go.
        mask: the local mask's mode (``entropy`` or ``certainty``), as in training.
        split: the target split.
        device: where to run.
        examples: volumes drawn.

    Returns:
        ``{"per_volume": [...], "mean": {...}, "std": {...}}``.

    Raises:
        DatalistError: target entries of the split without a ``label``.
    """
    items = entries(datalist, "target", split)
    if not items or any("label" not in e for e in items):
        raise DatalistError(f"`target.{split}` entries need a `label` to score the local mask against the errors.")
    volumes = CacheDataset(
        [{"image": e["image"], "label": e["label"]} for e in items],
        domain_transform(datalist, "target", ("image", "label")),
        progress=False,
    )
    networks = (features, predictor, discriminator)
    modes = [n.training for n in networks]
    for network in networks:
        network.to(device).eval()
    rows, shown = [], []
    for entry, volume in zip(items, volumes, strict=True):
        x = as_slices(volume["image"]).to(device)
        label = as_slices(volume["label"])[:, 0].round().long()
        f = features(x)
        logits = discriminator(f)
        m = local_feature_mask(logits, mask)
        prediction = predictor(reweight_features(f, m)).float().argmax(1).cpu()
        m = F.interpolate(m, size=tuple(x.shape[2:]), mode="nearest")[:, 0].cpu()
        error, structures = prediction != label, label > 0
        rows.append(
            {
                "volume": Path(entry["image"]).name,
                "error_rate": float(error.float().mean()),
                "mask_on_error": float(m[error].mean()) if error.any() else math.nan,
                "mask_off_error": float(m[~error].mean()) if (~error).any() else math.nan,
                "mask_error_auc": (
                    float(compute_roc_auc(m.flatten(), error.flatten().float()))
                    if error.any() and (~error).any()
                    else math.nan
                ),
                "mask_on_structures": float(m[structures].mean()) if structures.any() else math.nan,
                "mask_on_background": float(m[~structures].mean()) if (~structures).any() else math.nan,
                "d1_target": float(torch.sigmoid(logits.float()).mean()),
            }
        )
        if len(shown) < examples:
            k = x.shape[0] // 2
            shown.append((rows[-1]["volume"], x[k].cpu(), label[k], prediction[k], error[k], m[k]))
    for network, mode in zip(networks, modes, strict=True):
        network.train(mode)
    result = summarise(rows)
    output_dir = write_tables(result, output_dir)
    _draw(shown, output_dir / "mask_error.png")
    logger.info("Local mask on target.%s: %s", split, {k: round(v, 4) for k, v in result["mean"].items()})
    return result


def _draw(shown: list, path: Path) -> None:
    """Per example: the image, its label, the prediction, the error and the local mask (Fig. 6)."""
    if not shown:
        return
    figure = Figure(figsize=(10, 2.2 * len(shown)))
    axes = figure.subplots(len(shown), 5, squeeze=False)
    for row, (volume, image, label, prediction, error, mask) in zip(axes, shown, strict=True):
        classes = max(int(label.max()), int(prediction.max()), 1)
        show_image(row[0], image, f"target {volume}", fontsize=8)
        show_image(row[1], label[None].float() / classes * 2 - 1, "label", fontsize=8)
        show_image(row[2], prediction[None].float() / classes * 2 - 1, "prediction", fontsize=8)
        show_image(row[3], error[None].float(), "error (bright)", fontsize=8, error=True)
        show_image(row[4], mask[None], "local mask (bright: 1)", fontsize=8, error=True)
    figure.suptitle("The local feature mask next to the prediction error (the paper's Fig. 6)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    logger.info("Wrote the figure %s", path)
