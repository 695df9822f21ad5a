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

:func:`evaluate_feature_gap` asks the question behind ``d1_target``: is ``D1`` at chance because
the features are aligned, or because ``D1`` lost the game? A fresh discriminator of ``D1``'s
architecture is trained on the frozen segmenter's features of the (translated) source and target
*training* images, then tells the held-out test volumes apart; its uncertainty mask is scored
against the errors as above.

Target labels are read here, for evaluation only.
"""

from __future__ import annotations

import copy
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
from common.data.datasets import image_dataset
from common.data.io import domain_transform
from common.engines.global_local import LocalAlignmentTrainer
from common.evaluation.report import as_slices, show_image, summarise, write_tables
from common.networks.global_local import local_feature_mask, reweight_features

__all__ = ["evaluate_local_mask", "evaluate_feature_gap"]

logger = logging.getLogger(__name__)


def _labelled_target(datalist: dict, split: str) -> tuple[list[dict], CacheDataset]:
    """The target ``split`` entries and their loaded images and labels.

    Raises:
        DatalistError: entries without a ``label``.
    """
    items = entries(datalist, "target", split)
    if not items or any("label" not in e for e in items):
        raise DatalistError(f"`target.{split}` entries need a `label` to score the local mask against the errors.")
    volumes = CacheDataset(
        [{"image": e["image"], "label": e["label"]} for e in items],
        domain_transform(datalist, "target", ("image", "label")),
        progress=False,
    )
    return items, volumes


def _mask_scores(mask: torch.Tensor, error: torch.Tensor, structures: torch.Tensor, prefix: str = "") -> dict:
    """A mask at image size against the error map: its ROC AUC as an error detector (NaN without
    both right and wrong pixels) and its mean on the structures and the background."""
    return {
        f"{prefix}mask_error_auc": (
            float(compute_roc_auc(mask.flatten(), error.flatten().float()))
            if error.any() and (~error).any()
            else math.nan
        ),
        f"{prefix}mask_on_structures": float(mask[structures].mean()) if structures.any() else math.nan,
        f"{prefix}mask_on_background": float(mask[~structures].mean()) if (~structures).any() else math.nan,
    }


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
    items, volumes = _labelled_target(datalist, split)
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
                **_mask_scores(m, error, structures),
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


def _features(features: nn.Module, images: torch.Tensor, translator: nn.Module | None, batch: int) -> torch.Tensor:
    """``S_E(translator(images))`` in batches, on the images' device, as float32."""
    out = []
    for chunk in images.split(batch):
        if translator is not None:
            chunk = translator(chunk).float()
        out.append(features(chunk).float())
    return torch.cat(out)


def _domain_auc(source_probability: torch.Tensor, target_probability: torch.Tensor) -> float:
    """The ROC AUC of a discriminator's per-location probability for "target" separating the
    target locations (positives) from the source locations."""
    scores = torch.cat([source_probability.flatten(), target_probability.flatten()]).cpu()
    labels = torch.cat([torch.zeros(source_probability.numel()), torch.ones(target_probability.numel())])
    return float(compute_roc_auc(scores, labels))


