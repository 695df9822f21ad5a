"""NMAE, PSNR and SSIM with RegGAN's definitions: closed forms and an independent SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from common.metrics import PSNR_CAP, nmae, psnr, slice_ssim, ssim


def phantom(shape=(32, 40), seed=0) -> np.ndarray:
    """An image in [-1, 1] whose background (outside a centred box) is exactly -1."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, -1.0)
    inner = tuple(slice(n // 4, 3 * n // 4) for n in shape)
    image[inner] = rng.uniform(-0.8, 0.8, size=image[inner].shape)
    return image


def test_nmae_and_psnr_closed_form_on_the_foreground():
    real = phantom()
    fake = real.copy()
    foreground = real != -1
    fake[foreground] += 0.2  # |error| = 0.2 on [-1, 1], 0.1 on [0, 1]
    fake[~foreground] = 0.7  # background errors are not scored
    assert nmae(fake, real) == pytest.approx(0.1)
    assert psnr(fake, real) == pytest.approx(20 * math.log10(1 / 0.1))


def test_explicit_mask_selects_the_pixels():
    real, fake = phantom(), phantom(seed=1)
    mask = np.zeros(real.shape, bool)
    mask[10:14, 12:20] = True
    diff = np.abs(fake - real)[mask] / 2
    assert nmae(fake, real, mask) == pytest.approx(diff.mean())
    assert psnr(fake, real, mask.astype(np.uint8)) == pytest.approx(-10 * math.log10(np.mean(diff**2)))
    # RGB (channels first) works with a mask of the same shape.
    rgb_real, rgb_fake = np.stack([real] * 3), np.stack([fake] * 3)
    assert nmae(rgb_fake, rgb_real, np.stack([mask] * 3)) == pytest.approx(diff.mean())


def test_identical_images():
    real = phantom()
    assert nmae(real, real) == 0.0
    assert psnr(real, real) == PSNR_CAP == 100.0
    assert ssim(real, real) == pytest.approx(1.0)


def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 2.0, win: int = 7, mean: bool = True):
    """SSIM from its definition: 7x7 uniform windows fully inside the image, sample covariance
    (the map of window centres when not ``mean``)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    wx, wy = sliding_window_view(x, (win,) * x.ndim), sliding_window_view(y, (win,) * y.ndim)
    axes = tuple(range(x.ndim, 2 * x.ndim))
    mx, my = wx.mean(axis=axes), wy.mean(axis=axes)
    vx, vy = wx.var(axis=axes, ddof=1), wy.var(axis=axes, ddof=1)
    cov = ((wx - np.expand_dims(mx, axes)) * (wy - np.expand_dims(my, axes))).sum(axis=axes) / (win**x.ndim - 1)
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean()) if mean else s


@pytest.mark.parametrize("shape", [(32, 40), (12, 16, 14)])
def test_ssim_against_its_definition(shape):
    real = phantom(shape)
    fake = np.clip(real + np.random.default_rng(5).normal(0, 0.1, shape), -1, 1)
    assert ssim(fake, real) == pytest.approx(reference_ssim(fake, real), rel=1e-9)
    assert 0.2 < ssim(fake, real) < 0.99


def test_slice_ssim_is_the_2d_ssim_per_slice_within_the_mask():
    real = phantom((24, 28, 8))
    fake = np.clip(real + np.random.default_rng(6).normal(0, 0.1, real.shape), -1, 1)
    # Without a mask: the mean over slices of RegGAN's 2D SSIM (not the 3D SSIM of the volume).
    per_slice = [reference_ssim(fake[..., k], real[..., k]) for k in range(8)]
    assert slice_ssim(fake, real) == pytest.approx(np.mean(per_slice), rel=1e-9)
    assert slice_ssim(fake, real) != pytest.approx(ssim(fake, real), abs=1e-3)
    assert slice_ssim(fake[..., 2], real[..., 2]) == pytest.approx(ssim(fake[..., 2], real[..., 2]), rel=1e-12)
    # Within the body: each slice's map averaged over the body's window centres; slices
    # without body (0, 1, 6, 7, and 5 cleared here) are left out.
    body = real != -1
    body[..., 5] = False
    expected = [reference_ssim(fake[..., k], real[..., k], mean=False)[body[3:-3, 3:-3, k]].mean() for k in (2, 3, 4)]
    assert slice_ssim(fake, real, body) == pytest.approx(np.mean(expected), rel=1e-9)
    # A flat background that both images share inflates the whole-image SSIM, not the body's.
    noisy = np.clip(real + np.random.default_rng(7).normal(0, 0.4, real.shape) * (real != -1), -1, 1)
    assert slice_ssim(noisy, real) - slice_ssim(noisy, real, real != -1) > 0.1


def test_ssim_of_constant_images_closed_form():
    # No variance: SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 2)^2.
    a, b = np.full((16, 16), 0.5), np.full((16, 16), -0.25)
    c1 = (0.01 * 2) ** 2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * -0.25 + c1) / (0.5**2 + 0.25**2 + c1))


def test_torch_inputs():
    real, fake = phantom(), phantom(seed=3)
    assert nmae(torch.from_numpy(fake), torch.from_numpy(real)) == pytest.approx(nmae(fake, real))
    assert ssim(torch.from_numpy(fake).bfloat16(), torch.from_numpy(real)) == pytest.approx(
        ssim(torch.from_numpy(fake).bfloat16().float().numpy(), real)
    )


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda r: nmae(r[:, :-1], r), r"`fake` and `real` must have the same shape"),
        (lambda r: nmae(r * 2, r), r"`fake` must be scaled to \[-1, 1\], got values in \[-2, "),
        (lambda r: psnr(r, np.where(r > 0, np.nan, r)), r"`real` contains NaN"),
        (lambda r: nmae(r, np.full_like(r, -1)), r"`real` has no foreground"),
        (lambda r: psnr(r, r, np.zeros_like(r)), r"`mask` is empty"),
        (lambda r: nmae(r, r, np.full_like(r, 3)), r"`mask` must be a binary mask"),
        (lambda r: nmae(r, r, np.ones((3, 3))), r"`fake` and `mask` must have the same shape"),
        (lambda r: ssim(r[:5, :5], r[:5, :5]), r"at least 7 pixels"),
        (lambda r: ssim(np.stack([r] * 3, -1)[None], np.stack([r] * 3, -1)[None]), r"2D images or 3D volumes"),
        (lambda r: slice_ssim(r[:6], r[:6]), r"at least 7 x 7 pixels"),
        (lambda r: slice_ssim(r, r, np.ones((3, 3))), r"`fake` and `mask` must have the same shape"),
        (lambda r: slice_ssim(r, r, np.pad(np.ones((2, 2)), ((0, 30), (0, 38)))), r"`mask` has no pixel at least 3"),
    ],
)
def test_bad_inputs_name_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(phantom())
