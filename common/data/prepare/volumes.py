"""What the 3D datasets' preparations share: a cheap header check of every NIfTI file before
anything is written, volumes read oriented (RAS), resampled in-plane, label codes mapped, and
NIfTI files written through a temporary file and a rename."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Resize
from tqdm import tqdm

from common.data.io import LoadImageByTyped

__all__ = [
    "pair_problems",
    "write_labelled_volumes",
    "load_oriented",
    "oriented",
    "VALIDATION_VOLUMES",
    "validation_cases",
    "inplane_resized",
    "map_labels",
    "save_nifti",
]

logger = logging.getLogger(__name__)
VALIDATION_VOLUMES = 2  # labelled volumes held out of a source's training cases (the papers train on all)


def validation_cases(cases: list[int], seed: int) -> list[int]:
    """The :data:`VALIDATION_VOLUMES` cases of ``cases`` held out for validation (random with ``seed``).

    Args:
        cases: the cases that are not test cases.
        seed: the seed.

    Returns:
        The held-out cases, sorted.
    """
    return sorted(int(n) for n in np.random.default_rng(seed).choice(cases, VALIDATION_VOLUMES, replace=False))


def _header(path: Path, what: str) -> tuple[str | None, tuple | None]:
    """A NIfTI file's shape from its header only (the voxels are read when it is converted), or
    one line naming the file and what is wrong."""
    if not path.is_file():
        return f"{path}: missing ({what}).", None
    try:
        shape = nib.load(path).shape
    except Exception as error:
        return f"{path}: cannot be read as {what} ({type(error).__name__}: {' '.join(str(error).split())}).", None
    if len(shape) != 3:
        return f"{path}: has the shape {shape}; expected a 3D volume ({what}).", None
    return None, shape


def pair_problems(image: Path, what: str, second: Path, second_what: str | None = None) -> list[str]:
    """Reads the headers of a volume and of a second file that must have its shape (its labels,
    or a registered second sequence): one line per problem.

    Args:
        image: the volume.
        what: what it is, for the message.
        second: the second file.
        second_what: what that is (default: the labels of ``image``).

    Returns:
        The lines (none when both are good).
    """
    first_line, shape = _header(image, what)
    second_line, second_shape = _header(second, second_what or f"the labels of {image.name}")
    if shape and second_shape and shape != second_shape:
        second_line = f"{second}: its shape {second_shape} differs from its image's {shape} ({image})."
    return [line for line in (first_line, second_line) if line]


def write_labelled_volumes(
    files: Mapping[int, tuple[Path, Path]],
    folder: Path,
    name: str,
    size: tuple[int, int] | None,
    codes: Mapping[int, int],
    problems: list[str],
) -> dict[int, dict]:
    """Writes each (volume, label map) of NIfTI files oriented RAS, resampled in-plane, the label
    codes mapped, as ``folder/{images,labels}/<name>.nii.gz``.

    Args:
        files: ``{case: (volume, label map)}``, checked by :func:`pair_problems`.
        folder: the part's output folder.
        name: the file name of a case, a format of its number (e.g. ``"ct_{:04d}"``).
        size: the in-plane size ``(H, W)``.
        codes: the label codes (:func:`map_labels`).
        problems: where a volume whose voxels cannot be read is added (one line naming it).

    Returns:
        ``{case: {"image": ..., "label": ...}}``, paths relative to ``folder``'s parent.
    """
    entries = {}
    for case, (image, label) in tqdm(files.items(), desc=f"writing {folder.name}", unit="volume"):
        try:
            volume = inplane_resized(load_oriented(image), size, label=False)
            labels = inplane_resized(load_oriented(label), size, label=True)
        except ValueError as error:
            problems.append(" ".join(str(error).split()))
            continue
        stem = name.format(case)
        save_nifti(folder / "images" / f"{stem}.nii.gz", volume.float(), volume.affine)
        save_nifti(folder / "labels" / f"{stem}.nii.gz", map_labels(labels[0], codes, label), labels.affine)
        entries[case] = {"image": f"{folder.name}/images/{stem}.nii.gz", "label": f"{folder.name}/labels/{stem}.nii.gz"}
    return entries


def load_oriented(path: Path, axcodes: str = "RAS") -> MetaTensor:
    """A volume ``(1, H, W, D)`` read with MONAI and reoriented to ``axcodes`` (its affine with it).

    Args:
        path: a NIfTI file or a DICOM-series folder.
        axcodes: the orientation (``"RAS"``: the array's axes run to the right, anterior and
            superior; slices are taken along the last).

    Returns:
        The volume.

    Raises:
        ValueError: the file cannot be read (the message names it).
    """
    return oriented(LoadImageByTyped("image")({"image": str(path)})["image"], axcodes)


def oriented(volume: MetaTensor, axcodes: str = "RAS") -> MetaTensor:
    """``volume`` ``(C, H, W, D)`` reoriented to ``axcodes`` by its affine (world coordinates RAS).

    Args:
        volume: the volume.
        axcodes: the orientation.

    Returns:
        The reoriented volume.
    """
    return Orientation(axcodes=axcodes, labels=(("L", "R"), ("P", "A"), ("I", "S")))(volume)


def inplane_resized(volume: MetaTensor, size: tuple[int, int] | None, label: bool) -> MetaTensor:
    """``volume`` resampled to ``size`` ``(H, W)`` in-plane, its slices kept (images area-averaged
    when shrunk, linear when enlarged; label maps nearest); ``None`` or ``(0, 0)`` keeps it.

    Args:
        volume: ``(C, H, W, D)``.
        size: the in-plane size.
        label: whether it is a label map.

    Returns:
        The resampled volume, its affine updated.
    """
    if not size or not all(size):
        return volume
    shrunk = volume.shape[1] >= size[0] and volume.shape[2] >= size[1]
    mode = "nearest" if label else "area" if shrunk else "trilinear"
    return Resize(spatial_size=(size[0], size[1], -1), mode=mode)(volume)


def map_labels(labels: np.ndarray, codes: Mapping[int, int], path: Path) -> np.ndarray:
    """A dataset's label codes as label values; a code not in ``codes`` (list the codes that are
    background on purpose, as 0) becomes background, with a warning naming the file and the codes.

    Args:
        labels: the label map as stored.
        codes: ``{code: label value}`` (codes mapped to 0 need not be listed).
        path: the file, for the warning.

    Returns:
        An 8-bit label map.
    """
    values = np.rint(np.asarray(labels)).astype(np.int64)
    out = np.zeros(values.shape, np.uint8)
    for code, value in codes.items():
        out[values == code] = value
    unknown = sorted(set(np.unique(values).tolist()) - set(codes) - {0})
    if unknown:
        logger.warning("%s: label codes %s are none of %s; written as background.", path, unknown, sorted(codes))
    return out


def save_nifti(path: Path, array: np.ndarray | torch.Tensor, affine: np.ndarray | torch.Tensor) -> None:
    """Writes a NIfTI file through a temporary file and a rename (gzip without a time stamp: the
    same array gives the same bytes).

    Args:
        path: the destination (``.nii.gz``).
        array: the volume, ``(H, W, D)`` (or ``(1, H, W, D)``).
        affine: its 4 x 4 affine.
    """
    array = np.asarray(array.detach().cpu() if isinstance(array, torch.Tensor) else array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    affine = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name.removesuffix('.nii.gz')}.{os.getpid()}.tmp.nii.gz")
    nib.save(nib.Nifti1Image(array, affine), temporary)
    os.replace(temporary, path)
