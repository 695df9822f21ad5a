"""What every evaluation writes: per-volume rows with their mean and standard deviation, as JSON
and CSV, and images drawn from channel-first tensors in [-1, 1]."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes

__all__ = ["summarise", "json_text", "write_json", "write_tables", "as_slices", "middle", "show_image"]

logger = logging.getLogger(__name__)


def summarise(rows: list[dict]) -> dict:
    """Per-volume rows with their mean and standard deviation per metric.

    Args:
        rows: one dictionary per volume: ``volume`` (its name) and the metrics.

    Returns:
        ``{"per_volume": rows, "mean": {...}, "std": {...}}``; a metric that is ``inf`` in some
        volume (a distance to a structure that was missed) has mean and std ``inf``; a ``NaN``
        (a metric that does not apply to that volume) is left out of the mean and std.
    """
    keys = [k for k in rows[0] if k != "volume"]
    values = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    values = {k: v[~np.isnan(v)] for k, v in values.items()}
    finite = {k: bool(np.isfinite(v).all()) for k, v in values.items()}
    return {
        "per_volume": rows,
        "mean": {k: float(np.mean(v)) if v.size else math.nan for k, v in values.items()},
        "std": {k: (float(np.std(v)) if finite[k] else math.inf) if v.size else math.nan for k, v in values.items()},
    }


def json_text(obj: object) -> str:
    """``obj`` as JSON laid out as the MONAI model zoo's ``pretty-format-json`` pre-commit hook
    writes it (``--indent=4 --no-sort-keys``: four spaces, keys in order, ASCII escapes, a final
    newline), so that a bundle's JSON passes the zoo's hooks unchanged.

    Args:
        obj: JSON values (NaN and infinity are written as ``NaN``/``Infinity``, as ``json`` reads them).

    Returns:
        The text.
    """
    return json.dumps(obj, indent=4) + "\n"


def write_json(obj: dict, path: str | Path) -> Path:
    """Writes ``obj`` as JSON (:func:`json_text`) through a temporary file, flushed to disk, and a
    rename (the folder is created): a crash leaves the previous file or the new one.

    Returns:
        The path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(temporary, "w") as file:
        file.write(json_text(obj))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    return path


def write_tables(result: dict, output_dir: str | Path) -> Path:
    """Writes ``metrics.json`` and ``metrics.csv`` (one row per volume, then the mean and std
    rows), each through a temporary file and a rename.

    Args:
        result: :func:`summarise`'s output, possibly with more keys (kept in the JSON).
        output_dir: the folder (created).

    Returns:
        The folder.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["volume", *result["mean"]], lineterminator="\n")
    writer.writeheader()
    writer.writerows(result["per_volume"])
    writer.writerow({"volume": "mean", **result["mean"]})
    writer.writerow({"volume": "std", **result["std"]})
    for name, text in (("metrics.json", json_text(result)), ("metrics.csv", table.getvalue())):
        temporary = output_dir / f".{name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, output_dir / name)
    logger.info("Wrote %s and %s", output_dir / "metrics.json", output_dir / "metrics.csv")
    return output_dir


def as_slices(image: torch.Tensor) -> torch.Tensor:
    """A batch of 2D images from one image or volume.

    Args:
        image: ``(C, H, W)`` or a volume ``(C, H, W, D)``.

    Returns:
        ``(1, C, H, W)``, or the volume's slices ``(D, C, H, W)``.
    """
    image = torch.as_tensor(image).as_subclass(torch.Tensor)
    return image.permute(3, 0, 1, 2) if image.ndim == 4 else image[None]


def middle(image: torch.Tensor) -> np.ndarray:
    """A 2D image ``(C, H, W)`` as it is, the middle slice of a volume ``(C, H, W, D)``.

    Args:
        image: the image or volume.

    Returns:
        ``(C, H, W)`` as a numpy array.
    """
    array = image.detach().cpu().numpy()
    return array[..., array.shape[-1] // 2] if array.ndim == 4 else array


def show_image(ax: Axes, image: torch.Tensor | np.ndarray, title: str, fontsize: int = 9, error: bool = False) -> None:
    """Draws a channel-first image on a matplotlib axis: the middle slice of a volume, RGB as
    colour, one channel in grey; values in [-1, 1] (or, with ``error``, an error map on [0, 1] in magma).

    Args:
        ax: the axis.
        image: ``(C, H, W)`` or ``(C, H, W, D)``.
        title: the axis title.
        fontsize: of the title.
        error: draw an error map instead of an image.
    """
    array = middle(torch.as_tensor(image))
    display = np.moveaxis(array, 0, -1) if array.shape[0] == 3 else array[0]
    if not error:
        display = ((display + 1) / 2).clip(0, 1)
    ax.imshow(np.swapaxes(display, 0, 1), cmap="magma" if error else "gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")
