"""The abdominal task of SIFA, SynthMix ("AOS") and global-local alignment: CT from BTCV
(Multi-Atlas Labeling Beyond the Cranial Vault, 30 labelled volumes) and T2-SPIR MR from CHAOS
(20 labelled volumes), four organs: liver, right kidney, left kidney, spleen. Both directions
(``datalist.json``: CT labelled -> MR, SynthMix's Table 3; ``datalist_mr_to_ct.json``: the reverse).

- ``btcv``: ``img/img<nnnn>.nii.gz`` with ``label/label<nnnn>.nii.gz`` (the release's
  ``RawData/Training/`` or a folder above it); cases 1-10 and 21-40. Of its 13 organs, 6 (liver),
  2 (right kidney), 3 (left kidney) and 1 (spleen) are kept. CT window [-250, 350] HU.
- ``chaos``: ``MR/<patient>/T2SPIR/DICOM_anon/*.dcm`` with ``MR/<patient>/T2SPIR/Ground/*.png``
  (the release's ``Train_Sets/``, or a folder above it), patients 1, 2, 3, 5, 8, 10, 13, 15,
  19-22, 31-34, 36-39. The DICOM slices are ordered along the slice normal by their positions
  (each mask follows its slice, by name) and the volume's affine is built from the DICOM
  geometry. Mask values 63 (liver, 55-70), 126 (right kidney, 110-135), 189 (left kidney,
  175-200), 252 (spleen, 240-255), as CHAOS defines them. MR: the 0.5-99.5 percentiles of each
  volume.

Volumes are reoriented to RAS (axial slices along the last axis) and resampled in-plane to
``size`` (default 256 x 256, SIFA's; global-local alignment used 512 x 512: ``--size 512 512``).
Splits: SIFA's test cases (CT 1, 9, 30, 32, 33, 39; MR 1, 13, 32, 38), 2 of the others (random
with ``seed``) for validation, the rest for training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from PIL import Image
from tqdm import tqdm

from common.data.prepare.core import Part, raise_problems, register
from common.data.prepare.volumes import (
    inplane_resized,
    oriented,
    pair_problems,
    save_nifti,
    validation_cases,
    write_labelled_volumes,
)

__all__ = ["btcv", "chaos", "chaos_liver", "chaos_labels", "dicom_series", "lits"]

LABELS = {"0": "background", "1": "liver", "2": "right_kidney", "3": "left_kidney", "4": "spleen"}
BTCV_CASES = (*range(1, 11), *range(21, 41))
BTCV_TEST = (1, 9, 30, 32, 33, 39)  # SIFA's abdominal CT test cases
BTCV_CODES = {6: 1, 2: 2, 3: 3, 1: 4} | {c: 0 for c in (4, 5, *range(7, 14))}  # liver, kidneys, spleen; 9 others: 0
CHAOS_CASES = (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39)
CHAOS_TEST = (1, 13, 32, 38)  # SIFA's abdominal MR test cases
LIVER_LABELS = {"0": "background", "1": "liver"}
LITS_CASES = tuple(range(131))
LITS_CODES = {1: 1, 2: 1}  # liver, tumour (inside the liver): both liver
FOLDS = 5  # DADR's subject-wise cross-validation
CHAOS_RANGES = {1: (55, 70), 2: (110, 135), 3: (175, 200), 4: (240, 255)}  # CHAOS's mask values per organ
DEFAULT_SIZE = (256, 256)
CT_DOMAIN = {"modality": "CT", "channels": 1, "intensity": {"range": [-250.0, 350.0]}}
MR_DOMAIN = {"modality": "MR (T2-SPIR)", "channels": 1, "intensity": {"percentiles": [0.5, 99.5]}}


def _first_folder(raw: Path, names: tuple[str, ...], what: str, problems: list[str]) -> Path | None:
    """The first of ``raw/<name>`` that is a folder; else a problem naming them."""
    for name in names:
        if (raw / name).is_dir():
            return raw / name
    problems.append(f"{' or '.join(str(raw / n) for n in names)}: missing ({what}).")
    return None


def _splits(entries: dict[int, dict], cases: tuple[int, ...], test: tuple[int, ...], seed: int) -> dict:
    """SIFA's test cases, :func:`validation_cases` of the others, the rest for training."""
    others = [n for n in cases if n not in test]
    validation = validation_cases(others, seed)
    return {
        "training": [entries[n] for n in others if n not in validation],
        "validation": [entries[n] for n in validation],
        "test": [entries[n] for n in test],
    }


