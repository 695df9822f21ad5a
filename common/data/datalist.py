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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from common.data.io import LoadImageByTyped, reader_for

__all__ = [
    "DatalistError",
    "load_datalist",
    "check_images",
    "check_sizes",
    "InputSizes",
    "entries",
    "has_references",
    "load_checked",
    "size_problems",
]

SECTIONS = ("source", "target", "paired")
SPLITS = ("training", "validation", "test")
PATH_KEYS = ("image", "label", "reference", "target", "oracle_label")
LABEL_KEYS = ("label", "oracle_label")


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


def check_images(
    datalist: dict,
    path: str | Path = "datalist",
    splits: Sequence[str] = SPLITS,
    label_sections: Sequence[str] = SECTIONS,
    network: torch.nn.Module | None = None,
    network_domain: str = "target",
) -> InputSizes:
    """Reads every image of the chosen splits of a loaded datalist and checks it against the
    header, reporting every bad file, before any work starts.

    Checks: each file is readable, has the domain's channel count and the datalist's
    dimensionality and only finite values; a label (read only in ``label_sections``) has the
    image's spatial shape and integer values among the declared classes; with ``network``, each
    in-plane size (2D images, or a volume's slices along its last axis) gives an output of the
    same size (a zero image through the network, once per size; e.g. a generator that halves
    the size twice needs multiples of 4).

    Args:
        datalist: a datalist returned by :func:`load_datalist`.
        path: the datalist's path, for messages.
        splits: the splits to check (e.g. training's: training and validation).
        label_sections: the sections whose labels are read (training never reads the target's).
        network: a network whose output must keep its input's in-plane size (the release
            network; run where its weights are).
        network_domain: the domain of the network's input (its channel count).

    Returns:
        The in-plane sizes of the images read, for :func:`check_sizes` once the networks exist
        (training probes them after building its networks, so that building them here does
        not change their random initialisation).

    Raises:
        DatalistError: one line per bad file, each naming the file, its entry and what was expected.
    """
    loader = LoadImageByTyped(keys=list(PATH_KEYS), allow_missing_keys=True)
    dim = datalist["tensor_dim"]
    classes = {int(k) for k in datalist["labels"]}
    todo = [item for item in _walk(datalist) if item[1] in splits]
    problems: list[str] = []
    sizes: dict[tuple[int, ...], list[str]] = {}
    for section, split, index, entry in tqdm(todo, desc="checking images", unit="entry", disable=len(todo) < 20):
        where = f"{section}.{split}[{index}]"
        domain = "target" if section == "target" else "source"
        loaded = {}
        keys = [k for k in PATH_KEYS if k in entry and (k not in LABEL_KEYS or section in label_sections)]
        for key in keys:
            image, problem = load_checked(loader, key, entry[key])
            if problem:
                problems.append(f"{where}.{key}: {entry[key]} {problem}.")
            else:
                loaded[key] = image
        for key in ("image", "reference", "target"):
            if key not in loaded:
                continue
            image = loaded[key]
            expected_channels = datalist["domains"][_domain_of(section, key, domain)].get("channels", 1)
            if image.ndim - 1 != dim:
                problems.append(
                    f"{where}.{key}: {entry[key]} has {image.ndim - 1} spatial dimensions, expected {dim} (tensor_dim); "
                    f"its shape is {tuple(image.shape[1:])}."
                )
                loaded.pop(key)  # its label is not compared with it
                continue
            if image.shape[0] != expected_channels:
                problems.append(
                    f"{where}.{key}: {entry[key]} has {image.shape[0]} channels, expected {expected_channels}."
                )
            elif not bool(np.isfinite(np.asarray(image)).all()):
                problems.append(f"{where}.{key}: {entry[key]} contains NaN or infinite values; expected finite values.")
            sizes.setdefault(tuple(image.shape[1:3]), []).append(f"{where}.{key}: {entry[key]}")
        for key in LABEL_KEYS:
            if key in loaded:
                problems += _label_problems(f"{where}.{key}: {entry[key]}", loaded[key], loaded.get("image"), classes)
    found = InputSizes(str(path), sizes, datalist["domains"][network_domain].get("channels", 1))
    if network is not None:
        problems += size_problems(sizes, network, found.channels)
    if problems:
        raise DatalistError(
            f"{len(problems)} problem(s) in {path}, one per line (nothing was run):\n" + "\n".join(problems)
        )
    return found


@dataclass
class InputSizes:
    """The in-plane sizes of a datalist's images, as :func:`check_images` found them.

    Args:
        path: the datalist, for messages.
        sizes: ``{in-plane size: [each file of that size, described]}``.
        channels: the input channels of the network to probe.
    """

    path: str
    sizes: dict[tuple[int, ...], list[str]]
    channels: int


