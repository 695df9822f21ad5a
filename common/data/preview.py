"""A picture of a dataset: one test subject per domain with its label and its reference rendering.

``python -m common.data.preview DATALIST [--out PNG]`` (also ``--preview`` of
``common.data.synthetic``) draws, for each domain, the image, the image with its label map
overlaid, and the same subject rendered in the other domain; for paired datasets the source
image, the (misaligned) target and the aligned reference. 3D volumes show their middle slice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from common.data.datalist import load_datalist
from common.data.io import LoadImageByTyped, intensity_transform

__all__ = ["preview", "main"]


def preview(datalist_path: str | Path, out: str | Path) -> Path:
    """Draws the dataset's first test subjects into a PNG.

    Args:
        datalist_path: the datalist.
        out: the PNG to write.

    Returns:
        The path written.
    """
    datalist = load_datalist(datalist_path)
    labels = {int(k): v for k, v in datalist["labels"].items()}
    if "paired" in datalist:
        entry = datalist["paired"]["test"][0]
        rows = [
            (
                "paired",
                [
                    ("source image", entry["image"], "source"),
                    ("target (as trained on)", entry["target"], "target"),
                    ("aligned reference", entry["reference"], "target"),
                ],
                entry.get("label"),
            )
        ]
    else:
        rows = []
        for domain, other in (("source", "target"), ("target", "source")):
            entry = datalist[domain]["test"][0]
            rows.append(
                (
                    domain,
                    [
                        (f"{domain} image", entry["image"], domain),
                        (f"reference ({other} rendering)", entry["reference"], other),
                    ],
                    entry["label"],
                )
            )
    dim = datalist["tensor_dim"]
    columns = max(len(panels) for _, panels, _ in rows) + 1
    fig = Figure(figsize=(3.2 * columns, 3.2 * len(rows)), dpi=100)
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for row, (_, panels, label_path) in enumerate(rows):
        label = _load(label_path, dim)[0] if label_path else None
        first = None
        for column, (title, path, domain) in enumerate(panels):
            image = _display(_load(path, dim), datalist["domains"][domain]["intensity"])
            first = image if first is None else first
            _show(axes[row, column + (column > 0)], image, title)
        overlay = axes[row, 1]
        _show(overlay, first, f"{panels[0][0]} + label")
        if label is not None:
            masked = np.ma.masked_where(label == 0, label)
            overlay.imshow(
                np.swapaxes(masked, 0, 1),
                cmap="tab10",
                vmin=0,
                vmax=max(9, max(labels)),
                alpha=0.45,
                interpolation="nearest",
            )
        for column in range(len(panels) + 1, columns):
            axes[row, column].axis("off")
    names = ", ".join(f"{k} {v}" for k, v in labels.items() if k)
    fig.suptitle(f"{datalist.get('name', 'dataset')}: {names}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    return out


def _load(path: str, tensor_dim: int) -> np.ndarray:
    """The image, channel first; the middle slice (last axis) of a 3D volume."""
    image = np.asarray(LoadImageByTyped("image")({"image": path})["image"])
    return image[..., image.shape[-1] // 2] if tensor_dim == 3 else image


def _display(image: np.ndarray, intensity: dict) -> np.ndarray:
    """The image normalised as training sees it, mapped to [0, 1], channels last for RGB."""
    normalised = np.asarray(intensity_transform("image", intensity)({"image": image})["image"])
    display = (normalised + 1) / 2
    return np.moveaxis(display, 0, -1) if display.shape[0] == 3 else display[0]


def _show(ax: Axes, image: np.ndarray, title: str) -> None:
    ax.imshow(np.swapaxes(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def main(argv: list[str] | None = None) -> None:
    """Command line: draw a datalist's preview."""
    parser = argparse.ArgumentParser(prog="python -m common.data.preview", description=__doc__.splitlines()[0])
    parser.add_argument("datalist", type=Path)
    parser.add_argument(
        "--out", type=Path, default=None, help="PNG to write (default: preview.png beside the datalist)"
    )
    args = parser.parse_args(argv)
    print(preview(args.datalist, args.out or args.datalist.parent / "preview.png"))


if __name__ == "__main__":
    main()
