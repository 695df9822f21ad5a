"""Loading and checking datalists (DESIGN.md section 6), with errors that name the file and entry.

A datalist is one JSON file; image paths are relative to it::

    {"name": ..., "tensor_dim": 2 | 3, "labels": {"0": "background", "1": "liver", ...},
     "domains": {"source": {"modality": "CT", "channels": 1, "intensity": {"range": [-250, 350]}},
                 "target": {"modality": "MR", "channels": 1, "intensity": {"percentiles": [0.5, 99.5]}}},
     "source": {"training": [{"image": ..., "label": ...}], "validation": [...], "test": [...]},
     "target": {"training": [{"image": ...}], "validation": [...], "test": [{"image": ..., "label": ...}]},
     "paired": {"training": [{"image": ..., "target": ..., "reference": ...}], ...}}

``source``/``target`` (unpaired tasks) or ``paired`` (translation with pairs) or both. Target
training entries never carry labels: a label found there is dropped with a warning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.data.io import LoadImageByTyped, reader_for

__all__ = ["DatalistError", "load_datalist", "check_images", "entries", "has_references"]

SECTIONS = ("source", "target", "paired")
SPLITS = ("training", "validation", "test")
PATH_KEYS = ("image", "label", "reference", "target", "oracle_label")


class DatalistError(ValueError):
    """A datalist that does not match the expected layout; the message names the file and entry."""


def load_datalist(path: str | Path, verify_images: bool = False) -> dict:
    """Reads a datalist, checks its layout and files, and resolves image paths.

    Args:
        path: the datalist JSON file.
        verify_images: also read every image and check it (see :func:`check_images`).

    Returns:
        The datalist with every path made absolute (relative paths are taken from the
        datalist's folder) and labels removed from target training entries.

    Raises:
        DatalistError: a missing or unreadable file, a missing key, an empty split, a
            missing image file, or (with ``verify_images``) an image problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DatalistError(f"Datalist not found: {path}")
    try:
        datalist = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatalistError(f"{path}: not valid JSON ({error}).") from error
    _check_header(datalist, path)
    sections = [s for s in SECTIONS if s in datalist]
    if not sections:
        raise DatalistError(f"{path}: has none of the sections {', '.join(SECTIONS)}.")
    root = path.parent
    for section in sections:
        splits = datalist[section]
        if not isinstance(splits, dict) or "training" not in splits:
            raise DatalistError(f"{path}: `{section}` must map splits to lists of entries, with at least 'training'.")
        for split, items in splits.items():
            where = f"{path}: {section}.{split}"
            if split not in SPLITS:
                raise DatalistError(f"{where}: unknown split (expected {', '.join(SPLITS)}).")
            if not isinstance(items, list) or not items:
                raise DatalistError(f"{where}: empty split; expected a non-empty list of entries.")
            for index, entry in enumerate(items):
                if not isinstance(entry, dict) or "image" not in entry:
                    raise DatalistError(f"{where}[{index}]: an entry must be an object with an 'image' key.")
                if section == "target" and split == "training" and "label" in entry:
                    warnings.warn(
                        f"{where}[{index}]: target training entries must not have labels; ignoring it.", stacklevel=2
                    )
                    del entry["label"]
                for key in PATH_KEYS:
                    if key in entry:
                        entry[key] = _resolve(root, entry[key], f"{where}[{index}].{key}")
    if verify_images:
        check_images(datalist, path)
    return datalist


def entries(datalist: dict, section: str, split: str) -> list[dict]:
    """The entries of one split of one section.

    Raises:
        DatalistError: the datalist has no such section or split.
    """
    try:
        return datalist[section][split]
    except KeyError:
        raise DatalistError(f"The datalist has no `{section}.{split}` split.") from None


def has_references(datalist: dict, section: str, split: str) -> bool:
    """Whether every entry of a split carries a ``reference`` (the subject rendered in the other
    domain, as the synthetic benchmark writes it: the oracle translation); real data do not.

    Args:
        datalist: a loaded datalist.
        section: ``source``, ``target`` or ``paired``.
        split: the split.

    Returns:
        ``True`` when the split is non-empty and every entry has a reference.

    Raises:
        DatalistError: the datalist has no such section or split.
    """
    items = entries(datalist, section, split)
    return bool(items) and all("reference" in e for e in items)


def check_images(datalist: dict, path: str | Path = "datalist") -> None:
    """Reads every image of a loaded datalist and checks it against the header.

    Checks: the file is readable, has the domain's channel count and the datalist's
    dimensionality, its label (if any) has the image's spatial shape, label values are
    declared classes, and no image contains NaN.

    Args:
        datalist: a datalist returned by :func:`load_datalist`.
        path: the datalist's path, for messages.

    Raises:
        DatalistError: the first problem found, naming the file and entry.
    """
    loader = LoadImageByTyped(keys=list(PATH_KEYS), allow_missing_keys=True)
    dim = datalist["tensor_dim"]
    classes = {int(k) for k in datalist["labels"]}
    todo = list(_walk(datalist))
    for section, split, index, entry in tqdm(todo, desc="checking images", unit="entry", disable=len(todo) < 20):
        where = f"{path}: {section}.{split}[{index}]"
        try:
            loaded = loader(entry)
        except ValueError as error:
            raise DatalistError(f"{where}: {error}") from error
        domain = "target" if section == "target" else "source"
        for key in ("image", "reference", "target"):
            if key not in loaded:
                continue
            image = loaded[key]
            expected_channels = datalist["domains"][_domain_of(section, key, domain)].get("channels", 1)
            if image.ndim - 1 != dim:
                raise DatalistError(
                    f"{where}.{key}: {entry[key]} has {image.ndim - 1} spatial dimensions, expected {dim} (tensor_dim)."
                )
            if image.shape[0] != expected_channels:
                raise DatalistError(
                    f"{where}.{key}: {entry[key]} has {image.shape[0]} channels, expected {expected_channels}."
                )
            if not bool(np.isfinite(np.asarray(image)).all()):
                raise DatalistError(f"{where}.{key}: {entry[key]} contains NaN or infinite values.")
        for key in ("label", "oracle_label"):
            if key not in loaded:
                continue
            label = np.asarray(loaded[key])
            if label.shape[1:] != tuple(loaded["image"].shape[1:]) or label.shape[0] != 1:
                raise DatalistError(
                    f"{where}.{key}: {entry[key]} has shape {label.shape[1:]} (channels {label.shape[0]}), "
                    f"but the image has spatial shape {tuple(loaded['image'].shape[1:])} and a label needs 1 channel."
                )
            values = np.unique(label)
            if not np.array_equal(values, np.round(values)):
                raise DatalistError(f"{where}.{key}: {entry[key]} has non-integer values; labels must be integers.")
            unknown = sorted(set(values.astype(np.int64).tolist()) - classes)
            if unknown:
                raise DatalistError(
                    f"{where}.{key}: {entry[key]} has values {unknown[:5]} that are not declared in `labels` "
                    f"({sorted(classes)})."
                )


def _check_header(datalist: object, path: Path) -> None:
    if not isinstance(datalist, dict):
        raise DatalistError(f"{path}: the datalist must be a JSON object.")
    if datalist.get("tensor_dim") not in (2, 3):
        raise DatalistError(f"{path}: `tensor_dim` must be 2 or 3, got {datalist.get('tensor_dim')!r}.")
    labels = datalist.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DatalistError(f'{path}: `labels` must map label values to class names, e.g. {{"0": "background"}}.')
    try:
        [int(key) for key in labels]
    except ValueError:
        raise DatalistError(f"{path}: `labels` keys must be integer label values, got {list(labels)}.") from None
    domains = datalist.get("domains")
    if not isinstance(domains, dict) or not {"source", "target"} <= set(domains):
        raise DatalistError(f"{path}: `domains` must describe 'source' and 'target'.")


def _resolve(root: Path, value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DatalistError(f"{where}: expected a file path, got {value!r}.")
    resolved = Path(value) if Path(value).is_absolute() else root / value
    if not resolved.exists():
        raise DatalistError(f"{where}: file not found: {resolved}")
    try:
        reader_for(resolved)
    except ValueError as error:
        raise DatalistError(f"{where}: {error}") from None
    return str(resolved)


def _walk(datalist: dict) -> Iterator[tuple[str, str, int, dict]]:
    for section in SECTIONS:
        for split, items in datalist.get(section, {}).items():
            for index, entry in enumerate(items):
                yield section, split, index, entry


def _domain_of(section: str, key: str, domain: str) -> str:
    """Which domain an image key is in: references show a subject in the other domain; a
    pair's ``target`` is in the target domain."""
    if section == "paired":
        return "target" if key in ("target", "reference") else "source"
    if key == "reference":
        return "source" if domain == "target" else "target"
    return domain
