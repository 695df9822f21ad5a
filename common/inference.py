"""Inference in MONAI's bundle conventions: the inputs (a datalist, a folder or a file), the
inferer (2D images whole, 3D volumes slice by slice along the last axis with MONAI's
``SliceInferer``) and the writer (``SaveImaged`` writing each output as its input was stored, with
its geometry). The bundles' ``inference.yaml`` combine them with ``LoadImageByTyped``, the
recorded intensity normalisation and a ``SupervisedEvaluator``; MONAI Label drives the same
``preprocessing``, ``inferer`` and ``postprocessing``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import create_file_basename
from monai.inferers import SliceInferer
from monai.transforms import SaveImaged

from common.data.datalist import entries, load_checked, load_datalist, size_problems
from common.data.io import LoadImageByTyped, is_plain_image, reader_for

__all__ = ["input_files", "check_inputs", "output_path", "SliceOrImageInferer", "SaveLikeInputd", "translate"]

logger = logging.getLogger(__name__)
FEW_INSIDE = 0.05  # warn when less than this fraction of an input lies inside a fixed intensity range


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


def output_path(path: str | Path, output_dir: str | Path, postfix: str) -> Path:
    """Where :class:`SaveLikeInputd` writes the output of an input (MONAI's ``SaveImaged`` naming).

    Args:
        path: the input file (or DICOM series folder).
        output_dir: the output folder.
        postfix: the output postfix (``seg``, ``trans``).

    Returns:
        ``output_dir/<input name>_<postfix>.<png|nii.gz>``.
    """
    extension = ".png" if is_plain_image(path) else ".nii.gz"
    return Path(
        create_file_basename(postfix, str(path), str(output_dir), separate_folder=False, makedirs=False) + extension
    )


def check_inputs(
    files: Sequence[str],
    channels: int,
    output_dir: str | Path,
    postfix: str,
    network: torch.nn.Module | None = None,
    intensity: Mapping[str, Sequence[float]] | None = None,
) -> list[str]:
    """Checks every inference input before any is processed, reporting every bad one.

    Each input must be readable, a 2D image or a 3D volume with ``channels`` channels and finite
    values, of an in-plane size ``network`` keeps, and map to its own output file. An input
    whose values lie mostly outside a fixed ``intensity`` range (clipped to a near-constant
    image) is named in a warning with the fraction clipped and the setting to change.

    Args:
        files: the inputs (:func:`input_files`).
        channels: the network's input channels.
        output_dir: where the outputs go.
        postfix: the outputs' postfix.
        network: the network (its in-plane sizes are probed once per size; ``None``: not probed).
        intensity: the input normalisation (``{"range": ...}`` is checked for clipping).

    Returns:
        ``files``.

    Raises:
        ValueError: one line per bad input, naming it and what was expected; nothing is written.
    """
    loader = LoadImageByTyped(keys="image")
    problems: list[str] = []
    sizes: dict[tuple[int, ...], list[str]] = {}
    outputs: dict[Path, str] = {}
    for file in files:
        output = output_path(file, output_dir, postfix)
        if output in outputs:
            problems.append(f"{file} and {outputs[output]} would both be written to {output}; rename one.")
        outputs.setdefault(output, file)
        image, problem = load_checked(loader, "image", file)
        if problem:
            problems.append(f"{file} {problem}.")
            continue
        if image.ndim not in (3, 4):
            problems.append(f"{file} has {image.ndim - 1} spatial dimensions, expected a 2D image or a 3D volume.")
        elif image.shape[0] != channels:
            problems.append(f"{file} has {image.shape[0]} channels, expected {channels}.")
        else:
            values = np.asarray(image)
            if not np.isfinite(values).all():
                problems.append(f"{file} contains NaN or infinite values; expected finite values.")
                continue
            sizes.setdefault(tuple(image.shape[1:3]), []).append(str(file))
            _warn_if_clipped(file, values, intensity)
    if network is not None:
        problems += size_problems(sizes, network, channels)
    if problems:
        raise ValueError(
            f"{len(problems)} problem(s) with the inference inputs, one per line (nothing was written):\n"
            + "\n".join(problems)
        )
    return list(files)


def _warn_if_clipped(file: str, values: np.ndarray, intensity: Mapping[str, Sequence[float]] | None) -> None:
    """Warns when a fixed intensity range leaves (nearly) nothing of an input but its two clipped ends."""
    if not intensity or "range" not in intensity:
        return
    low, high = intensity["range"]
    inside = float(np.mean((values > low) & (values < high)))
    if inside < FEW_INSIDE:
        logger.warning(
            "%s: only %.1f %% of its values lie inside the intensity range [%g, %g] that the bundle maps to [-1, 1]; "
            "the rest are clipped to its ends, a nearly constant image (its values span %g to %g). If it is not "
            "stored like the training data, set --intensity \"{'range': [LOW, HIGH]}\" (or \"{'percentiles': "
            '[0.5, 99.5]}") for it',
            file,
            100 * inside,
            low,
            high,
            float(values.min()),
            float(values.max()),
        )


class SliceOrImageInferer(SliceInferer):
    """A 2D network on 2D images or on 3D volumes: MONAI's ``SliceInferer`` for volumes
    ``(B, C, H, W, D)`` (every slice along the last axis, whole, ``sw_batch_size`` slices per
    forward pass), a plain forward pass (``SimpleInferer``) for images ``(B, C, H, W)``.

    Args:
        sw_batch_size: slices per forward pass for volumes.
        kwargs: further ``SliceInferer`` arguments (e.g. ``device`` to stitch on).
    """

    def __init__(self, sw_batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(roi_size=(-1, -1), sw_batch_size=sw_batch_size, spatial_dim=2, **kwargs)

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Runs ``network`` on a batch of images or volumes.

        Args:
            inputs: ``(B, C, H, W)`` or ``(B, C, H, W, D)``.
            network: a 2D network.
            args: passed to ``network``.
            kwargs: passed to ``network``.

        Returns:
            The output, with the input's spatial shape.

        Raises:
            ValueError: the input is neither 4D nor 5D.
        """
        if inputs.ndim == 4:
            return network(inputs, *args, **kwargs)
        if inputs.ndim != 5:
            raise ValueError(
                f"Expected a batch of 2D images or 3D volumes, got a tensor of shape {tuple(inputs.shape)}."
            )
        return super().__call__(inputs, network, *args, **kwargs)


def translate(
    network: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """Runs a 2D network on one channel-first image ``(C, H, W)`` or volume ``(C, H, W, D)``
    (slice by slice), without gradients: :class:`SliceOrImageInferer` for one input.

    Args:
        network: a 2D network, in eval mode, on the image's device.
        image: the normalised input.
        batch_size: slices per forward pass for volumes.

    Returns:
        The output, same spatial shape.
    """
    with torch.no_grad():
        return SliceOrImageInferer(sw_batch_size=batch_size)(image[None], network)[0]


class SaveLikeInputd(SaveImaged):
    """MONAI's ``SaveImaged``, writing each output as its input was stored: an 8-bit PNG for 2D
    images read with PIL (PNG, JPEG, BMP, TIFF; values rounded and clipped to 0-255), NIfTI with
    the input's affine otherwise (NIfTI and DICOM inputs), as
    ``output_dir/<input name>_<output_postfix>.<png|nii.gz>``. The input is the output's
    ``filename_or_obj`` (its metadata, carried from the image through inference).

    Args:
        keys: the outputs to write.
        output_dir: where to write.
        output_postfix: appended to the input's name (``seg``, ``trans``).
        output_dtype: the NIfTI data type.
        kwargs: further ``SaveImaged`` arguments.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | Path,
        output_postfix: str,
        output_dtype: Any = np.float32,
        **kwargs: Any,
    ) -> None:
        options = {"resample": False, "separate_folder": False, "print_log": False, **kwargs}
        super().__init__(
            keys,
            output_dir=output_dir,
            output_postfix=output_postfix,
            output_ext=".nii.gz",
            output_dtype=output_dtype,
            **options,
        )
        self.png = SaveImaged(
            keys,
            output_dir=output_dir,
            output_postfix=output_postfix,
            output_ext=".png",
            output_dtype=np.uint8,
            scale=None,
            **options,
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Writes every key's output.

        Args:
            data: one decollated sample, the outputs ``MetaTensor``s with their input's metadata.

        Returns:
            The sample, unchanged.

        Raises:
            ValueError: an output without its input's file name, or with NaN or infinite values
                (nothing is written for it).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            output = d[key]
            path = output.meta.get("filename_or_obj") if isinstance(output, MetaTensor) else None
            if not path:
                raise ValueError(f"SaveLikeInputd: {key!r} carries no input file name (filename_or_obj).")
            if output.is_floating_point() and not bool(torch.isfinite(output).all()):
                raise ValueError(f"The output for {path} holds NaN or infinite values; it was not written.")
            if is_plain_image(path):
                self.png({key: output.round().clamp(0, 255)})
            else:
                super().__call__({key: output})
        return d
