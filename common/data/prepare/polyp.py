"""The MI2GAN polyp task: CVC-ClinicDB (the labelled source centre, 612 frames split 80:20 into
training and validation) and ETIS-LaribPolypDB (the target centre, 196 frames: unlabelled for
training, labelled for testing), as the paper uses them (section 3.1).

Raw layouts read (as distributed):

- CVC-ClinicDB: ``Original/<n>.tif`` and ``Ground Truth/<n>.tif`` (the TIFF release), or the
  same under ``PNG/`` with ``.png`` files;
- ETIS-LaribPolypDB: ``ETIS-LaribPolypDB/<n>.tif`` and ``Ground Truth/p<n>.tif`` (the challenge
  release), or ``images/<n>.png`` and ``masks/<n>.png``.

Masks are 0/255; they become label maps 0 (background) / 1 (polyp). Frames are resized to
``size`` (default 256 x 256, CycleGAN's size: the paper is silent; ``(0, 0)`` keeps them).
The 80:20 split is by frame number (CVC-ClinicDB numbers its frames sequence by sequence, so
that the validation frames come from the last sequences, not from the training sequences').
"""

from __future__ import annotations

import re
from pathlib import Path

from common.data.prepare.core import (
    Part,
    binary_mask,
    check_pairs,
    missing_lines,
    raise_problems,
    register,
    write_pairs,
)

__all__ = ["cvc_clinic", "etis_larib"]

LABELS = {"0": "background", "1": "polyp"}
INTENSITY = {"range": [0.0, 255.0]}  # 8-bit RGB
DEFAULT_SIZE = (256, 256)
TRAINING_FRACTION = 0.8  # the paper's 80:20


def _numbered(folder: Path, suffix: str, prefix: str = "") -> dict[int, Path]:
    """``{n: path}`` of the files ``<prefix><n><suffix>`` in a folder."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+){re.escape(suffix)}", re.IGNORECASE)
    return {int(m.group(1)): p for p in folder.iterdir() if (m := pattern.fullmatch(p.name))}


def _pairs(
    raw: Path, dataset: str, layouts: list[tuple[Path, str, str, Path, str, str]], problems: list[str]
) -> dict[int, tuple[Path, Path]]:
    """The (frame, mask) pairs of the first layout found; a frame or mask without its
    counterpart is added to ``problems``; a missing folder raises at once."""
    for frames, frame_prefix, frame_suffix, masks, mask_prefix, mask_suffix in layouts:
        if frames.is_dir():
            break
    else:
        expected = " or ".join(str(layout[0]) for layout in layouts)
        raise_problems(raw, dataset, [f"{expected}: missing (the folder of the frames)."])
    raise_problems(raw, dataset, missing_lines([masks], "the folder of the masks"))
    images = _numbered(frames, frame_suffix, frame_prefix)
    labels = _numbered(masks, mask_suffix, mask_prefix)
    if not images:
        problems.append(f"{frames}: holds no image named {frame_prefix}<n>{frame_suffix}.")
    problems += [
        f"{masks / f'{mask_prefix}{n}{mask_suffix}'}: missing (the mask of {images[n]})."
        for n in sorted(images)
        if n not in labels
    ]
    problems += [
        f"{frames / f'{frame_prefix}{n}{frame_suffix}'}: missing (the frame of {labels[n]})."
        for n in sorted(labels)
        if n not in images
    ]
    return {n: (images[n], labels[n]) for n in sorted(images) if n in labels}


def _convert(
    raw: Path,
    dataset: str,
    layouts: list[tuple[Path, str, str, Path, str, str]],
    folder: Path,
    size: tuple[int, int] | None,
) -> dict[int, dict]:
    """Every frame and mask read (every problem reported), then written as ``NNN.png``."""
    problems: list[str] = []
    pairs = {f"{n:03d}": pair for n, pair in _pairs(raw, dataset, layouts, problems).items()}
    check_pairs(dataset, pairs, problems)
    raise_problems(raw, dataset, problems)
    entries = write_pairs(dataset, pairs, folder, size, binary_mask)
    return {int(name): entry for name, entry in entries.items()}


@register("cvc_clinic", task="polyp")
def cvc_clinic(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0) -> Part:
    """CVC-ClinicDB as the source centre: training and validation (80:20 by frame number).

    Args:
        raw: the unpacked download (holding ``Original/`` and ``Ground Truth/``, or ``PNG/``).
        folder: where the converted frames go.
        size: ``(H, W)`` of the written frames.
        seed: unused (the split is by frame number).

    Returns:
        The source part of the polyp task.

    Raises:
        RawLayoutError: one line per missing or unreadable file.
    """
    layouts = [
        (raw / "Original", "", ".tif", raw / "Ground Truth", "", ".tif"),
        (raw / "PNG" / "Original", "", ".png", raw / "PNG" / "Ground Truth", "", ".png"),
    ]
    entries = _convert(raw, "cvc_clinic", layouts, folder, size)
    frames = sorted(entries)
    cut = round(TRAINING_FRACTION * len(frames))
    splits = {"training": [entries[n] for n in frames[:cut]], "validation": [entries[n] for n in frames[cut:]]}
    domain = {"modality": "colonoscopy, CVC-ClinicDB", "channels": 3, "intensity": INTENSITY}
    return Part("cvc_clinic", "source", domain, LABELS, 2, splits)


@register("etis_larib", task="polyp")
def etis_larib(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0) -> Part:
    """ETIS-LaribPolypDB as the target centre: every frame unlabelled for training, labelled for testing.

    Args:
        raw: the unpacked download (holding ``ETIS-LaribPolypDB/`` and ``Ground Truth/``, or
            ``images/`` and ``masks/``).
        folder: where the converted frames go.
        size: ``(H, W)`` of the written frames.
        seed: unused.

    Returns:
        The target part of the polyp task.

    Raises:
        RawLayoutError: one line per missing or unreadable file.
    """
    layouts = [
        (raw / "ETIS-LaribPolypDB", "", ".tif", raw / "Ground Truth", "p", ".tif"),
        (raw / "images", "", ".png", raw / "masks", "", ".png"),
    ]
    entries = _convert(raw, "etis_larib", layouts, folder, size)
    frames = sorted(entries)
    splits = {"training": [{"image": entries[n]["image"]} for n in frames], "test": [entries[n] for n in frames]}
    domain = {"modality": "colonoscopy, ETIS-Larib", "channels": 3, "intensity": INTENSITY}
    return Part("etis_larib", "target", domain, LABELS, 2, splits)
