"""What every dataset's preparation shares: the registry, raw-layout errors (one line per
missing or unreadable file), atomic writes, a dataset's part of a task and the task's datalist."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.evaluation.report import write_json

__all__ = [
    "DATASETS",
    "TASKS",
    "Dataset",
    "Part",
    "RawLayoutError",
    "prepare",
    "register",
    "save_png",
    "read_2d",
    "missing_lines",
    "raise_problems",
    "resized",
    "binary_mask",
    "check_pairs",
    "write_pairs",
]

logger = logging.getLogger(__name__)
PART_FILENAME = "part.json"


class RawLayoutError(ValueError):
    """A raw download that is not in the expected layout; one line per missing or unreadable file."""


@dataclass
class Part:
    """A dataset's share of a task's datalist, written as ``OUT/<dataset>/part.json``.

    Args:
        dataset: the dataset's name.
        role: ``"source"`` or ``"target"`` in its task, or ``"either"`` (a domain of a dataset
            that gives both directions).
        domain: the datalist's ``domains`` entry (modality, channels, intensity normalisation);
            for a part of registered pairs (role ``"paired"``), ``{"source": ..., "target": ...}``.
        labels: ``{"0": "background", ...}``.
        tensor_dim: 2 or 3.
        splits: ``{split: [entries]}``, paths relative to the task's output folder (for pairs, the
            datalist's ``paired`` section).
        regions: the datalist's ``regions`` (structures scored as unions of classes), if any.
    """

    dataset: str
    role: str
    domain: dict
    labels: dict
    tensor_dim: int
    splits: dict = field(default_factory=dict)
    regions: dict = field(default_factory=dict)


@dataclass
class Dataset:
    """A registered preparation.

    Args:
        name: the command-line name.
        task: the task it belongs to (a key of :data:`TASKS`).
        function: ``(raw, folder, **options) -> Part`` (or a list of parts, for a dataset that
            holds both centres of its task); writes the converted files under ``folder`` (or
            beside it, one folder per part).
    """

    name: str
    task: str
    function: Callable[..., Part]


DATASETS: dict[str, Dataset] = {}
# A task's datalists: for each, its file, its name and the dataset of each role. A dataset that
# holds two domains (MM-WHS: MR and CT) gives a datalist per direction.
TASKS: dict[str, list[dict[str, str]]] = {
    "polyp": [
        {"file": "datalist.json", "name": "cvc-clinic-to-etis-larib", "source": "cvc_clinic", "target": "etis_larib"}
    ],
    "fundus": [
        {"file": "datalist.json", "name": "refuge-zeiss-to-canon", "source": "refuge_zeiss", "target": "refuge_canon"}
    ],
    "cardiac": [  # SIFA's main direction first (MR labelled, CT the target), then the reverse
        {"file": "datalist.json", "name": "mmwhs-mr-to-ct", "source": "mmwhs_mr", "target": "mmwhs_ct"},
        {"file": "datalist_ct_to_mr.json", "name": "mmwhs-ct-to-mr", "source": "mmwhs_ct", "target": "mmwhs_mr"},
    ],
    "cardiac_sifa": [
        {"file": "datalist.json", "name": "mmwhs-sifa-mr-to-ct", "source": "mmwhs_sifa_mr", "target": "mmwhs_sifa_ct"},
        {
            "file": "datalist_ct_to_mr.json",
            "name": "mmwhs-sifa-ct-to-mr",
            "source": "mmwhs_sifa_ct",
            "target": "mmwhs_sifa_mr",
        },
    ],
    "abdomen": [  # SynthMix's direction first (Table 3: CT labelled, MR the target), then the reverse
        {"file": "datalist.json", "name": "btcv-ct-to-chaos-mr", "source": "btcv", "target": "chaos"},
        {"file": "datalist_mr_to_ct.json", "name": "chaos-mr-to-btcv-ct", "source": "chaos", "target": "btcv"},
    ],
    "liver": [  # DADR's direction: LiTS CT labelled, MR the target (CHAOS T2-SPIR: DADR's MR is not public)
        {"file": "datalist.json", "name": "lits-ct-to-chaos-mr-liver", "source": "lits", "target": "chaos_liver"}
    ],
    "brain": [{"file": "datalist.json", "name": "brats-t1-to-t2", "paired": "brats"}],  # RegGAN's pairs
}


def register(name: str, task: str) -> Callable[[Callable[..., Part]], Callable[..., Part]]:
    """Registers a dataset's preparation function under ``name`` (a decorator).

    Args:
        name: the command-line name.
        task: the task it belongs to.

    Returns:
        The decorator.
    """

    def decorate(function: Callable[..., Part]) -> Callable[..., Part]:
        DATASETS[name] = Dataset(name, task, function)
        return function

    return decorate


def save_png(path: Path, image: Image.Image) -> None:
    """Saves an image as PNG through a temporary file and a rename.

    Args:
        path: the destination (``.png``).
        image: the image.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)


