"""The MI2GAN fundus task from REFUGE (section 3.1): the public training set (Zeiss Visucam 500,
400 images) is the labelled source centre, split 80:20 into training and validation; the public
validation set (Canon CR-2, 400 images) is the target centre, unlabelled for training and
labelled for testing (the challenge's test set is not public).

Raw layout read (the challenge's release, unpacked): ``Training400/{Glaucoma,Non-Glaucoma}/*.jpg``
with ``Annotation-Training400/Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/*.bmp``, and
``REFUGE-Validation400/V*.jpg`` with ``REFUGE-Validation400-GT/Disc_Cup_Masks/V*.bmp``.

Masks code the optic cup 0, the rest of the optic disc 128 and the background 255; they become
label maps 0 (background), 1 (optic disc outside the cup) and 2 (optic cup): the paper's optic
disc is classes 1 and 2 together, which the datalist's ``regions`` tells the evaluation
(``{"optic_disc": [1, 2], "optic_cup": [2]}``: Dice, ASSD and HD95 of the disc and the cup).
The 80:20 split is random (``seed``), stratified by the Glaucoma / Non-Glaucoma folders. Images
are resized whole to ``size`` (default 512 x 512; the paper is silent): cropping around the disc
would need its position, which the target's labels give but unsupervised training must not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from common.data.prepare.core import Part, check_pairs, missing_lines, raise_problems, register, write_pairs

__all__ = ["refuge", "refuge_labels"]

LABELS = {"0": "background", "1": "optic_disc", "2": "optic_cup"}
REGIONS = {"optic_disc": [1, 2], "optic_cup": [2]}  # the paper's optic disc contains the cup
INTENSITY = {"range": [0.0, 255.0]}  # 8-bit RGB
DEFAULT_SIZE = (512, 512)
TRAINING_FRACTION = 0.8  # the paper's 80:20
GRADES = ("Glaucoma", "Non-Glaucoma")


def refuge_labels(mask: Image.Image) -> Image.Image:
    """REFUGE's coding (cup 0, disc 128, background 255) as label values 2, 1, 0.

    Args:
        mask: a REFUGE ``Disc_Cup_Masks`` image.

    Returns:
        An 8-bit label map (the nearest code decides a value in between).
    """
    values = np.asarray(mask.convert("L")).astype(np.int16)
    labels = np.where(values < 64, 2, np.where(values < 192, 1, 0)).astype(np.uint8)
    return Image.fromarray(labels)


def _pairs(images: Path, masks: Path, pattern: str, problems: list[str]) -> dict[str, tuple[Path, Path]]:
    """``{stem: (image, mask)}`` of the images matching ``pattern``; a missing mask is a problem."""
    pairs = {}
    for image in sorted(images.glob(pattern)):
        mask = masks / f"{image.stem}.bmp"
        if mask.is_file():
            pairs[image.stem] = (image, mask)
        else:
            problems.append(f"{mask}: missing (the mask of {image}).")
    if not pairs and not problems:
        problems.append(f"{images}: holds no image named {pattern}.")
    return pairs


@register("refuge", task="fundus")
def refuge(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0) -> list[Part]:
    """REFUGE's training set (Zeiss) as the source centre and its validation set (Canon) as the target.

    Args:
        raw: the unpacked download (the four folders above).
        folder: the output folder's ``refuge``; the parts go beside it (``refuge_zeiss``,
            ``refuge_canon``).
        size: ``(H, W)`` of the written images.
        seed: the seed of the 80:20 split.

    Returns:
        The source and target parts of the fundus task.

    Raises:
        RawLayoutError: one line per missing or unreadable file.
    """
    training, training_masks = raw / "Training400", raw / "Annotation-Training400" / "Disc_Cup_Masks"
    validation, validation_masks = raw / "REFUGE-Validation400", raw / "REFUGE-Validation400-GT" / "Disc_Cup_Masks"
    folders = [training / g for g in GRADES] + [training_masks / g for g in GRADES] + [validation, validation_masks]
    raise_problems(raw, "refuge", missing_lines(folders, "a folder of the REFUGE release"))
    problems: list[str] = []
    source_pairs = {g: _pairs(training / g, training_masks / g, "*.jpg", problems) for g in GRADES}
    target_pairs = _pairs(validation, validation_masks, "V*.jpg", problems)
    every_source = {name: pair for pairs in source_pairs.values() for name, pair in pairs.items()}
    check_pairs("refuge", {**every_source, **target_pairs}, problems)  # every problem before anything is written
    raise_problems(raw, "refuge", problems)
    source = write_pairs("refuge", every_source, folder.parent / "refuge_zeiss", size, refuge_labels)
    target = write_pairs("refuge", target_pairs, folder.parent / "refuge_canon", size, refuge_labels)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[dict]] = {"training": [], "validation": []}
    for grade in GRADES:
        names = sorted(source_pairs[grade])
        order = [names[i] for i in rng.permutation(len(names))]
        cut = round(TRAINING_FRACTION * len(order))
        splits["training"] += [source[n] for n in sorted(order[:cut])]
        splits["validation"] += [source[n] for n in sorted(order[cut:])]
    names = sorted(target)
    zeiss_domain = {"modality": "fundus, Zeiss Visucam 500", "channels": 3, "intensity": INTENSITY}
    canon_domain = {"modality": "fundus, Canon CR-2", "channels": 3, "intensity": INTENSITY}
    return [
        Part("refuge_zeiss", "source", zeiss_domain, LABELS, 2, splits, REGIONS),
        Part(
            "refuge_canon",
            "target",
            canon_domain,
            LABELS,
            2,
            {"training": [{"image": target[n]["image"]} for n in names], "test": [target[n] for n in names]},
            REGIONS,
        ),
    ]