def check_sizes(found: InputSizes | None, network: torch.nn.Module) -> None:
    """Checks that a network keeps every in-plane size :func:`check_images` found.

    Args:
        found: what :func:`check_images` returned (``None``: nothing to check).
        network: the network (the release network), where its weights are.

    Raises:
        DatalistError: one line per file whose size the network cannot take.
    """
    if found is None:
        return
    problems = size_problems(found.sizes, network, found.channels)
    if problems:
        raise DatalistError(
            f"{len(problems)} problem(s) in {found.path}, one per line (nothing was run):\n" + "\n".join(problems)
        )


def load_checked(loader: LoadImageByTyped, key: str, file: str | Path) -> tuple[Any, str | None]:
    """One image file loaded, or what is wrong with it, for a one-line message.

    Args:
        loader: a loader of ``key``.
        key: the key it loads.
        file: the image file (or DICOM-series folder).

    Returns:
        ``(image, None)``, or ``(None, problem)`` with e.g. ``"is empty (0 bytes)"``, ``"is not
        gzip-compressed, ..."``, ``"cannot be read (EOFError: ...)"``.
    """
    path = Path(file)
    if path.is_file() and path.stat().st_size == 0:
        return None, "is empty (0 bytes)"
    if path.is_file() and path.name.endswith(".gz"):
        with open(path, "rb") as handle:
            if handle.read(2) != b"\x1f\x8b":
                return None, "is not gzip-compressed, as its name (.gz) says it is"
    try:
        return loader({key: str(file)})[key], None
    except ValueError as error:  # LoadImageByTyped chains the reader's own error
        if path.is_dir():
            return None, "is a folder, read as a DICOM series, but holds no readable DICOM series"
        cause = error.__cause__ or error
        return None, f"cannot be read ({type(cause).__name__}: {' '.join(str(cause).split())[:200]})"


def _label_problems(where: str, label: Any, image: Any, classes: set[int]) -> list[str]:
    """What is wrong with a label map (against its image and the declared classes)."""
    label = np.asarray(label)
    if image is not None and (label.shape[1:] != tuple(image.shape[1:]) or label.shape[0] != 1):
        return [
            f"{where} has shape {label.shape[1:]} (channels {label.shape[0]}), but the image has spatial shape "
            f"{tuple(image.shape[1:])} and a label needs 1 channel."
        ]
    values = np.unique(label)
    if not np.array_equal(values, np.round(values)):
        return [f"{where} has non-integer values; labels must be integers."]
    unknown = sorted(set(values.astype(np.int64).tolist()) - classes)
    if unknown:
        return [f"{where} has values {unknown[:5]} that are not declared in `labels` ({sorted(classes)})."]
    return []


def _keeps_size(network: torch.nn.Module, channels: int, size: tuple[int, ...]) -> bool:
    """Whether a zero image of ``size`` comes out of ``network`` with the same in-plane size."""
    device = next(network.parameters()).device
    training = network.training
    network.eval()
    try:
        with torch.no_grad():
            output = network(torch.zeros(1, channels, *size, device=device))
    except Exception:
        return False
    finally:
        network.train(training)
    output = output[0] if isinstance(output, (tuple, list)) else output
    return tuple(output.shape[2:]) == tuple(size)


def size_problems(sizes: dict[tuple[int, ...], list[str]], network: torch.nn.Module, channels: int) -> list[str]:
    """One line per file whose in-plane size the network cannot take, with a size it can.

    Args:
        sizes: ``{in-plane size: [description of each file of that size]}``.
        network: a network whose output must keep its input's in-plane size.
        channels: its input channels.

    Returns:
        ``"<file> has the in-plane size HxW; the networks need multiples of M (e.g. ...)..."`` lines.
    """
    problems = []
    for size, files in sizes.items():
        if _keeps_size(network, channels, size):
            continue
        hint = "resample, crop or pad it"
        for multiple in (2, 4, 8, 16, 32, 64):
            fitted = tuple(-(-n // multiple) * multiple for n in size)
            if _keeps_size(network, channels, fitted):
                shown = "x".join(map(str, fitted))
                hint = f"the networks need multiples of {multiple} (e.g. {shown}): resample, crop or pad it"
                break
        problems += [f"{file} has the in-plane size {'x'.join(map(str, size))}; {hint}." for file in files]
    return problems


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
    regions = datalist.get("regions", {})
    foreground = {int(key) for key in labels} - {0}
    if not isinstance(regions, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, int) and x in foreground for x in v) for v in regions.values()
    ):
        raise DatalistError(
            f"{path}: `regions` must map the names of the scored structures to lists of foreground label values "
            f'(of {sorted(foreground)}), e.g. {{"optic_disc": [1, 2]}}; got {regions!r}.'
        )


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
