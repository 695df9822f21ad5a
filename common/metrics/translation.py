"""Image-translation metrics with RegGAN's definitions, for images scaled to [-1, 1].

RegGAN (Kong et al., NeurIPS 2021) scores a translation against its reference on the [0, 1]
scale: NMAE and PSNR over the foreground (the reference's pixels that are not background,
``real != -1``) and SSIM over the whole image with scikit-image's defaults (7x7 uniform
window, sample covariance) and a data range of 2 on the [-1, 1] scale. RegGAN's images are 2D
slices; :func:`slice_ssim` scores volumes the same way, slice by slice, and can restrict the
SSIM map to the body so that a flat background does not inflate it.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from common.metrics._inputs import ArrayLike, binary_mask, check_same_shape, to_numpy

__all__ = ["nmae", "psnr", "ssim", "slice_ssim", "PSNR_CAP"]

#: PSNR returned for (near-)identical foregrounds, RegGAN's cap (mean squared error < 1e-10).
PSNR_CAP = 100.0
_RANGE_TOLERANCE = 1e-6
_HALF_WINDOW = 3  # scikit-image's 7 x 7 window


def nmae(fake: ArrayLike, real: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Normalised mean absolute error on the foreground, on the [0, 1] scale.

    ``mean(|fake - real|) / 2`` over the foreground pixels: the pixels of ``mask``, or where
    ``real`` is not the background value -1 when no mask is given (RegGAN's definition).

    Args:
        fake: translated image in [-1, 1], any shape.
        real: reference image in [-1, 1], same shape.
        mask: optional binary foreground mask, same shape.

    Returns:
        The NMAE in [0, 1] (lower is better).

    Raises:
        ValueError: shapes differ, values outside [-1, 1] or not finite, a non-binary mask,
            or an empty foreground.
    """
    f, r, foreground = _translation_inputs(fake, real, mask)
    return float(np.abs(f[foreground] - r[foreground]).mean() / 2)


def psnr(fake: ArrayLike, real: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Peak signal-to-noise ratio on the foreground, on the [0, 1] scale (peak 1).

    ``20 log10(1 / sqrt(MSE))`` with the MSE of ``(fake + 1) / 2`` against ``(real + 1) / 2``
    over the foreground pixels (see :func:`nmae`). RegGAN's public code means this but
    indexes ``fake[x][y]``, which selects rows rather than foreground pixels; this function
    implements the stated intent.

    Args:
        fake: translated image in [-1, 1], any shape.
        real: reference image in [-1, 1], same shape.
        mask: optional binary foreground mask, same shape.

    Returns:
        The PSNR in dB (higher is better); :data:`PSNR_CAP` (100) when the MSE is below 1e-10.

    Raises:
        ValueError: as :func:`nmae`.
    """
    f, r, foreground = _translation_inputs(fake, real, mask)
    mse = float(np.mean(((f[foreground] - r[foreground]) / 2) ** 2))
    if mse < 1e-10:
        return PSNR_CAP
    return 20 * math.log10(1.0 / math.sqrt(mse))


def ssim(fake: ArrayLike, real: ArrayLike) -> float:
    """Structural similarity of the whole image, data range 2 on the [-1, 1] scale.

    scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window, sample
    covariance, K1 = 0.01, K2 = 0.03), as RegGAN's evaluation calls it. MONAI's
    ``SSIMMetric`` uses the population covariance and float32, which gives slightly
    different values, so it is not used here.

    Args:
        fake: translated 2D image or 3D volume in [-1, 1] (no channel axis).
        real: reference of the same shape.

    Returns:
        The mean SSIM (1 for identical images).

    Raises:
        ValueError: shapes differ, not 2D/3D, smaller than 7 along an axis, or values
            outside [-1, 1] or not finite.
    """
    f, r = _image(fake, "fake"), _image(real, "real")
    check_same_shape(f, r, "fake", "real")
    if f.ndim not in (2, 3):
        raise ValueError(f"`fake` and `real` must be 2D images or 3D volumes, got shape {f.shape}.")
    if min(f.shape) < 7:
        raise ValueError(f"`fake` and `real` must be at least 7 pixels along every axis for SSIM, got {f.shape}.")
    return float(structural_similarity(f, r, data_range=2.0))


def slice_ssim(fake: ArrayLike, real: ArrayLike, mask: ArrayLike | None = None) -> float:
    """SSIM per 2D slice, the SSIM map averaged within ``mask``, then averaged over the slices.

    A 2D image is one slice; a volume ``(H, W, D)`` is cut along its last axis (the axis the
    bundles slice for 2D networks). Each slice's SSIM map (:func:`ssim`'s settings) is averaged
    over the slice's ``mask`` pixels (the whole slice without a mask) whose 7 x 7 window lies
    inside the slice (scikit-image likewise leaves out a 3-pixel border); slices without such
    pixels are left out. Without a mask and for a 2D image this is :func:`ssim`.

    Args:
        fake: translated 2D image or 3D volume in [-1, 1] (no channel axis).
        real: reference of the same shape.
        mask: optional binary mask of the pixels to score (e.g. the body), same shape.

    Returns:
        The mean over slices of the mean SSIM within the mask.

    Raises:
        ValueError: as :func:`ssim`, a non-binary mask of another shape, or an empty mask.
    """
    f, r = _image(fake, "fake"), _image(real, "real")
    check_same_shape(f, r, "fake", "real")
    if f.ndim not in (2, 3):
        raise ValueError(f"`fake` and `real` must be 2D images or 3D volumes, got shape {f.shape}.")
    if min(f.shape[:2]) < 7:
        raise ValueError(f"`fake` and `real` slices must be at least 7 x 7 pixels for SSIM, got {f.shape}.")
    inside = np.ones(f.shape, bool) if mask is None else binary_mask(mask, "mask", spatial=False)
    check_same_shape(f, inside, "fake", "mask")
    if f.ndim == 2:
        f, r, inside = f[..., None], r[..., None], inside[..., None]
    border = np.zeros(f.shape[:2], bool)
    border[_HALF_WINDOW:-_HALF_WINDOW, _HALF_WINDOW:-_HALF_WINDOW] = True  # where the window fits
    inside = inside & border[..., None]
    if not inside.any():
        raise ValueError("`mask` has no pixel at least 3 pixels inside the image: there is nothing to score.")
    values = []
    for k in range(f.shape[-1]):
        if inside[..., k].any():
            _, image = structural_similarity(f[..., k], r[..., k], data_range=2.0, full=True)
            values.append(image[inside[..., k]].mean())
    return float(np.mean(values))


def _translation_inputs(
    fake: ArrayLike, real: ArrayLike, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both images as float64 arrays and the boolean foreground to score."""
    f, r = _image(fake, "fake"), _image(real, "real")
    check_same_shape(f, r, "fake", "real")
    if mask is None:
        foreground = r != -1
        if not foreground.any():
            raise ValueError("`real` has no foreground (every pixel is the background value -1); pass `mask`.")
        return f, r, foreground
    foreground = binary_mask(mask, "mask", spatial=False)
    check_same_shape(f, foreground, "fake", "mask")
    if not foreground.any():
        raise ValueError("`mask` is empty: there is no foreground to score.")
    return f, r, foreground


def _image(value: ArrayLike, name: str) -> np.ndarray:
    array = to_numpy(value, name).astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    low, high = float(array.min()), float(array.max())
    if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(f"`{name}` must be scaled to [-1, 1], got values in [{low:.4g}, {high:.4g}].")
    return array
