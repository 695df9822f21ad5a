"""The cardiac task of SIFA, SynthMix and global-local alignment: MM-WHS 2017, MR and CT, four
structures (ascending aorta, left atrium cavity, left ventricle cavity, myocardium), both
directions (``datalist.json``: MR labelled -> CT, SIFA's; ``datalist_ct_to_mr.json``: the reverse).

Two sources:

- ``mmwhs``: the challenge's raw training release, ``ct_train/ct_train_<n>_image.nii.gz`` with
  ``ct_train_<n>_label.nii.gz`` and the same under ``mr_train/`` (n = 1001-1020; the challenge's
  test labels are not public). Label codes 820 (AA), 420 (LAC), 500 (LVC) and 205 (MYO) become
  1-4; 550, 600 and 850 (right ventricle, right atrium, pulmonary artery) background. Each
  volume is reoriented to RAS (slices along the last axis: axial) and resampled in-plane to
  ``size`` (default 256 x 256, SIFA's slice size) keeping its slices. Splits: SIFA's test cases
  (CT 1003, 1008, 1014, 1019; MR 1007, 1009, 1018, 1019), 2 of the other 16 (random with
  ``seed``) for validation, 14 for training. Intensity: CT a fixed window of [-400, 500] HU, MR
  the 0.5-99.5 percentiles of each volume, recorded in the datalist.
- ``mmwhs_sifa``: the preprocessed release of PnP-AdaNet used by SIFA (and, for the cardiac
  task, by global-local alignment): ``{ct,mr}_{train,val}_tfs/*.tfrecords`` (one TFRecord
  ``Example`` per slice: ``data_vol`` 256 x 256 x 3 float32, three neighbouring slices of which
  the middle is used, ``label_vol`` 256 x 256 x 1) and the test volumes
  ``image_{ct,mr}_<n>.nii.gz`` with ``gth_{ct,mr}_<n>.nii.gz`` (anywhere under the raw folder).
  Labels are SIFA's (1 MYO, 2 LAC, 3 LVC, 4 AA), mapped to the order above. The slices are
  already cropped around the heart and z-scored; the intensity windows are SIFA's constants (CT
  [-2.8, 3.2], MR [-1.8, 4.4], from its evaluation code). The test volumes are flipped along
  their first two axes, as SIFA's evaluation does, to match the training slices. Training and
  validation slices are stacked into volumes of up to 512 slices (they come from unknown
  volumes, in the release's order): training reads them slice by slice; only the test volumes
  are scored per volume. TFRecords are read without TensorFlow (the framing and the ``Example``
  protocol buffer are decoded here; the header checksum of each record is verified).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tqdm import tqdm

from common.data.prepare.core import Part, raise_problems, register
from common.data.prepare.volumes import map_labels, pair_problems, save_nifti, validation_cases, write_labelled_volumes

__all__ = ["mmwhs", "mmwhs_sifa", "read_tfrecords", "parse_example"]

LABELS = {"0": "background", "1": "ascending_aorta", "2": "left_atrium", "3": "left_ventricle", "4": "myocardium"}
RAW_CODES = {820: 1, 420: 2, 500: 3, 205: 4, 550: 0, 600: 0, 850: 0}  # MM-WHS: AA, LAC, LVC, MYO; RV, RA, PA: 0
SIFA_CODES = {4: 1, 2: 2, 3: 3, 1: 4}  # SIFA's contour map: 1 MYO, 2 LAC, 3 LVC, 4 AA
SUBJECTS = tuple(range(1001, 1021))
TEST_CASES = {"ct": (1003, 1008, 1014, 1019), "mr": (1007, 1009, 1018, 1019)}  # SIFA's test volumes
DEFAULT_SIZE = (256, 256)  # SIFA's slice size
RAW_INTENSITY = {"ct": {"range": [-400.0, 500.0]}, "mr": {"percentiles": [0.5, 99.5]}}
SIFA_INTENSITY = {"ct": {"range": [-2.8, 3.2]}, "mr": {"range": [-1.8, 4.4]}}  # SIFA's evaluate.py constants
MODALITIES = {"ct": "CT", "mr": "MR"}
SLICES_PER_FILE = 512


@register("mmwhs", task="cardiac")
def mmwhs(raw: Path, folder: Path, size: tuple[int, int] | None = DEFAULT_SIZE, seed: int = 0) -> list[Part]:
    """MM-WHS 2017's raw training volumes as the cardiac task's MR and CT parts.

    Args:
        raw: the unpacked release (``ct_train/``, ``mr_train/``).
        folder: the output folder's ``mmwhs``; the parts go beside it (``mmwhs_ct``, ``mmwhs_mr``).
        size: the in-plane size ``(H, W)``; ``(0, 0)`` keeps each volume's.
        seed: the seed of the validation volumes.

    Returns:
        The CT and MR parts (each either role).

    Raises:
        RawLayoutError: one line per missing or unreadable file (headers are read first, nothing
            written; a volume whose voxels cannot be read is reported once every other is written,
            and no part or datalist is written then).
    """
    problems, files = [], {}
    for modality, name in MODALITIES.items():
        for n in SUBJECTS:
            image = raw / f"{modality}_train" / f"{modality}_train_{n}_image.nii.gz"
            label = image.with_name(f"{modality}_train_{n}_label.nii.gz")
            problems += pair_problems(image, f"the {name} volume {n}", label)
            files[modality, n] = (image, label)
    raise_problems(raw, "mmwhs", problems)
    parts = []
    for modality, name in MODALITIES.items():
        cases = {n: files[modality, n] for n in SUBJECTS}
        entries = write_labelled_volumes(
            cases, folder.parent / f"mmwhs_{modality}", f"{modality}_{{}}", size, RAW_CODES, problems
        )
        others = [n for n in SUBJECTS if n not in TEST_CASES[modality]]
        validation = validation_cases(others, seed + (modality == "mr"))
        splits = {
            "training": [entries.get(n) for n in others if n not in validation],
            "validation": [entries.get(n) for n in validation],
            "test": [entries.get(n) for n in TEST_CASES[modality]],
        }
        domain = {"modality": name, "channels": 1, "intensity": RAW_INTENSITY[modality]}
        parts.append(Part(f"mmwhs_{modality}", "either", domain, LABELS, 3, splits))
    raise_problems(raw, "mmwhs", problems)
    return parts


def read_tfrecords(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file (``uint64`` length, its masked CRC-32C, the data, the data's CRC).

    The header checksum of every record is verified; the data's is not (CRC-32C in Python would
    take longer than the rest of the preparation), but a truncated record is reported.

    Args:
        path: the file.

    Yields:
        Each record's bytes.

    Raises:
        ValueError: not a TFRecord file, or truncated (the message names the file).
    """
    data, position = path.read_bytes(), 0
    while position < len(data):
        header, checksum = data[position : position + 8], data[position + 8 : position + 12]
        if len(checksum) < 4 or struct.unpack("<I", checksum)[0] != masked_crc32c(header):
            raise ValueError(f"{path}: not a TFRecord file (the record header at byte {position} fails its checksum).")
        end = position + 12 + struct.unpack("<Q", header)[0]
        if end + 4 > len(data):
            raise ValueError(f"{path}: truncated (a record ends at byte {end + 4}, the file at {len(data)}).")
        yield data[position + 12 : end]
        position = end + 4


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    """A protocol-buffer varint at ``position``: its value and the position after it."""
    value = shift = 0
    while True:
        byte = buffer[position]
        value, position, shift = value | (byte & 0x7F) << shift, position + 1, shift + 7
        if byte < 0x80:
            return value, position