@register("btcv", task="abdomen")
def btcv(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0) -> Part:
    """BTCV's 30 labelled CT volumes as the abdominal task's CT part.

    Args:
        raw: the unpacked release (``img/`` and ``label/``, or ``Training/`` or
            ``RawData/Training/`` holding them).
        folder: the part's output folder.
        size: the in-plane size ``(H, W)``; ``(0, 0)`` keeps each volume's.
        seed: the seed of the validation volumes.

    Returns:
        The CT part (either role).

    Raises:
        RawLayoutError: one line per missing or unreadable file (headers first, nothing written).
    """
    problems: list[str] = []
    base = _first_folder(raw, ("img", "Training/img", "RawData/Training/img"), "the folder of the CT volumes", problems)
    raise_problems(raw, "btcv", problems)
    files = {n: (base / f"img{n:04d}.nii.gz", base.parent / "label" / f"label{n:04d}.nii.gz") for n in BTCV_CASES}
    for n, (image, label) in files.items():
        problems += pair_problems(image, f"the CT volume {n}", label)
    raise_problems(raw, "btcv", problems)
    entries = write_labelled_volumes(files, folder, "ct_{:04d}", size, BTCV_CODES, problems)
    raise_problems(raw, "btcv", problems)
    return Part("btcv", "either", CT_DOMAIN, LABELS, 3, _splits(entries, BTCV_CASES, BTCV_TEST, seed))


