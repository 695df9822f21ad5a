"""Per-volume evaluation of a translation network against the synthetic references, written
as JSON, CSV and a figure of example rows (source, translation, reference, error)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from matplotlib.figure import Figure
import numpy as np
import torch
from monai.data import CacheDataset
from torch import nn

from common.data.datalist import DatalistError, entries
from common.data.io import domain_transform
from common.inference import translate
from common.metrics import nmae, psnr, ssim

__all__ = ["evaluate_translation"]

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
    renderings). SSIM is over the whole image (3D for volumes), averaged over channels.

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
        ``{"per_volume": [...], "mean": {...}, "std": {...}}`` with ``nmae``, ``psnr``, ``ssim``
        and ``identity_nmae``, ``identity_psnr``, ``identity_ssim``.

    Raises:
        DatalistError: the split does not exist or its entries have no ``reference``.
    """
    own = "source" if domain == "paired" else domain  # a pair's image is in the source domain
    other = "target" if own == "source" else "source"
    items = entries(datalist, domain, split)
    if any("reference" not in e for e in items):
        raise DatalistError(f"`{domain}.{split}` entries need a `reference` (the subject in the other domain).")
    inputs = CacheDataset([{"image": e["image"]} for e in items], domain_transform(datalist, own, ("image",)),
                          progress=False)
    references = CacheDataset([{"image": e["reference"]} for e in items],
                              domain_transform(datalist, other, ("image",)), progress=False)
    network = network.to(device).eval()
    rows, shown = [], []
    for entry, source, reference in zip(items, inputs, references):
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
            row[f"{prefix}ssim"] = float(np.mean([ssim(c, r) for c, r in zip(candidate, real)]))  # per channel
        rows.append(row)
        if len(shown) < examples:
            shown.append((volume, image, fake, real))
    keys = [k for k in rows[0] if k != "volume"]
    result = {
        "per_volume": rows,
        "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
        "std": {k: float(np.std([r[k] for r in rows])) for k in keys},
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    with open(output_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["volume", *keys])
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"volume": "mean", **result["mean"]})
        writer.writerow({"volume": "std", **result["std"]})
    _draw(shown, result, output_dir / "examples.png")
    np.savez_compressed(output_dir / "examples.npz", names=np.array([name for name, *_ in shown]),
                        **{f"{kind}_{n}": _middle(item[i + 1]) for n, item in enumerate(shown)
                           for i, kind in enumerate(("source", "translation", "reference"))})
    logger.info("Translation %s: %s", split, {k: round(v, 4) for k, v in result["mean"].items()})
    logger.info("Wrote %s, %s, the figure %s and its arrays (examples.npz)", output_dir / "metrics.json",
                output_dir / "metrics.csv", output_dir / "examples.png")
    return result


def _middle(image: torch.Tensor) -> np.ndarray:
    """A 2D image ``(C, H, W)`` as it is, the middle slice of a volume ``(C, H, W, D)``."""
    array = image.numpy()
    return array[..., array.shape[-1] // 2] if array.ndim == 4 else array


def _draw(shown: list, result: dict, path: Path) -> None:
    """Rows of source, translation, reference and |translation - reference| (middle slice of volumes)."""
    fig = Figure(figsize=(12, 3.1 * len(shown)), dpi=100)
    axes = fig.subplots(len(shown), 4, squeeze=False)
    for row, (name, source, fake, real) in enumerate(shown):
        panels = [source, fake, real, (fake - real).abs()]
        titles = [name, "translation", "reference", "|translation - reference|"]
        for column, (panel, title) in enumerate(zip(panels, titles)):
            array = panel.numpy()
            array = array[..., array.shape[-1] // 2] if array.ndim == 4 else array
            display = np.moveaxis(array, 0, -1) if array.shape[0] == 3 else array[0]
            if column < 3:
                display = (display + 1) / 2
            axes[row, column].imshow(np.swapaxes(display, 0, 1), cmap="gray" if column < 3 else "magma",
                                     vmin=0, vmax=1, interpolation="nearest")
            axes[row, column].set_title(title, fontsize=9)
            axes[row, column].axis("off")
    mean = result["mean"]
    fig.suptitle(
        f"NMAE {mean['nmae']:.4f} (identity {mean['identity_nmae']:.4f})   PSNR {mean['psnr']:.2f} dB "
        f"(identity {mean['identity_psnr']:.2f})   SSIM {mean['ssim']:.3f} (identity {mean['identity_ssim']:.3f})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
