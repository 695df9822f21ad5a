"""RegGAN's translation task: T1 -> T2 of the same BraTS subjects, registered pairs.

Raw layout read: ``<subject>/<subject>_t1.nii.gz`` with ``<subject>/<subject>_t2.nii.gz``
anywhere below the raw folder (BraTS 2018-2021 as distributed: ``HGG/`` and ``LGG/`` of
``MICCAI_BraTS_2018_Data_Training``, or ``BraTS2021_<n>/``). The other sequences and the tumour
labels are not used.

Each pair is reoriented to RAS and resampled in-plane to ``size`` (default 256 x 256: "resampled
to 256 x 256", RegGAN's supplement A). **Slices**: RegGAN's public code starts from 2D slices it
does not say how it chose; here the axial slices kept are the run from the first to the last
whose brain (T1 > 0, BraTS's skull-stripped background is 0) covers at least
:data:`MIN_BRAIN_FRACTION` of the slice, so that training does not see the empty slices above
and below the head. **Pairs**: BraTS co-registers its sequences, so T2 is both the training
target and the test reference (the bundle's ``noise_level`` 1-5 misaligns the training targets
on the fly, RegGAN's experiment). **Splits**: subjects 80:20 into training and test (random with
``seed``; the paper does not give its split), :data:`~common.data.prepare.volumes.VALIDATION_VOLUMES`
of the training subjects for validation. Intensity: the 0.5-99.5 percentiles of each volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.transforms import SpatialCrop
from tqdm import tqdm

from common.data.prepare.core import Part, raise_problems, register
from common.data.prepare.volumes import inplane_resized, load_oriented, pair_problems, save_nifti, validation_cases

__all__ = ["brats", "brain_slices"]

DEFAULT_SIZE = (256, 256)  # RegGAN, supplement A
MIN_BRAIN_FRACTION = 0.1  # of a slice's pixels inside the brain, for the first and last slice kept
TRAINING_FRACTION = 0.8
DOMAINS = {
    "source": {"modality": "T1", "channels": 1, "intensity": {"percentiles": [0.5, 99.5]}},
    "target": {"modality": "T2", "channels": 1, "intensity": {"percentiles": [0.5, 99.5]}},
}


def brain_slices(t1: np.ndarray) -> slice:
    """The axial slices kept: the first to the last whose brain covers :data:`MIN_BRAIN_FRACTION`.

    Args:
        t1: the T1 volume ``(H, W, D)`` (background 0).

    Returns:
        The slice range along the last axis (all slices when none qualifies).
    """
    fraction = (t1 > 0).mean(axis=(0, 1))
    kept = np.flatnonzero(fraction >= MIN_BRAIN_FRACTION)
    return slice(int(kept[0]), int(kept[-1]) + 1) if kept.size else slice(0, t1.shape[-1])


@register("brats", task="brain")
def brats(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0) -> Part:
    """BraTS subjects' T1 and T2 volumes as RegGAN's registered pairs.

    Args:
        raw: the unpacked release (subjects' folders anywhere below).
        folder: the part's output folder.
        size: the in-plane size ``(H, W)``; ``(0, 0)`` keeps BraTS's 240 x 240.
        seed: the seed of the subject split.

    Returns:
        The part of pairs (role ``"paired"``).

    Raises:
        RawLayoutError: one line per missing or unreadable file (headers first, nothing written).
    """
    problems: list[str] = []
    pairs = {}
    for t1 in sorted(raw.rglob("*_t1.nii.gz")):
        subject = t1.name.removesuffix("_t1.nii.gz")
        t2 = t1.with_name(f"{subject}_t2.nii.gz")
        if subject in pairs:
            problems.append(f"{t1}: a second subject named {subject} (the first: {pairs[subject][0]}).")
            continue
        problems += pair_problems(t1, f"the T1 volume of {subject}", t2, f"the T2 volume of {subject}")
        pairs[subject] = (t1, t2)
    if not pairs:
        problems.append(f"{raw}: holds no <subject>/<subject>_t1.nii.gz (BraTS's layout).")
    raise_problems(raw, "brats", problems)
    entries = {}
    for subject, (t1_file, t2_file) in tqdm(pairs.items(), desc="writing brats", unit="subject"):
        try:
            t1, t2 = load_oriented(t1_file), load_oriented(t2_file)
        except ValueError as error:
            problems.append(" ".join(str(error).split()))
            continue
        kept = brain_slices(np.asarray(t1[0]))
        crop = SpatialCrop(roi_start=(0, 0, kept.start), roi_end=(*t1.shape[1:3], kept.stop))  # the affine follows
        t1, t2 = (inplane_resized(crop(v), size, label=False) for v in (t1, t2))
        for volume, name in ((t1, "t1"), (t2, "t2")):
            save_nifti(folder / name / f"{subject}.nii.gz", volume.float(), volume.affine)
        paths = {key: f"{folder.name}/{name}/{subject}.nii.gz" for key, name in (("image", "t1"), ("target", "t2"))}
        entries[subject] = {**paths, "reference": paths["target"]}
    raise_problems(raw, "brats", problems)
    subjects = sorted(entries)
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    cut = round(TRAINING_FRACTION * len(order))
    training, test = sorted(order[:cut]), sorted(order[cut:])
    validation = [training[i] for i in validation_cases(list(range(len(training))), seed)]
    splits = {
        "training": [entries[s] for s in training if s not in validation],
        "validation": [entries[s] for s in validation],
        "test": [entries[s] for s in test],
    }
    return Part("brats", "paired", DOMAINS, {"0": "background"}, 3, splits)
