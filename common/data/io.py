"""Reading and writing images: MONAI readers chosen by file type, NIfTI/PNG writers and
intensity normalisation to [-1, 1].

MONAI's ``LoadImaged`` picks a reader by trying the registered ones in turn, and its ITK
reader claims every file when ITK is installed, so single DICOM files would never reach
pydicom. :class:`LoadImageByTyped` makes the choice explicit: NIfTI through nibabel, DICOM
series (a folder) through ITK, single DICOM files through pydicom, PNG/JPEG/TIFF through PIL.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImage,
    MapTransform,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Transform,
)
from PIL import Image

__all__ = [
    "image_stem",
    "reader_for",
    "is_plain_image",
    "LoadImageByTyped",
    "intensity_transform",
    "output_intensity_transform",
    "domain_transform",
    "paired_transform",
    "write_nifti",
    "write_png",
]

_READERS = {
    ".nii": "NibabelReader",
    ".nii.gz": "NibabelReader",
    ".dcm": "PydicomReader",
    ".png": "PILReader",
    ".jpg": "PILReader",
    ".jpeg": "PILReader",
    ".bmp": "PILReader",
    ".tif": "PILReader",
    ".tiff": "PILReader",
}


def image_stem(path: str | Path) -> str:
    """A file's name without its image extension (``ct.nii.gz`` -> ``ct``; a DICOM-series folder's name as it is).

    Args:
        path: an image file or folder.

    Returns:
        The stem.
    """
    name = Path(path).name
    suffix = next((s for s in _READERS if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def is_plain_image(path: str | Path) -> bool:
    """Whether a path names a 2D image file read with PIL (PNG, JPEG, BMP, TIFF), by its name only.

    Args:
        path: an image path (it need not exist).

    Returns:
        ``True`` for PNG, JPEG, BMP and TIFF names.
    """
    name = Path(path).name.lower()
    return any(name.endswith(suffix) for suffix, reader in _READERS.items() if reader == "PILReader")


def reader_for(path: str | Path) -> str:
    """The MONAI reader for a file or DICOM-series folder.

    Args:
        path: an image file, or a folder holding one DICOM series.

    Returns:
        ``"NibabelReader"``, ``"ITKReader"`` (DICOM series), ``"PydicomReader"`` or ``"PILReader"``.

    Raises:
        ValueError: the path does not exist or has an unsupported type.
    """
    path = Path(path)
    if path.is_dir():
        return "ITKReader"
    if not path.exists():
        raise ValueError(f"Image file not found: {path}")
    name = path.name.lower()
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return reader
    raise ValueError(
        f"Unsupported image type: {path} (expected NIfTI .nii/.nii.gz, DICOM .dcm or a DICOM-series folder, "
        "PNG, JPEG, BMP or TIFF)."
    )


class LoadImageByTyped(MapTransform):
    """``LoadImaged`` with the reader chosen per file by :func:`reader_for`, channel first.

    Args:
        keys: keys of the image paths to load.
        allow_missing_keys: skip keys that are absent.

    Raises:
        ValueError: (when called) a missing or unsupported file.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self._loaders: dict[str, LoadImage] = {}  # made on first use: some readers log on creation

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """Loads every key's file.

        Args:
            data: a datalist entry.

        Returns:
            The entry with each key's path replaced by its image (a ``MetaTensor``).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            reader = reader_for(path)
            if reader not in self._loaders:
                self._loaders[reader] = _load_image(reader)
            try:
                d[key] = self._loaders[reader](path)
            except Exception as error:  # the readers raise many types; name the file
                raise ValueError(f"Could not read `{key}` image {path} with {reader}: {error}") from error
        return d


def _load_image(reader: str) -> LoadImage:
    """MONAI's ``LoadImage`` for one reader, channel first.

    ``LoadImage`` instantiates every default reader, and MONAI's nvImageCodec DICOM reader then
    warns on machines without nvImageCodec, which says nothing about the file being read.
    """
    plugin_logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = plugin_logger.level
    plugin_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
            return LoadImage(reader=reader, image_only=True, ensure_channel_first=True)
    finally:
        plugin_logger.setLevel(level)


def intensity_transform(keys: KeysCollection, spec: Mapping[str, Sequence[float]]) -> Transform:
    """Normalisation to [-1, 1] (clipped) from a domain's ``intensity`` entry of the datalist.

    Args:
        keys: the image keys.
        spec: ``{"range": [low, high]}`` (fixed constants, e.g. HU for CT) or
            ``{"percentiles": [low, high]}`` (per image, e.g. MR).

    Returns:
        MONAI's ``ScaleIntensityRanged`` or ``ScaleIntensityRangePercentilesd``.

    Raises:
        ValueError: neither or both entries, or not two increasing numbers.
    """
    if len(spec) != 1 or next(iter(spec)) not in ("range", "percentiles"):
        raise ValueError(f"`intensity` must have exactly one of 'range' or 'percentiles', got {dict(spec)}.")
    kind, values = next(iter(spec.items()))
    if len(values) != 2 or not values[0] < values[1]:
        raise ValueError(f"`intensity.{kind}` must be two increasing numbers, got {values}.")
    if kind == "range":
        return ScaleIntensityRanged(keys, a_min=values[0], a_max=values[1], b_min=-1.0, b_max=1.0, clip=True)
    return ScaleIntensityRangePercentilesd(keys, lower=values[0], upper=values[1], b_min=-1.0, b_max=1.0, clip=True)


def output_intensity_transform(keys: KeysCollection, spec: Mapping[str, Sequence[float]]) -> Transform:
    """The way back from [-1, 1] to a domain's intensities, for a translation into that domain.

    Args:
        keys: the translated image keys.
        spec: the output domain's ``intensity`` entry of the datalist: ``{"range": [low, high]}``
            maps [-1, 1] back onto [low, high] (HU for CT, 0-255 for 8-bit images); a
            ``{"percentiles": ...}`` domain (MR) has no absolute scale, and [-1, 1] becomes 0-255
            (arbitrary units).

    Returns:
        MONAI's ``ScaleIntensityRanged`` (clipped).

    Raises:
        ValueError: an invalid ``spec`` (as :func:`intensity_transform`).
    """
    intensity_transform(keys, spec)  # validates
    kind, values = next(iter(spec.items()))
    low, high = values if kind == "range" else (0.0, 255.0)
    return ScaleIntensityRanged(keys, a_min=-1.0, a_max=1.0, b_min=float(low), b_max=float(high), clip=True)


def domain_transform(datalist: dict, domain: str, keys: Sequence[str] = ("image", "label")) -> Compose:
    """Loading and [-1, 1] normalisation of one domain's images, as the datalist describes it.

    Args:
        datalist: a loaded datalist.
        domain: ``"source"`` or ``"target"``.
        keys: the keys to load; ``image`` is normalised.

    Returns:
        The MONAI transform.
    """
    spec = datalist["domains"][domain]["intensity"]
    return Compose([LoadImageByTyped(keys), intensity_transform("image", spec), EnsureTyped(keys, track_meta=True)])


def paired_transform(datalist: dict, keys: Sequence[str] = ("image", "target"), domain: str = "source") -> Compose:
    """Loading and [-1, 1] normalisation of paired samples: ``image`` as the ``domain``, every
    other key (``target``, ``reference``) as the other domain.

    Args:
        datalist: a loaded datalist (with a ``paired`` section, or entries with a ``reference``).
        keys: the keys to load; must include ``image``.
        domain: the domain of ``image``: ``source`` (the ``paired`` section's) or ``target``.

    Returns:
        The MONAI transform.

    Raises:
        ValueError: ``keys`` without ``image``.
    """
    if "image" not in keys:
        raise ValueError(f"`keys` must include 'image', got {list(keys)}.")
    others, other_domain = [k for k in keys if k != "image"], "target" if domain == "source" else "source"
    transforms = [LoadImageByTyped(keys), intensity_transform("image", datalist["domains"][domain]["intensity"])]
    if others:
        transforms.append(intensity_transform(others, datalist["domains"][other_domain]["intensity"]))
    return Compose([*transforms, EnsureTyped(keys, track_meta=True)])


def write_nifti(path: Path, array: np.ndarray, spacing: Sequence[float]) -> None:
    """Writes an array as NIfTI with a diagonal affine of the given spacing (RAS, origin 0).

    Args:
        path: output path (``.nii.gz``).
        array: 2D or 3D array.
        spacing: voxel size in mm per axis.
    """
    affine = np.diag([*spacing, *([1.0] * (3 - len(spacing))), 1.0])
    image = nib.Nifti1Image(array, affine)
    image.header.set_zooms(tuple(spacing))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def write_png(path: Path, array: np.ndarray) -> None:
    """Writes an RGB image ``(3, H, W)`` in [0, 1] as 8-bit RGB, or a label map ``(H, W)`` as 8-bit values.

    Args:
        path: output path (``.png``).
        array: the image or label map; PNG rows are the array's second axis, columns the first,
            so that MONAI's ``PILReader`` (which transposes) reads back the same array.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        pixels = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8).transpose(2, 1, 0)
    else:
        pixels = array.astype(np.uint8).T
    Image.fromarray(pixels).save(path)
