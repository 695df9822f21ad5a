"""Translation evaluations written as JSON, CSV and a figure: a translation network against the synthetic
references, per volume (source, translation, reference, error rows), and translate-then-segment
adaptation on a labelled test split (image, translation, reference, prediction rows)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from monai.data import CacheDataset
from torch import nn

from common.data.datalist import DatalistError, entries
from common.data.io import domain_transform
from common.evaluation.report import middle, show_image, summarise, write_tables
from common.inference import translate
from common.metrics import dice_score, nmae, psnr, slice_ssim, ssim
from common.networks.pipeline import TranslateThenSegment

__all__ = ["evaluate_translation", "evaluate_adaptation"]

logger = logging.getLogger(__name__)
METRICS = ("nmae", "psnr", "ssim")


def evaluate_translation(
    network: nn.Module,
    datalist: dict,
    output_dir: str | Path,
    domain: str = "source",
    split: str = "test",
    device: torch.device | str = "cpu",
    examples: int = 3,
) -> dict:
    """Translates every ``domain`` image of ``split`` and scores it against its ``reference``
    (the same subject rendered in the other domain), per volume, next to the identity baseline
    (the untranslated image scored the same way).

    NMAE and PSNR are computed over the subject's body: the pixels where the input's first
    channel is not the background value -1 (the same anatomy occupies the same pixels in both
    renderings). SSIM is RegGAN's 2D SSIM: per 2D slice (volumes are cut along their last axis),
    its map averaged within the body, then over the slices (``ssim``); the SSIM of the whole
    image, with a 7 x 7 x 7 window for volumes, is kept as ``ssim_whole`` (the ``ssim`` of
    versions before 0.4). Both are averaged over channels. Where the entries have a ``label``,
    the NMAE within each labelled structure is added as ``nmae_<name>`` (the datalist's label
    names; NaN for an image without that structure, left out of the mean): whether a
    translation renders a small structure, e.g. a lesion, that the body's NMAE hardly weighs.

    Args:
        network: the translation network.
        datalist: a loaded datalist whose ``split`` entries have ``reference``.
        output_dir: where ``metrics.json``, ``metrics.csv``, ``examples.png`` and its arrays
            (``examples.npz``: ``names``, ``source_i``, ``translation_i``, ``reference_i``, the
            middle slice of volumes) go.
        domain: the input domain (``source`` for an A-to-B network), or ``paired`` for the
            ``paired`` section (its ``image`` translated and scored against its aligned ``reference``).
        split: the split to evaluate.
        device: where to run.
        examples: how many subjects the figure shows.

    Returns:
        ``{"per_volume": [...], "mean": {...}, "std": {...}}`` with ``nmae``, ``psnr``, ``ssim``,
        ``ssim_whole`` and the same with the prefix ``identity_``.

    Raises:
        DatalistError: the split does not exist or its entries have no ``reference``.
    """
    own = "source" if domain == "paired" else domain  # a pair's image is in the source domain
    other = "target" if own == "source" else "source"
    items = entries(datalist, domain, split)
    if any("reference" not in e for e in items):
        raise DatalistError(f"`{domain}.{split}` entries need a `reference` (the subject in the other domain).")
    labelled = all("label" in e for e in items)
    keys = ("image", "label") if labelled else ("image",)
    structures = {int(k): name for k, name in datalist["labels"].items() if int(k) > 0} if labelled else {}
    inputs = CacheDataset(
        [{k: e[k] for k in keys} for e in items], domain_transform(datalist, own, keys), progress=False
    )
    references = CacheDataset(
        [{"image": e["reference"]} for e in items], domain_transform(datalist, other, ("image",)), progress=False
    )
    network = network.to(device).eval()
    rows, shown = [], []
    for entry, source, reference in zip(items, inputs, references, strict=True):
        image = source["image"]
        fake = translate(network, image.to(device)).cpu().clamp(-1, 1)
        real = reference["image"]
        body = image[0] > -1
        volume = Path(entry["image"]).name
        row = {"volume": volume}
        for prefix, candidate in (("", fake), ("identity_", image)):
            mask = body.expand_as(candidate)
            row[f"{prefix}nmae"] = nmae(candidate, real, mask)
            row[f"{prefix}psnr"] = psnr(candidate, real, mask)
            pairs = list(zip(candidate, real, strict=True))  # per channel
            row[f"{prefix}ssim"] = float(np.mean([slice_ssim(c, r, body) for c, r in pairs]))
            row[f"{prefix}ssim_whole"] = float(np.mean([ssim(c, r) for c, r in pairs]))
            for value, name in structures.items():
                inside = (source["label"][0].round() == value).expand_as(candidate)
                row[f"{prefix}nmae_{name}"] = nmae(candidate, real, inside) if inside.any() else math.nan
        rows.append(row)
        if len(shown) < examples:
            shown.append((volume, image, fake, real))
    result = summarise(rows)
    output_dir = write_tables(result, output_dir)
    _draw(shown, result, output_dir / "examples.png")
    np.savez_compressed(
        output_dir / "examples.npz",
        names=np.array([name for name, *_ in shown]),
        **{
            f"{kind}_{n}": middle(item[i + 1])
            for n, item in enumerate(shown)
            for i, kind in enumerate(("source", "translation", "reference"))
        },
    )
    logger.info("Translation %s: %s", split, {k: round(v, 4) for k, v in result["mean"].items()})
    logger.info("Wrote the figure %s and its arrays (examples.npz)", output_dir / "examples.png")
    return result


def _draw(shown: list, result: dict, path: Path) -> None:
    """Rows of source, translation, reference and |translation - reference| (middle slice of volumes)."""
    fig = Figure(figsize=(12, 3.1 * len(shown)), dpi=100)
    axes = fig.subplots(len(shown), 4, squeeze=False)
    for row, (name, source, fake, real) in enumerate(shown):
        panels = [source, fake, real, (fake - real).abs()]
        titles = [name, "translation", "reference", "|translation - reference|"]
        for column, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            show_image(axes[row, column], panel, title, error=column == 3)
    mean = result["mean"]
    fig.suptitle(
        f"NMAE {mean['nmae']:.4f} (identity {mean['identity_nmae']:.4f})   PSNR {mean['psnr']:.2f} dB "
        f"(identity {mean['identity_psnr']:.2f})   SSIM {mean['ssim']:.3f} (identity {mean['identity_ssim']:.3f})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)


def evaluate_adaptation(
    pipeline: TranslateThenSegment,
    datalist: dict,
    output_dir: str | Path,
    domain: str = "target",
    split: str = "test",
    device: torch.device | str = "cpu",
    examples: int = 3,
) -> dict:
    """Scores translate-then-segment on a labelled split, and how well the translation kept the
    content, per image (2D; volumes slice by slice and scored per volume).

    Per image, with ``x`` the ``domain`` image, ``t = translator(x)`` and ``r`` its ``reference``
    (the same subject rendered in the segmenter's domain, when the datalist has it):

    - ``dice``: the segmentation of ``t`` against the true label (the paper's Table 1);
      ``identity_dice`` the same for ``x`` untranslated (direct transfer);
    - ``reference_dice``: the segmentation of ``r`` against the label, the ceiling that a
      perfect translation would reach;
    - ``agreement_dice``: the segmentation of ``t`` against that of ``r``, content preservation
      as the segmenter sees it;
    - ``nmae`` and ``ssim`` of ``t`` against ``r`` over the whole image (``identity_nmae``,
      ``identity_ssim`` for ``x``).

    Dice is the mean over the foreground classes of the datalist's ``labels``.

    Args:
        pipeline: the translator and segmenter (``translator`` may be the identity).
        datalist: a loaded datalist whose ``domain.split`` entries have ``label`` (and
            ``reference`` for the content metrics).
        output_dir: where ``metrics.json``, ``metrics.csv``, ``examples.png`` and
            ``examples.npz`` (``names``, ``source_i``, ``translation_i``, ``reference_i``) go.
        domain: the domain whose images are translated (``target``).
        split: the split to evaluate.
        device: where to run.
        examples: how many images the figure shows.

    Returns:
        ``{"per_volume": [...], "mean": {...}, "std": {...}}``.

    Raises:
        DatalistError: the split does not exist or its entries have no ``label``.
    """
    other = "source" if domain == "target" else "target"
    items = entries(datalist, domain, split)
    if any("label" not in e for e in items):
        raise DatalistError(f"`{domain}.{split}` entries need a `label` to evaluate segmentation.")
    with_reference = all("reference" in e for e in items)
    classes = [int(k) for k in datalist["labels"] if int(k) > 0]
    inputs = CacheDataset(
        [{"image": e["image"], "label": e["label"]} for e in items],
        domain_transform(datalist, domain, ("image", "label")),
        progress=False,
    )
    references = CacheDataset(
        [{"image": e["reference"]} for e in items] if with_reference else [],
        domain_transform(datalist, other, ("image",)),
        progress=False,
    )
    pipeline = pipeline.to(device).eval()

    def segment(image: torch.Tensor) -> np.ndarray:
        return translate(pipeline.segmenter, image.to(device)).argmax(dim=0).cpu().numpy()

    def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
        return float(np.mean([dice_score(prediction == c, truth == c) for c in classes]))

    rows, shown = [], []
    for index, (entry, item) in enumerate(zip(items, inputs, strict=True)):
        image, label = item["image"], np.asarray(item["label"][0]).round().astype(int)
        translation = translate(pipeline.translator, image.to(device)).cpu().clamp(-1, 1)
        prediction = segment(translation)
        row = {
            "volume": Path(entry["image"]).name,
            "dice": dice(prediction, label),
            "identity_dice": dice(segment(image), label),
        }
        reference = None
        if with_reference:
            reference = references[index]["image"]
            reference_prediction = segment(reference)
            row["reference_dice"] = dice(reference_prediction, label)
            row["agreement_dice"] = dice(prediction, reference_prediction)
            whole = torch.ones_like(reference, dtype=torch.bool)
            for prefix, candidate in (("", translation), ("identity_", image)):
                row[f"{prefix}nmae"] = nmae(candidate, reference, whole)
                row[f"{prefix}ssim"] = float(np.mean([ssim(c, r) for c, r in zip(candidate, reference, strict=True)]))
        rows.append(row)
        if len(shown) < examples:
            shown.append((row["volume"], image, translation, reference, prediction, label))
    result = summarise(rows)
    output_dir = write_tables(result, output_dir)
    _draw_adaptation(shown, result, output_dir / "examples.png")
    arrays = {}
    for n, (_, image, translation, reference, *_) in enumerate(shown):
        arrays.update({f"source_{n}": middle(image), f"translation_{n}": middle(translation)})
        arrays[f"reference_{n}"] = middle(reference if reference is not None else image)
    np.savez_compressed(output_dir / "examples.npz", names=np.array([item[0] for item in shown]), **arrays)
    logger.info("Adaptation %s.%s: %s", domain, split, {k: round(v, 4) for k, v in result["mean"].items()})
    logger.info("Wrote the figure %s and its arrays (examples.npz)", output_dir / "examples.png")
    return result


def _draw_adaptation(shown: list, result: dict, path: Path) -> None:
    """Rows of input, translation, reference and the prediction on the translation (contours:
    white the true label, yellow the prediction)."""
    fig = Figure(figsize=(12, 3.1 * len(shown)), dpi=100)
    axes = fig.subplots(len(shown), 4, squeeze=False)
    for row, (name, image, translation, reference, prediction, label) in enumerate(shown):
        panels = [image, translation, reference if reference is not None else image, translation]
        titles = [
            name,
            "translation",
            "reference" if reference is not None else "(no reference)",
            "prediction (yellow) vs label (white)",
        ]
        for column, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            ax = axes[row, column]
            show_image(ax, panel, title)
            if column == 3:
                truth, guess = (a[..., a.shape[-1] // 2] if a.ndim == 3 else a for a in (label, prediction))
                ax.contour(np.swapaxes(truth > 0, 0, 1), levels=[0.5], colors="white", linewidths=1)
                if guess.any():
                    ax.contour(np.swapaxes(guess > 0, 0, 1), levels=[0.5], colors="yellow", linewidths=1)
    mean = result["mean"]
    title = f"Dice {mean['dice']:.3f} (direct transfer {mean['identity_dice']:.3f})"
    if "agreement_dice" in mean:
        title += (
            f"   reference Dice {mean['reference_dice']:.3f}   agreement {mean['agreement_dice']:.3f}"
            f"   NMAE {mean['nmae']:.4f} (identity {mean['identity_nmae']:.4f})"
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
