"""Segmentation evaluation of a release network that outputs a label map: per 3D volume (2D
predictions stacked back into the volume) and per class, Dice, ASSD and HD95
(:func:`common.metrics.evaluate_segmentation`), next to baselines such as no adaptation.

MONAI's ``MetricsSaver`` writes an evaluator's metrics per decollated batch item; here an item is
a whole volume assembled from 2D predictions, scored with the project's ASSD (the SIFA
definition, which MONAI's surface distance does not compute), so the tables are written here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from monai.data import CacheDataset
from torch import nn

from common.data.datalist import DatalistError, entries
from common.data.io import domain_transform
from common.evaluation.report import show_image, summarise, write_tables
from common.inference import translate
from common.metrics import evaluate_segmentation

__all__ = ["evaluate_segmenter", "SEGMENTATION_METRICS"]

logger = logging.getLogger(__name__)
SEGMENTATION_METRICS = ("dice", "assd", "hd95")
COLOURS = colormaps["tab10"]  # class c is drawn in colour c - 1


def _scores(
    prediction: np.ndarray,
    label: np.ndarray,
    classes: Mapping[str, str],
    spacing: tuple[float, ...] | None,
    prefix: str = "",
    regions: Mapping[str, list[int]] | None = None,
) -> dict[str, float]:
    """One volume's flat row: the class (or region) means and every class's Dice, ASSD and HD95."""
    result = evaluate_segmentation(prediction, label, classes, spacing, regions=regions)
    row = {f"{prefix}{metric}": result["mean"][metric] for metric in SEGMENTATION_METRICS}
    for name, scores in result["per_class"].items():
        row.update({f"{prefix}{metric}_{name}": scores[metric] for metric in SEGMENTATION_METRICS})
    return row


def _float_output(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x).float()

    return forward


def evaluate_segmenter(
    network: nn.Module,
    datalist: dict,
    output_dir: str | Path,
    baselines: Mapping[str, nn.Module] | None = None,
    domain: str = "target",
    split: str = "test",
    device: torch.device | str = "cpu",
    examples: int = 3,
) -> dict:
    """Segments every labelled volume of a split and scores it per volume and per class.

    2D networks segment volumes slice by slice; the slices are stacked back into the volume,
    which is scored as a whole, per class or per region where the datalist's ``regions`` names
    structures made of several classes (Dice over the volume; ASSD and HD95 in mm from the volume's
    voxel spacing, in pixels for 2D images without a physical spacing). Empty masks follow
    :func:`~common.metrics.evaluate_segmentation`: a missed or invented structure gives ASSD and
    HD95 ``inf``, which stays visible in the means. Every baseline (e.g. ``no_adaptation``: the
    source-trained segmenter on the untranslated image) is scored the same way, its keys
    prefixed with its name.

    Args:
        network: image batch ``(B, C, H, W)`` -> label map ``(B, 1, H, W)`` (the release network).
        datalist: a loaded datalist whose ``domain.split`` entries have ``label``.
        output_dir: where ``metrics.json``, ``metrics.csv`` (one row per volume, then the mean
            and std rows), ``metrics.png`` (per-class bars with standard deviations) and
            ``examples.png`` (image, baselines' and network's predictions, truth) go.
        baselines: other label-map networks to score next to ``network``, by name.
        domain: the domain of the evaluated images (``target`` for adaptation).
        split: the split.
        device: where to run.
        examples: how many volumes the examples figure shows.

    Returns:
        ``{"classes": [...], "baselines": [...], "per_volume": [...], "mean": {...}, "std": {...}}``
        with, per volume, ``dice``, ``assd``, ``hd95`` (class means) and ``dice_<class>`` etc.,
        and the same keys prefixed ``<baseline>_``.

    Raises:
        DatalistError: the split does not exist or an entry has no ``label``.
    """
    items = entries(datalist, domain, split)
    missing = [i for i, e in enumerate(items) if "label" not in e]
    if missing:
        raise DatalistError(f"`{domain}.{split}[{missing[0]}]` has no `label`: segmentation is scored against labels.")
    classes = {k: v for k, v in datalist["labels"].items() if int(k) > 0}
    models = [("model", "", network), *((name, f"{name}_", model) for name, model in (baselines or {}).items())]
    # Label maps as float: MONAI's slice inferer sums its windows in floating point.
    models = [(name, prefix, _float_output(model.to(device).eval())) for name, prefix, model in models]
    volumes = CacheDataset(
        [{"image": e["image"], "label": e["label"]} for e in items],
        domain_transform(datalist, domain, ("image", "label")),
        progress=False,
    )
    rows, shown = [], []
    for entry, item in zip(items, volumes, strict=True):
        image, label = item["image"], np.asarray(item["label"][0]).round().astype(np.int64)
        spacing = tuple(float(s) for s in item["label"].pixdim[: label.ndim]) if label.ndim == 3 else None
        row, predictions = {"volume": Path(entry["image"]).name}, {}
        for name, prefix, model in models:
            predictions[name] = translate(model, image.to(device))[0].cpu().numpy().round().astype(np.int64)
            row.update(_scores(predictions[name], label, classes, spacing, prefix, datalist.get("regions")))
        rows.append(row)
        if len(shown) < examples:
            shown.append((row, image, predictions, label))
    unit = "mm" if datalist["tensor_dim"] == 3 else "pixels"
    result = {
        "classes": list(datalist.get("regions") or classes.values()),
        "baselines": list(baselines or {}),
        "distance_unit": unit,
        **summarise(rows),
    }
    output_dir = write_tables(result, output_dir)
    _draw_bars(result, output_dir / "metrics.png")
    _draw_examples(shown, classes, output_dir / "examples.png")
    logger.info(
        "Segmentation %s.%s: %s",
        domain,
        split,
        {k: round(v, 4) for k, v in result["mean"].items() if k.split("_")[-1] in SEGMENTATION_METRICS},
    )
    logger.info("Wrote the figures %s and %s", output_dir / "metrics.png", output_dir / "examples.png")
    return result


def _draw_bars(result: dict, path: Path) -> None:
    """Per-class bars (mean over volumes, error bars one standard deviation), one panel per metric,
    the network next to each baseline."""
    names = ["model", *result["baselines"]]
    prefixes = ["", *(f"{b}_" for b in result["baselines"])]
    classes = result["classes"]
    fig = Figure(figsize=(4.2 * len(SEGMENTATION_METRICS), 3.6), dpi=100)
    axes = fig.subplots(1, len(SEGMENTATION_METRICS))
    width = 0.8 / len(names)
    for ax, metric in zip(axes, SEGMENTATION_METRICS, strict=True):
        for index, (name, prefix) in enumerate(zip(names, prefixes, strict=True)):
            keys = [f"{prefix}{metric}_{c}" for c in classes] + [f"{prefix}{metric}"]
            means = np.array([result["mean"][k] for k in keys])
            stds = np.array([result["std"][k] for k in keys])
            finite = np.isfinite(means)  # inf (a missed structure) would hide every other bar
            positions = np.arange(len(keys)) + (index - (len(names) - 1) / 2) * width
            ax.bar(
                positions[finite],
                means[finite],
                width,
                yerr=np.nan_to_num(stds[finite], posinf=0.0),
                capsize=2,
                label=name,
            )
            for x in positions[~finite]:
                ax.text(x, 0, "inf", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(np.arange(len(classes) + 1), [*classes, "mean"], rotation=30, fontsize=8)
        ax.set_title(metric.upper() + ("" if metric == "dice" else f" ({result['distance_unit']})"), fontsize=10)
        if metric == "dice":
            ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _draw_examples(shown: list, classes: Mapping[str, str], path: Path) -> None:
    """Per volume, its most labelled slice: the image, each model's prediction and the truth."""
    columns = 2 + (len(shown[0][2]) if shown else 0)
    fig = Figure(figsize=(3.0 * columns, 3.1 * max(1, len(shown))), dpi=100)
    axes = fig.subplots(max(1, len(shown)), columns, squeeze=False)
    for row, (scores, image, predictions, label) in enumerate(shown):
        z = int(np.argmax((label > 0).reshape(-1, label.shape[-1]).sum(0))) if label.ndim == 3 else None
        cut = (lambda a: a) if z is None else (lambda a: a[..., z])
        image = cut(image.detach().cpu())
        show_image(axes[row, 0], image, scores["volume"] + ("" if z is None else f" (slice {z})"))
        titles = [f"{n}: Dice {scores['dice' if n == 'model' else f'{n}_dice']:.3f}" for n in predictions]
        for column, (title, labels) in enumerate(
            zip([*titles, "truth"], [*predictions.values(), label], strict=True), start=1
        ):
            show_image(axes[row, column], image, title)
            overlay = np.ma.masked_equal(np.swapaxes(cut(labels), 0, 1), 0)
            axes[row, column].imshow(
                overlay, cmap=COLOURS, vmin=0.5, vmax=COLOURS.N + 0.5, alpha=0.6, interpolation="nearest"
            )
    fig.legend(
        handles=[Patch(color=COLOURS(int(v) - 1), label=name) for v, name in classes.items()],
        loc="lower center",
        ncol=min(len(classes), 6),
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path)