def dicom_series(files: list[Path]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One DICOM series as a volume in voxel order (column, row, slice), its RAS affine and the
    slices' order (by position along the slice normal).

    Args:
        files: the series' files (one slice each).

    Returns:
        The volume ``(columns, rows, slices)`` (rescaled), the 4 x 4 affine mapping voxels to
        RAS millimetres, and the index in ``files`` of each slice in volume order.
    """
    slices = [pydicom.dcmread(f) for f in files]
    orientation = np.asarray(slices[0].ImageOrientationPatient, np.float64)
    along_row, along_column = orientation[:3], orientation[3:]  # directions of increasing column, row
    normal = np.cross(along_row, along_column)
    positions = np.asarray([s.ImagePositionPatient for s in slices], np.float64)
    order = [int(i) for i in np.argsort(positions @ normal, kind="stable")]
    pixels = [
        slices[i].pixel_array.T * float(getattr(slices[i], "RescaleSlope", 1))
        + float(getattr(slices[i], "RescaleIntercept", 0))
        for i in order
    ]
    row_spacing, column_spacing = (float(v) for v in slices[0].PixelSpacing)
    if len(order) > 1:
        step = (positions[order[-1]] - positions[order[0]]) / (len(order) - 1)
    else:
        step = normal * float(getattr(slices[0], "SliceThickness", 1) or 1)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = along_row * column_spacing, along_column * row_spacing, step
    affine[:3, 3] = positions[order[0]]
    return np.stack(pixels, -1).astype(np.float32), np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine, order  # LPS -> RAS


def chaos_labels(mask: np.ndarray) -> np.ndarray:
    """A CHAOS ground-truth PNG (organ values 63, 126, 189, 252) as label values 1-4.

    Args:
        mask: the PNG's values.

    Returns:
        An 8-bit label map.
    """
    out = np.zeros(mask.shape, np.uint8)
    for value, (low, high) in CHAOS_RANGES.items():
        out[(mask >= low) & (mask <= high)] = value
    return out


def _chaos_files(series: Path, ground: Path, problems: list[str]) -> list[tuple[Path, Path]]:
    """Each DICOM slice with its mask (by name), read cheaply; every problem added, one line each."""
    pairs = []
    dicoms = sorted(series.glob("*.dcm"))
    for dicom in dicoms:
        mask = ground / f"{dicom.stem}.png"
        try:
            header = pydicom.dcmread(dicom, stop_before_pixels=True)
            shape = (int(header.Columns), int(header.Rows))
            _ = header.ImagePositionPatient, header.ImageOrientationPatient, header.PixelSpacing
        except Exception as error:
            problems.append(
                f"{dicom}: cannot be read as a DICOM slice ({type(error).__name__}: {' '.join(str(error).split())})."
            )
            continue
        if not mask.is_file():
            problems.append(f"{mask}: missing (the mask of {dicom}).")
            continue
        try:
            with Image.open(mask) as image:
                mask_shape = image.size
        except Exception as error:
            problems.append(f"{mask}: cannot be read as a mask ({type(error).__name__}: {error}).")
            continue
        if mask_shape != shape:
            problems.append(f"{mask}: its size {mask_shape} differs from its slice's {shape} ({dicom}).")
        pairs.append((dicom, mask))
    names = {d.stem for d in dicoms}
    problems += [
        f"{m}: has no DICOM slice ({series / (m.stem + '.dcm')} is missing)."
        for m in sorted(ground.glob("*.png"))
        if m.stem not in names
    ]
    if not dicoms:
        problems.append(f"{series}: holds no DICOM slice (*.dcm).")
    return pairs


def _chaos_volumes(
    raw: Path, folder: Path, size: tuple[int, int] | None, to_labels: Callable[[np.ndarray], np.ndarray], dataset: str
) -> dict[int, dict]:
    """Every CHAOS T2-SPIR series with its masks (coded by ``to_labels``), checked, then written."""
    problems: list[str] = []
    base = _first_folder(
        raw, ("MR", "Train_Sets/MR", "CHAOS_Train_Sets/Train_Sets/MR"), "the folder of the MR patients", problems
    )
    raise_problems(raw, dataset, problems)
    files = {}
    for n in CHAOS_CASES:
        series, ground = base / str(n) / "T2SPIR" / "DICOM_anon", base / str(n) / "T2SPIR" / "Ground"
        if not series.is_dir() or not ground.is_dir():
            problems += [f"{p}: missing (patient {n}'s T2-SPIR series)." for p in (series, ground) if not p.is_dir()]
            continue
        files[n] = _chaos_files(series, ground, problems)
    raise_problems(raw, dataset, problems)
    entries = {}
    for n, pairs in tqdm(files.items(), desc=f"writing {dataset}", unit="series"):
        array, affine, order = dicom_series([d for d, _ in pairs])
        masks = np.stack([to_labels(np.asarray(Image.open(pairs[i][1]).convert("L")).T) for i in order], -1)
        volume = inplane_resized(oriented(MetaTensor(array[None], affine=torch.as_tensor(affine))), size, False)
        labels = inplane_resized(oriented(MetaTensor(masks[None], affine=torch.as_tensor(affine))), size, True)
        save_nifti(folder / "images" / f"mr_{n:02d}.nii.gz", volume.float(), volume.affine)
        save_nifti(folder / "labels" / f"mr_{n:02d}.nii.gz", labels[0].to(torch.uint8), labels.affine)
        entries[n] = {
            "image": f"{folder.name}/images/mr_{n:02d}.nii.gz",
            "label": f"{folder.name}/labels/mr_{n:02d}.nii.gz",
        }
    return entries


@register("chaos", task="abdomen")
def chaos(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0) -> Part:
    """CHAOS's 20 labelled T2-SPIR MR series as the abdominal task's MR part.

    Args:
        raw: the unpacked training release (``MR/``, or ``Train_Sets/MR`` or
            ``CHAOS_Train_Sets/Train_Sets/MR``).
        folder: the part's output folder.
        size: the in-plane size ``(H, W)``; ``(0, 0)`` keeps each series'.
        seed: the seed of the validation volumes.

    Returns:
        The MR part (either role).

    Raises:
        RawLayoutError: one line per missing or unreadable file (headers first, nothing written).
    """
    entries = _chaos_volumes(raw, folder, size, chaos_labels, "chaos")
    return Part("chaos", "either", MR_DOMAIN, LABELS, 3, _splits(entries, CHAOS_CASES, CHAOS_TEST, seed))


# --- the liver task of DADR: LiTS CT (labelled) -> MR ----------------------------------------------


def _check_fold(fold: int) -> None:
    """Refuses a fold outside 0 to :data:`FOLDS` - 1 (before anything is read)."""
    if not 0 <= fold < FOLDS:
        raise ValueError(f"--fold must be 0-{FOLDS - 1}, got {fold}.")


def _fold_splits(entries: dict[int, dict], fold: int, seed: int, validation: bool) -> dict:
    """Subject-wise folds (:data:`FOLDS`, random with ``seed``): fold ``fold`` is the test set and
    the others train, less :func:`validation_cases` of them with ``validation``."""
    cases = sorted(entries)
    test = sorted(int(n) for n in np.array_split(np.random.default_rng(seed).permutation(cases), FOLDS)[fold])
    training = [n for n in cases if n not in test]
    held = validation_cases(training, seed) if validation else []
    splits = {"training": [entries[n] for n in training if n not in held], "test": [entries[n] for n in test]}
    return splits | ({"validation": [entries[n] for n in held]} if held else {})


@register("lits", task="liver")
def lits(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0, fold: int = 0) -> Part:
    """LiTS 2017's 131 labelled CT volumes (liver and tumour as liver) as the liver task's source.

    Args:
        raw: the unpacked release: ``volume-<n>.nii`` and ``segmentation-<n>.nii`` (or ``.nii.gz``)
            anywhere below (the ``Training Batch 1`` and ``Training Batch 2`` folders), n = 0-130.
        folder: the part's output folder.
        size: the in-plane size ``(H, W)``; ``(0, 0)`` keeps each volume's.
        seed: the seed of the folds (and of the 2 validation volumes taken from the training folds).
        fold: the fold held out as the test set (DADR: 5 subject-wise folds, 4 train the
            segmenter, the CT column of its Table 2 tests on the fifth).

    Returns:
        The CT part (source).

    Raises:
        RawLayoutError: one line per missing or unreadable file (headers first, nothing written).
        ValueError: a fold outside 0-4.
    """
    _check_fold(fold)
    found = {int(p.name.split("-")[1].split(".")[0]): p for p in raw.rglob("volume-*.nii*")}
    problems, files = [], {}
    for n in LITS_CASES:
        image = found.get(n, raw / f"volume-{n}.nii")
        label = image.with_name(image.name.replace("volume-", "segmentation-"))
        problems += pair_problems(image, f"the CT volume {n}", label)
        files[n] = (image, label)
    raise_problems(raw, "lits", problems)
    entries = write_labelled_volumes(files, folder, "ct_{:03d}", size, LITS_CODES, problems)
    raise_problems(raw, "lits", problems)
    return Part("lits", "source", CT_DOMAIN, LIVER_LABELS, 3, _fold_splits(entries, fold, seed, True))


@register("chaos_liver", task="liver")
def chaos_liver(
    raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0, fold: int = 0
) -> Part:
    """CHAOS's T2-SPIR series, liver only, as the liver task's MR target (DADR's MR is not public).

    Args:
        raw: the unpacked CHAOS training release (as :func:`chaos`).
        folder: the part's output folder.
        size: the in-plane size ``(H, W)``.
        seed: the seed of the folds.
        fold: the fold held out as the (labelled) test set; the other four are the unlabelled
            training images (DADR: 4 folds of MR train the representation, 1 tests).

    Returns:
        The MR part (target).

    Raises:
        RawLayoutError: one line per missing or unreadable file (headers first, nothing written).
        ValueError: a fold outside 0-4.
    """
    _check_fold(fold)
    entries = _chaos_volumes(raw, folder, size, lambda mask: (chaos_labels(mask) == 1).astype(np.uint8), "chaos_liver")
    return Part("chaos_liver", "target", MR_DOMAIN, LIVER_LABELS, 3, _fold_splits(entries, fold, seed, False))
