"""Translation and segmentation inference on files: 2D images directly, 3D volumes slice by
slice along the last axis (MONAI ``SliceInferer``), outputs with the input's geometry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
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

__all__ = ["input_files", "translate", "translate_files", "segment_files"]

logger = logging.getLogger(__name__)


def input_files(source: str | Path, split: str = "test", domain: str = "source") -> list[str]:
    """The images to run inference on.

    Args:
        source: a datalist JSON (the images of its ``domain`` section's ``split``, or of its
            ``paired`` section's when it has no such section), a folder (every image in it, and
            every sub-folder as a DICOM series) or one image file.
        split: the datalist split to use.
        domain: the datalist section to use (``target`` for a bundle that adapts target images).

    Returns:
        Image paths, sorted.

    Raises:
        ValueError: the path does not exist or holds no image.
    """
    source = Path(source)
    if source.suffix == ".json":
        datalist = load_datalist(source)
        section = domain if domain in datalist else "paired"  # a paired datalist's images are in the source domain
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


def translate(
    network: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
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

    def write(output: torch.Tensor, image: MetaTensor, path: str, two_d: bool) -> str:
        extension = ".png" if two_d else ".nii.gz"
        saver = SaveImage(
            output_ext=extension,
            print_log=False,
            scale=255 if two_d else None,
            output_dtype=np.uint8 if two_d else np.float32,
        )
        target = Path(output_dir) / f"{image_stem(path)}_trans"
        saver(MetaTensor(((output + 1) / 2 if two_d else output).float(), meta=image.meta), filename=str(target))
        return f"{target}{extension}"

    written = _run_files(network, files, output_dir, intensity, device, "translating", write)
    logger.info("Wrote %d translations to %s", len(written), output_dir)
    return written


def segment_files(
    network: nn.Module,
    files: Sequence[str],
    output_dir: str | Path,
    intensity: Mapping[str, Sequence[float]],
    device: torch.device | str = "cpu",
) -> list[str]:
    """Segments every file with a network that returns a label map (e.g. a
    ``TranslateThenSegment``) and writes it beside its name in ``output_dir``.

    NIfTI and DICOM inputs give NIfTI label volumes (uint8) with the input's affine; PNG/JPEG/TIFF
    inputs give 8-bit PNG label maps (pixel value = class index).

    Args:
        network: the network (``network_def`` with its weights), ``(B, C, H, W) -> (B, 1, H, W)``.
        files: input paths (see :func:`input_files`).
        output_dir: where to write.
        intensity: the input domain's normalisation (the datalist's ``intensity`` entry).
        device: where to run.

    Returns:
        The written paths.
    """

    def write(output: torch.Tensor, image: MetaTensor, path: str, two_d: bool) -> str:
        extension = ".png" if two_d else ".nii.gz"
        saver = SaveImage(output_ext=extension, print_log=False, output_dtype=np.uint8, scale=None)
        target = Path(output_dir) / f"{image_stem(path)}_seg"
        saver(MetaTensor(output.round().to(torch.uint8), meta=image.meta), filename=str(target))
        return f"{target}{extension}"

    written = _run_files(network, files, output_dir, intensity, device, "segmenting", write)
    logger.info("Wrote %d label maps to %s", len(written), output_dir)
    return written


def _run_files(
    network: nn.Module,
    files: Sequence[str],
    output_dir: str | Path,
    intensity: Mapping[str, Sequence[float]],
    device: torch.device | str,
    description: str,
    write,
) -> list[str]:
    """Loads and normalises each file, runs the network (volumes slice by slice) and lets
    ``write(output, image, path, two_d)`` save the result; returns the written paths."""
    loader = LoadImageByTyped("image")
    normalise = intensity_transform("image", intensity)
    network = network.to(device).eval()
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(files, desc=description, unit="image"):
        image = normalise(loader({"image": path}))["image"]
        output = translate(network, image.to(device)).cpu()
        written.append(write(output, image, path, reader_for(path) == "PILReader"))
    return written