def _fields(buffer: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """A protocol-buffer message's fields: ``(number, wire type, value)`` (bytes unless a varint)."""
    position = 0
    while position < len(buffer):
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(buffer, position)
        elif wire == 2:
            length, position = _varint(buffer, position)
            value, position = buffer[position : position + length], position + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = buffer[position : position + size], position + size
        else:
            raise ValueError(f"unsupported protocol-buffer wire type {wire}")
        yield number, wire, value


def parse_example(record: bytes) -> dict[str, bytes | list[int]]:
    """A ``tf.train.Example``'s features: a bytes feature's (first) value, an int64 feature's values.

    Args:
        record: a serialised ``Example`` (``features = 1``; ``Features.feature`` a map = 1;
            ``Feature``: ``bytes_list = 1``, ``int64_list = 3``).

    Returns:
        ``{name: bytes or [int]}`` (float features are not used by the release, and skipped).
    """
    features: dict[str, bytes | list[int]] = {}
    for number, _, message in _fields(record):
        if number != 1:  # Example.features
            continue
        for entry_number, _, entry in _fields(message):
            if entry_number != 1:  # Features.feature: map entries (key = 1, value = 2)
                continue
            fields = {n: v for n, _, v in _fields(entry)}
            key = bytes(fields.get(1, b"")).decode()
            for kind, _, values in _fields(fields.get(2, b"")):
                if kind == 1:  # BytesList: repeated bytes value = 1
                    features[key] = next((v for _, _, v in _fields(values)), b"")
                elif kind == 3:  # Int64List: repeated int64 value = 1, packed or not
                    features[key] = [i for _, wire, v in _fields(values) for i in ([v] if wire == 0 else _packed(v))]
    return features


def _packed(value: bytes) -> list[int]:
    """The varints of a packed repeated field."""
    out, position = [], 0
    while position < len(value):
        item, position = _varint(value, position)
        out.append(item)
    return out


def _sifa_slice(record: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The middle slice and its labels of one release record."""
    example = parse_example(record)
    try:
        shape = [example[f"dsize_dim{i}"][0] for i in range(3)]
        label_shape = [example[f"lsize_dim{i}"][0] for i in range(3)]
        data = np.frombuffer(example["data_vol"], np.float32).reshape(shape)
        labels = np.frombuffer(example["label_vol"], np.float32).reshape(label_shape)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"{path}: not a slice of the SIFA release ({type(error).__name__}: {error}).") from error
    return data[..., shape[2] // 2], labels[..., 0]


def _natural(path: Path) -> tuple:
    """Sorts ``slice2`` before ``slice10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def _write_slices(records: list[Path], out: Path, split: str) -> list[dict]:
    """The release's slices of one split, stacked into volumes of up to :data:`SLICES_PER_FILE`."""
    entries, images, labels = [], [], []

    def flush() -> None:
        name = f"{split}_{len(entries):03d}"
        save_nifti(out / "images" / f"{name}.nii.gz", np.stack(images, -1), np.eye(4))
        save_nifti(out / "labels" / f"{name}.nii.gz", map_labels(np.stack(labels, -1), SIFA_CODES, out), np.eye(4))
        entries.append({"image": f"{out.name}/images/{name}.nii.gz", "label": f"{out.name}/labels/{name}.nii.gz"})
        images.clear()
        labels.clear()

    for path in tqdm(records, desc=f"writing {out.name} {split}", unit="file", disable=len(records) < 20):
        for record in read_tfrecords(path):
            image, label = _sifa_slice(record, path)
            images.append(image)
            labels.append(label)
            if len(images) == SLICES_PER_FILE:
                flush()
    if images:
        flush()
    return entries


@register("mmwhs_sifa", task="cardiac_sifa")
def mmwhs_sifa(raw: Path, folder: Path, size: tuple[int, int] | None = None, seed: int = 0) -> list[Part]:
    """The PnP-AdaNet / SIFA preprocessed MM-WHS release as the cardiac task's MR and CT parts.

    Args:
        raw: the unpacked release (the ``*_tfs`` folders and the test volumes, anywhere below).
        folder: the output folder's ``mmwhs_sifa``; the parts go beside it.
        size: must be left out: the release's slices are 256 x 256.
        seed: unused (the release fixes the splits).

    Returns:
        The CT and MR parts (each either role).

    Raises:
        RawLayoutError: one line per missing or unreadable file; nothing written.
        ValueError: a ``size`` was given.
    """
    if size is not None:
        raise ValueError("--size does not apply to mmwhs_sifa: the release's slices are 256 x 256 as SIFA used them.")
    problems: list[str] = []
    records: dict[tuple[str, str], list[Path]] = {}
    tests: dict[str, dict[int, tuple[Path, Path]]] = {}
    for modality in MODALITIES:
        for split in ("train", "val"):
            found = sorted(p for p in raw.rglob(f"{modality}_{split}_tfs") if p.is_dir())
            files = sorted(found[0].glob("*.tfrecords"), key=_natural) if found else []
            if not files:
                problems.append(f"{raw}/**/{modality}_{split}_tfs: missing (a folder of *.tfrecords slices).")
            for path in files:
                with path.open("rb") as file:
                    head = file.read(12)
                if len(head) < 12 or struct.unpack("<I", head[8:])[0] != masked_crc32c(head[:8]):
                    problems.append(f"{path}: cannot be read as a TFRecord file (its first record header is invalid).")
            records[modality, split] = files
        tests[modality] = {}
        for image in sorted(raw.rglob(f"image_{modality}_*.nii.gz")):
            n = int(re.fullmatch(rf"image_{modality}_(\d+)\.nii\.gz", image.name)[1])
            label = image.with_name(f"gth_{modality}_{n}.nii.gz")
            tests[modality][n] = (image, label)
            problems += pair_problems(image, f"the {MODALITIES[modality]} test volume {n}", label)
        expected = TEST_CASES["ct"] if modality == "ct" else sorted(tests[modality])[:1] or ["<n>"]
        problems += [
            f"{raw}/**/image_{modality}_{n}.nii.gz: missing (a {MODALITIES[modality]} test volume)."
            for n in expected
            if n not in tests[modality]
        ]
    raise_problems(raw, "mmwhs_sifa", problems)
    parts = []
    for modality, name in MODALITIES.items():
        out = folder.parent / f"mmwhs_sifa_{modality}"
        try:
            splits = {
                "training": _write_slices(records[modality, "train"], out, "training"),
                "validation": _write_slices(records[modality, "val"], out, "validation"),
                "test": [],
            }
        except ValueError as error:
            raise_problems(raw, "mmwhs_sifa", [" ".join(str(error).split())])
        for n, (image, label) in sorted(tests[modality].items()):
            volume = np.flip(np.asarray(nib.load(image).dataobj, np.float32), (0, 1))
            labels = map_labels(np.flip(np.asarray(nib.load(label).dataobj), (0, 1)), SIFA_CODES, label)
            save_nifti(out / "images" / f"test_{n}.nii.gz", volume.copy(), np.eye(4))
            save_nifti(out / "labels" / f"test_{n}.nii.gz", labels, np.eye(4))
            splits["test"].append(
                {"image": f"{out.name}/images/test_{n}.nii.gz", "label": f"{out.name}/labels/test_{n}.nii.gz"}
            )
        domain = {"modality": name, "channels": 1, "intensity": SIFA_INTENSITY[modality]}
        parts.append(Part(f"mmwhs_sifa_{modality}", "either", domain, LABELS, 3, splits))
    return parts
