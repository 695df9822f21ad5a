"""Translation (and later segmentation) inference on files: 2D images directly, 3D volumes
slice by slice along the last axis (MONAI ``SliceInferer``), outputs with the input's geometry."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.transforms import SaveImage
from torch import nn
from tqdm import tqdm

from common.data.datalist import entries, load_datalist
from common.data.io import LoadImageByTyped, image_stem, intensity_transform, reader_for

__all__ = ["input_files", "translate", "translate_files"]

logger = logging.getLogger(__name__)


def input_files(source: str | Path, split: str = "test") -> list[str]:
    """The images to run inference on.

    Args:
        source: a datalist JSON (the images of its ``source`` section's ``split``, or of its
            ``paired`` section's when it has no ``source``), a folder (every image in it, and
            every sub-folder as a DICOM series) or one image file.
        split: the datalist split to use.

    Returns:
        Image paths, sorted.

    Raises:
        ValueError: the path does not exist or holds no image.
    """
    source = Path(source)
    if source.suffix == ".json":
        datalist = load_datalist(source)
        section = "source" if "source" in datalist else "paired"  # a paired datalist's images are in the source domain
        return [entry["image"] for entry in entries(datalist, section, split)]
    if source.is_file():
        reader_for(source)
        return [str(source)]
    if not source.is_dir():
        raise ValueError(f"Inference input not found: {source} (expected a datalist, a folder or an image).")
    files = []
    for path in sorted(source.iterdir()):
        try:
            reader_for(path)
        except ValueError:
            continue
        files.append(str(path))
    if not files:
        raise ValueError(f"No image in {source} (NIfTI, DICOM, PNG, JPEG, BMP or TIFF).")
    return files


def translate(network: nn.Module, image: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Translates one channel-first image ``(C, H, W)`` or volume ``(C, H, W, D)`` slice by slice.

    Args:
        network: a 2D image-to-image network, in eval mode, on the image's device.
        image: the normalised input.
        batch_size: slices per forward pass for volumes.

    Returns:
        The translation, same spatial shape.
    """
    with torch.no_grad():
        if image.ndim == 4:
            inferer = SliceInferer(roi_size=tuple(image.shape[1:3]), sw_batch_size=batch_size, spatial_dim=2)
            return inferer(image[None], network)[0]
        return network(image[None])[0]


def translate_files(
    network: nn.Module,
    files: Sequence[str],
    output_dir: str | Path,
    intensity: Mapping[str, Sequence[float]],
    device: torch.device | str = "cpu",
) -> list[str]:
    """Translates every file and writes the result beside its name in ``output_dir``.

    NIfTI and DICOM inputs give NIfTI outputs in [-1, 1] with the input's affine; PNG/JPEG/TIFF
    inputs give 8-bit PNGs (``[-1, 1]`` mapped to 0-255).

    Args:
        network: the translation network (``network_def`` with its weights).
        files: input paths (see :func:`input_files`).
        output_dir: where to write.
        intensity: the input domain's normalisation (the datalist's ``intensity`` entry).
        device: where to run.

    Returns:
        The written paths.
    """
    loader = LoadImageByTyped("image")
    normalise = intensity_transform("image", intensity)
    network = network.to(device).eval()
    written = []
    for path in tqdm(files, desc="translating", unit="image"):
        image = normalise(loader({"image": path}))["image"]
        output = translate(network, image.to(device)).cpu()
        two_d = reader_for(path) == "PILReader"
        extension = ".png" if two_d else ".nii.gz"
        saver = SaveImage(output_ext=extension, print_log=False, scale=255 if two_d else None,
                          output_dtype=np.uint8 if two_d else np.float32)
        values = (output + 1) / 2 if two_d else output
        target = Path(output_dir) / f"{image_stem(path)}_trans"
        target.parent.mkdir(parents=True, exist_ok=True)
        saver(MetaTensor(values.float(), meta=image.meta), filename=str(target))
        written.append(f"{target}{extension}")
    logger.info("Wrote %d translations to %s", len(written), output_dir)
    return written