def evaluate_feature_gap(
    features: nn.Module,
    segmenter: nn.Module,
    discriminator: nn.Module,
    datalist: dict,
    output_dir: str | Path,
    translator: nn.Module | None = None,
    trained: nn.Module | None = None,
    mask: str = "entropy",
    iterations: int = 1000,
    learning_rate: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.99),
    batch_size: int = 8,
    max_slices: int = 512,
    split: str = "test",
    device: torch.device | str = "cpu",
    seed: int = 0,
    examples: int = 3,
) -> dict:
    """How far the segmenter's source and target features still differ per location, measured
    by a fresh ``D1`` trained on the frozen features, and where that discriminator's local mask
    falls against the segmenter's errors.

    A fresh copy of ``discriminator`` (its parameters re-initialised, ``seed``) is trained for
    ``iterations`` steps of Adam with binary cross entropy (source 0, target 1), as ``D1`` in
    training, on ``features`` of at most ``max_slices`` evenly spaced training slices per domain
    (the source's translated by ``translator``; labels are not read). Per target ``split``
    volume (labelled, for scoring only), against every location of the source ``split`` volumes:

    - ``fresh_domain_auc`` / ``trained_domain_auc``: the ROC AUC of the fresh / the trained ``D1``
      (``trained``, when given) separating this volume's feature locations from the source's
      (0.5: the features are indistinguishable per location, 1: fully separable);
    - ``fresh_d1_target``: the fresh discriminator's mean probability for "target" on the volume;
    - ``fresh_mask_error_auc``, ``fresh_mask_on_structures``, ``fresh_mask_on_background``: its
      local mask (``mask``) against the errors of ``segmenter`` (the release network, unchanged),
      as :func:`evaluate_local_mask` scores them.

    Args:
        features: ``S_E``.
        segmenter: the release target segmenter (class logits).
        discriminator: a module of ``D1``'s architecture; a re-initialised copy is trained, it is
            left as it is.
        datalist: a loaded datalist whose target ``split`` entries are labelled.
        output_dir: where ``metrics.json``/``metrics.csv`` and ``mask_error.png`` go.
        translator: the source-to-target translator the segmenter was trained behind, or ``None``.
        trained: the trained ``D1``, or ``None``.
        mask: the local mask's mode (``entropy`` or ``certainty``).
        iterations: the fresh discriminator's training steps.
        learning_rate: its Adam learning rate.
        betas: its Adam betas.
        batch_size: slices per domain per step.
        max_slices: training slices per domain, at most.
        split: the held-out split.
        device: where to run.
        seed: of the re-initialisation and the batches.
        examples: volumes drawn.

    Returns:
        ``{"per_volume": [...], "mean": {...}, "std": {...}}``.

    Raises:
        DatalistError: target entries of the split without a ``label``.
    """
    items, volumes = _labelled_target(datalist, split)
    modules = [m for m in (features, segmenter, translator, trained) if m is not None]
    modes = [m.training for m in modules]
    for module in modules:
        module.to(device).eval()
    generator = torch.Generator().manual_seed(seed)

    def slices(domain: str, split: str, limit: int | None = None) -> torch.Tensor:
        data = image_dataset(datalist, domain, split)
        keep = torch.linspace(0, len(data) - 1, min(limit or len(data), len(data))).round().long().unique()
        return torch.stack([torch.as_tensor(data[int(i)]["image"]).as_subclass(torch.Tensor) for i in keep]).to(device)

    with torch.no_grad():
        f_source = _features(features, slices("source", "training", max_slices), translator, batch_size)
        f_target = _features(features, slices("target", "training", max_slices), None, batch_size)
        f_held_out = _features(features, slices("source", split), translator, batch_size)

    torch.manual_seed(seed)
    fresh = copy.deepcopy(discriminator).to(device).train()
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    optimizer = torch.optim.Adam(fresh.parameters(), lr=learning_rate, betas=betas)
    for _ in range(iterations):
        s = f_source[torch.randint(len(f_source), (batch_size,), generator=generator)]
        t = f_target[torch.randint(len(f_target), (batch_size,), generator=generator)]
        loss = LocalAlignmentTrainer.bce(fresh(s), source=True) + LocalAlignmentTrainer.bce(fresh(t), source=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    fresh.eval()

    rows, shown = [], []
    with torch.no_grad():
        p_source = torch.sigmoid(fresh(f_held_out))
        p_source_trained = torch.sigmoid(trained(f_held_out).float()) if trained is not None else None
        for entry, volume in zip(items, volumes, strict=True):
            x = as_slices(volume["image"]).to(device)
            label = as_slices(volume["label"])[:, 0].round().long()
            f = _features(features, x, None, batch_size)
            logits = fresh(f)
            prediction = torch.cat([segmenter(chunk).float().argmax(1) for chunk in x.split(batch_size)]).cpu()
            m = F.interpolate(local_feature_mask(logits, mask), size=tuple(x.shape[2:]), mode="nearest")[:, 0].cpu()
            error, structures = prediction != label, label > 0
            row = {
                "volume": Path(entry["image"]).name,
                "fresh_domain_auc": _domain_auc(p_source, torch.sigmoid(logits)),
                "fresh_d1_target": float(torch.sigmoid(logits).mean()),
                **_mask_scores(m, error, structures, prefix="fresh_"),
            }
            if p_source_trained is not None:
                row["trained_domain_auc"] = _domain_auc(p_source_trained, torch.sigmoid(trained(f).float()))
            rows.append(row)
            if len(shown) < examples:
                k = x.shape[0] // 2
                shown.append((row["volume"], x[k].cpu(), label[k], prediction[k], error[k], m[k]))
    for module, mode in zip(modules, modes, strict=True):
        module.train(mode)
    result = summarise(rows)
    output_dir = write_tables(result, output_dir)
    _draw(shown, output_dir / "mask_error.png", "A fresh D1's local mask next to the prediction error")
    logger.info("Feature gap on target.%s: %s", split, {k: round(v, 4) for k, v in result["mean"].items()})
    return result


def _draw(
    shown: list, path: Path, title: str = "The local feature mask next to the prediction error (the paper's Fig. 6)"
) -> None:
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
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    logger.info("Wrote the figure %s", path)