def read_2d(path: Path, problems: list[str], what: str) -> Image.Image | None:
    """A 2D image file (TIFF, PNG, JPEG, BMP) read with PIL; a failure is added to ``problems``.

    Args:
        path: the file.
        problems: where a problem is recorded (one line naming the file).
        what: what the file should be, for the message.

    Returns:
        The image, loaded, or ``None``.
    """
    try:
        with Image.open(path) as image:
            image.load()  # decoded: the pixels stay after the file is closed
        return image
    except Exception as error:
        problems.append(f"{path}: cannot be read as {what} ({type(error).__name__}: {' '.join(str(error).split())}).")
        return None


def missing_lines(paths: Iterable[Path], what: str) -> list[str]:
    """One line per path that does not exist.

    Args:
        paths: the expected files or folders.
        what: what each should be, for the message.

    Returns:
        ``"<path>: missing (<what>)."`` lines.
    """
    return [f"{p}: missing ({what})." for p in paths if not p.exists()]


def raise_problems(raw: Path, dataset: str, problems: list[str]) -> None:
    """Raises :class:`RawLayoutError` with one line per problem, if there are any.

    Args:
        raw: the raw folder.
        dataset: the dataset's name.
        problems: the lines.

    Raises:
        RawLayoutError: when ``problems`` is not empty; nothing has been written.
    """
    if problems:
        raise RawLayoutError(
            f"{len(problems)} problem(s) with the {dataset} download in {raw}, one per line (nothing was written):\n"
            + "\n".join(problems)
        )


def resized(image: Image.Image, size: tuple[int, int] | None, mask: bool) -> Image.Image:
    """``image`` at ``size`` ``(H, W)`` (bilinear; nearest for masks); ``None`` or ``(0, 0)`` keeps it.

    Args:
        image: the image.
        size: ``(H, W)``.
        mask: whether it is a label mask.

    Returns:
        The resized image.
    """
    if not size or not all(size):
        return image
    return image.resize((size[1], size[0]), Image.NEAREST if mask else Image.BILINEAR)


def binary_mask(image: Image.Image) -> Image.Image:
    """A 0/255 (or 0/1) mask as a 0/1 label map (values above half the maximum are foreground).

    Args:
        image: the mask (grey or RGB).

    Returns:
        An 8-bit image of 0 and 1.
    """
    values = np.asarray(image.convert("L"))
    threshold = 127 if values.max() > 1 else 0
    return Image.fromarray((values > threshold).astype(np.uint8))


def prepare(dataset: str, raw: str | Path, out: str | Path, **options: Any) -> Path:
    """Prepares one dataset into ``out`` and writes its task's datalist once every part is there.

    Args:
        dataset: a registered dataset (:data:`DATASETS`).
        raw: the raw download, unpacked.
        out: the task's output folder.
        options: the dataset's options (e.g. ``size``, ``seed``).

    Returns:
        The datalist written, or the part when the task still misses a dataset.

    Raises:
        RawLayoutError: the raw folder is not the dataset's layout (one line per missing or
            unreadable file); nothing is written.
        KeyError: an unknown dataset.
        ValueError: an option the dataset does not have, or a bad value.
    """
    if dataset not in DATASETS:
        raise KeyError(f"Unknown dataset {dataset!r}; expected one of {', '.join(sorted(DATASETS))}.")
    spec, raw, out = DATASETS[dataset], Path(raw), Path(out)
    accepted = inspect.signature(spec.function).parameters
    for name in options:
        if name not in accepted:
            raise ValueError(f"--{name} does not apply to {dataset} (its options: {', '.join(list(accepted)[2:])}).")
    if not raw.is_dir():
        raise RawLayoutError(f"{raw}: not a folder; expected the {dataset} download, unpacked.")
    parts = spec.function(raw, out / dataset, **options)
    for part in parts if isinstance(parts, list) else [parts]:
        path = out / part.dataset / PART_FILENAME
        write_json(asdict(part), path)
        logger.info("Prepared %s: %s", part.dataset, path)
    return write_datalist(out, spec.task) or path


