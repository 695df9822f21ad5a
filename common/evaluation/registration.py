"""How much misalignment RegGAN's registration network R leaves: the quantity behind its stability.

For every test pair and misalignment level, the aligned reference (the target domain) is moved
by a known random misalignment (:func:`common.data.phantoms.misalignment_field`, RegGAN's
levels), R is asked to align the translation ``G(x)`` onto it, as in training, and its
displacement is compared with the exact one: the endpoint error in pixels over the head, next
to the error of the identity (no registration, the misalignment itself).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset
from torch import nn

from common.data.datalist import entries
from common.data.io import paired_transform
from common.data.phantoms import misalignment_field, resample
from common.evaluation.report import as_slices, write_json

__all__ = ["evaluate_registration"]

logger = logging.getLogger(__name__)


def evaluate_registration(
    generator: nn.Module,
    registration: nn.Module,
    datalist: dict,
    output_dir: str | Path,
    levels: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
    split: str = "test",
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict:
    """R's residual misalignment per level, written to ``output_dir/registration.json``.

    Args:
        generator: ``G`` (T1 -> T2).
        registration: ``R(moving, fixed)``, a displacement in pixels (MONAI ``Warp`` convention).
        datalist: a loaded datalist with a ``paired`` section whose entries have ``reference``.
        output_dir: the folder (created).
        levels: misalignment levels 0-5.
        split: the split to evaluate.
        device: where to run.
        seed: the seed of the misalignments (the same for every model, so runs compare).

    Returns:
        ``{"levels": {L: {"endpoint_error", "identity_error", "residual_fraction"}}, "pairs": n,
        "slices": m}``: mean endpoint errors (pixels) over the head of the misaligned reference,
        per 2D slice (a volume's slices each; slices without head are skipped), and their ratio
        (0 = R removes all the misalignment, 1 = none of it).
    """
    device = torch.device(device)
    data = CacheDataset(
        entries(datalist, "paired", split), paired_transform(datalist, ("image", "reference")), progress=False
    )
    generator, registration = generator.to(device).eval(), registration.to(device).eval()
    rng = np.random.default_rng(seed)
    errors: dict[int, list[tuple[float, float]]] = {level: [] for level in levels}
    slices = 0
    for item in data:  # volumes slice by slice, as R sees them in training
        images, references = as_slices(item["image"]).to(device), as_slices(item["reference"]).numpy()
        with torch.no_grad():
            translations = generator(images)
        for translation, reference in zip(translations, references, strict=True):
            if not (reference[0] > -1 + 1e-3).any():
                continue  # a slice without head: nothing to align
            slices += 1
            _score_slice(registration, translation[None], reference, levels, rng, errors, device)
    result = {"levels": {}, "pairs": len(data), "slices": slices, "seed": seed}
    for level, values in errors.items():
        endpoint, identity = (float(np.mean(v)) for v in zip(*values, strict=True))
        result["levels"][str(level)] = {
            "endpoint_error": endpoint,
            "identity_error": identity,
            "residual_fraction": endpoint / identity if identity > 0 else None,
        }
        logger.info("level %d: R leaves %.2f px of %.2f px misalignment", level, endpoint, identity)
    write_json(result, Path(output_dir) / "registration.json")
    return result


def _score_slice(
    registration: nn.Module,
    translation: torch.Tensor,
    reference: np.ndarray,
    levels: tuple[int, ...],
    rng: np.random.Generator,
    errors: dict[int, list[tuple[float, float]]],
    device: torch.device,
) -> None:
    """R's endpoint error and the misalignment's, over the head, for one slice at every level."""
    shape = reference.shape[-2:]
    grid = np.indices(shape).astype(float)
    for level in levels:
        if level:
            field = misalignment_field(shape, level, rng)
            fixed = resample(reference, field, order=1, cval=-1.0)
        else:
            field, fixed = grid, reference
        with torch.no_grad():
            ddf = registration(translation, torch.as_tensor(fixed[None], device=device)).cpu().numpy()[0]
        head = fixed[0] > -1 + 1e-3  # the misaligned head: the background is exactly -1
        true = field - grid
        endpoint = np.linalg.norm(ddf - true, axis=0)[head].mean()
        identity = np.linalg.norm(true, axis=0)[head].mean()
        errors[level].append((float(endpoint), float(identity)))