def write_datalist(out: Path, task: str) -> Path | None:
    """Writes the task's datalists (``out/datalist.json``, and the reverse direction where the task
    has one) from its parts, when all of them are there.

    A target's training and validation entries lose their labels (a part that can be either role
    keeps them on disk, for the other direction and for testing): unsupervised training never
    sees them.

    Args:
        out: the task's output folder.
        task: a key of :data:`TASKS`.

    Returns:
        The first datalist, or ``None`` (with a log line naming the command still to run).
    """
    written = []
    for spec in TASKS[task]:
        if "paired" in spec:  # one part holding both domains' registered pairs
            part = Part(**json.loads((out / spec["paired"] / PART_FILENAME).read_text()))
            datalist = {
                "name": spec["name"],
                "tensor_dim": part.tensor_dim,
                "labels": part.labels,
                "domains": part.domain,
                "paired": part.splits,
            }
            write_json(datalist, out / spec["file"])
            written.append(out / spec["file"])
            continue
        parts = {}
        for role in ("source", "target"):
            path = out / spec[role] / PART_FILENAME
            if not path.is_file():
                dataset = (
                    spec[role] if spec[role] in DATASETS else next(d.name for d in DATASETS.values() if d.task == task)
                )
                logger.info(
                    "%s still needs %s: python -m common.data.prepare %s --raw DIR --out %s",
                    task,
                    dataset,
                    dataset,
                    out,
                )
                return None
            parts[role] = Part(**json.loads(path.read_text()))
        source, target = parts["source"], parts["target"]
        if source.labels != target.labels or source.tensor_dim != target.tensor_dim:
            raise RawLayoutError(f"{out}: the parts of {task} disagree on labels or dimensionality.")
        unlabelled = {
            split: [{k: v for k, v in e.items() if k != "label"} for e in entries] if split != "test" else entries
            for split, entries in target.splits.items()
        }
        datalist = {
            "name": spec["name"],
            "tensor_dim": source.tensor_dim,
            "labels": source.labels,
            "domains": {"source": source.domain, "target": target.domain},
            "source": source.splits,
            "target": unlabelled,
        }
        if source.regions:
            datalist["regions"] = source.regions
        path = out / spec["file"]
        write_json(datalist, path)
        logger.info("Wrote the %s datalist %s", spec["name"], path)
        written.append(path)
    return written[0]


def check_pairs(dataset: str, pairs: dict[str, tuple[Path, Path]], problems: list[str]) -> None:
    """Reads every (image, mask) pair once, adding every unreadable or mismatched file to ``problems``.

    Nothing is kept in memory (a dataset of large photographs does not fit): :func:`write_pairs`
    reads them again once every file is known to be good.

    Args:
        dataset: the dataset's name, for the progress bar.
        pairs: ``{output name: (image file, mask file)}``.
        problems: where each problem is added (one line naming the file).
    """
    for image_file, mask_file in tqdm(
        pairs.values(), desc=f"checking {dataset}", unit="image", disable=len(pairs) < 20
    ):
        image, mask = read_2d(image_file, problems, "an RGB image"), read_2d(mask_file, problems, "a mask")
        if image is not None and mask is not None and image.size != mask.size:
            problems.append(f"{mask_file}: its size {mask.size} differs from its image's {image.size} ({image_file}).")


def write_pairs(
    dataset: str,
    pairs: dict[str, tuple[Path, Path]],
    folder: Path,
    size: tuple[int, int] | None,
    to_labels: Callable[[Image.Image], Image.Image],
) -> dict[str, dict]:
    """Writes each pair (checked by :func:`check_pairs`) as ``folder/images/<name>.png`` (RGB) and
    ``folder/labels/<name>.png`` (the label map) at ``size``.

    Args:
        dataset: the dataset's name, for the progress bar.
        pairs: ``{output name: (image file, mask file)}``.
        folder: the part's output folder.
        size: ``(H, W)``; ``None`` or ``(0, 0)`` keeps each size.
        to_labels: the mask's coding to label values (e.g. :func:`binary_mask`).

    Returns:
        ``{output name: {"image": ..., "label": ...}}``, paths relative to ``folder``'s parent.
    """
    entries = {}
    for name, (image_file, mask_file) in tqdm(
        pairs.items(), desc=f"writing {dataset}", unit="image", disable=len(pairs) < 20
    ):
        with Image.open(image_file) as image, Image.open(mask_file) as mask:
            save_png(folder / "images" / f"{name}.png", resized(image.convert("RGB"), size, mask=False))
            save_png(folder / "labels" / f"{name}.png", resized(to_labels(mask), size, mask=True))
        entries[name] = {"image": f"{folder.name}/images/{name}.png", "label": f"{folder.name}/labels/{name}.png"}
    return entries
