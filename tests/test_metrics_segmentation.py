"""Dice, ASSD, HD95 and per-volume evaluation: closed forms, an independent brute-force
implementation, medpy (the pooled variants) and MONAI."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist

from common.metrics import assd, dice_score, evaluate_segmentation, hd95

# --- independent references -------------------------------------------------------------


def brute_force_surface(mask: np.ndarray) -> np.ndarray:
    """Coordinates of mask voxels with a face neighbour outside the mask (or outside the image)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = np.ones_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            interior &= np.roll(padded, step, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return np.argwhere(mask & ~interior).astype(float)


def brute_force_directed(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    scale = np.ones(a.ndim) if spacing is None else np.asarray(spacing, float)
    pa, pb = brute_force_surface(a) * scale, brute_force_surface(b) * scale
    distances = cdist(pa, pb)
    return distances.min(axis=1), distances.min(axis=0)


def random_blob(shape, seed: int, threshold: float = 0.15) -> np.ndarray:
    field = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma=3)
    return field > threshold * field.std()


CASES = [
    ((48, 40), None),
    ((48, 40), (1.5, 0.7)),
    ((24, 20, 18), None),
    ((24, 20, 18), (2.5, 1.0, 0.8)),
]


@pytest.mark.parametrize("shape,spacing", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_against_independent_implementation(shape, spacing, seed):
    pred, gt = random_blob(shape, seed), random_blob(shape, seed + 100)
    to_gt, to_pred = brute_force_directed(pred, gt, spacing)
    assert to_gt.size != to_pred.size  # the two variants differ on these masks
    np.testing.assert_allclose(assd(pred, gt, spacing), (to_gt.mean() + to_pred.mean()) / 2, rtol=1e-6)
    np.testing.assert_allclose(assd(pred, gt, spacing, pooled=True), np.concatenate([to_gt, to_pred]).mean(), rtol=1e-6)
    np.testing.assert_allclose(
        hd95(pred, gt, spacing), max(np.percentile(to_gt, 95), np.percentile(to_pred, 95)), rtol=1e-6
    )
    np.testing.assert_allclose(
        hd95(pred, gt, spacing, pooled=True), np.percentile(np.r_[to_gt, to_pred], 95), rtol=1e-6
    )
    overlap = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
    assert dice_score(pred, gt) == pytest.approx(overlap, abs=1e-12)


@pytest.mark.parametrize("shape,spacing", CASES)
def test_pooled_variants_match_medpy_and_monai(shape, spacing):
    pred, gt = random_blob(shape, 7), random_blob(shape, 8)
    np.testing.assert_allclose(
        assd(pred, gt, spacing, pooled=True), medpy_binary.assd(pred, gt, voxelspacing=spacing), rtol=1e-6
    )
    np.testing.assert_allclose(
        hd95(pred, gt, spacing, pooled=True), medpy_binary.hd95(pred, gt, voxelspacing=spacing), rtol=1e-6
    )
    assert dice_score(pred, gt) == pytest.approx(medpy_binary.dc(pred, gt), abs=1e-12)
    # MONAI's symmetric average surface distance pools the lists; its HD95 is our default.
    onehot = [torch.from_numpy(m)[None, None].float() for m in (pred, gt)]
    monai_assd = compute_average_surface_distance(*onehot, include_background=True, symmetric=True, spacing=spacing)
    monai_hd95 = compute_hausdorff_distance(*onehot, include_background=True, percentile=95, spacing=spacing)
    np.testing.assert_allclose(assd(pred, gt, spacing, pooled=True), float(monai_assd), rtol=1e-5)
    np.testing.assert_allclose(hd95(pred, gt, spacing), float(monai_hd95), rtol=1e-5)
    assert dice_score(pred, gt) == pytest.approx(float(compute_dice(*onehot, ignore_empty=False)), abs=1e-6)


def test_default_and_pooled_assd_differ_when_surfaces_differ_in_size():
    small = np.zeros((40, 40), bool)
    small[18:22, 18:22] = True
    large = np.zeros((40, 40), bool)
    large[8:32, 8:32] = True
    to_gt, to_pred = brute_force_directed(small, large, None)
    assert assd(small, large) == pytest.approx((to_gt.mean() + to_pred.mean()) / 2)
    # The large square's 92 surface pixels lie farther from the small one than its 12 do from
    # the large one, and they outnumber them: pooling weights them more.
    assert assd(small, large, pooled=True) - assd(small, large) > 0.4


# --- closed forms ---------------------------------------------------------------------


def centred_box(shape, half_widths) -> np.ndarray:
    centre = [n // 2 for n in shape]
    box = np.zeros(shape, bool)
    box[tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half_widths, strict=True))] = True
    return box


def nested_box_distances(shape, inner, outer, spacing):
    """Directed surface distances of two nested boxes from coordinates alone (no distance transform).

    An inner-surface voxel p lies inside the outer box, so its distance to the outer surface is
    min_i (outer_i - |p_i|) s_i; an outer-surface voxel q lies outside the inner box, so its
    distance to the inner surface is its distance to the inner box, |max(|q| - inner, 0) * s|.
    """
    inner, outer, s = (np.asarray(v, float) for v in (inner, outer, spacing))

    def surface(half):
        offsets = np.array(list(itertools.product(*[range(-int(h), int(h) + 1) for h in half])), float)
        return offsets[(np.abs(offsets) == half).any(axis=1)]

    inner_to_outer = ((outer - np.abs(surface(inner))) * s).min(axis=1)
    outer_to_inner = np.linalg.norm(np.maximum(np.abs(surface(outer)) - inner, 0) * s, axis=1)
    return inner_to_outer, outer_to_inner


@pytest.mark.parametrize(
    "shape,inner,outer,spacing",
    [
        ((41, 41), (6, 6), (11, 11), (1.0, 1.0)),
        ((41, 45), (5, 9), (12, 14), (1.5, 0.6)),
        ((25, 25, 25), (4, 4, 4), (8, 8, 8), (1.0, 1.0, 1.0)),
        ((25, 29, 31), (3, 6, 5), (7, 9, 11), (2.5, 1.0, 0.8)),
    ],
)
def test_nested_boxes_closed_form(shape, inner, outer, spacing):
    pred, gt = centred_box(shape, inner), centred_box(shape, outer)
    to_gt, to_pred = nested_box_distances(shape, inner, outer, spacing)
    assert assd(pred, gt, spacing) == pytest.approx((to_gt.mean() + to_pred.mean()) / 2, rel=1e-6)
    assert assd(pred, gt, spacing, pooled=True) == pytest.approx(np.r_[to_gt, to_pred].mean(), rel=1e-6)
    assert hd95(pred, gt, spacing) == pytest.approx(max(np.percentile(to_gt, 95), np.percentile(to_pred, 95)), rel=1e-6)
    assert dice_score(pred, gt) == pytest.approx(2 * pred.sum() / (pred.sum() + gt.sum()))


def test_concentric_squares_by_hand():
    # Inner ring r1 = 3, outer ring r2 = 5 (d = 2): every inner-ring pixel is d from the outer
    # ring; on each side of the outer ring 7 pixels are d away, 2 are sqrt(d^2 + 1) and the
    # corner is d sqrt(2): mean (4 * (7 * 2 + 2 * sqrt(5)) + 4 * 2 sqrt(2)) / 40.
    pred, gt = centred_box((21, 21), (3, 3)), centred_box((21, 21), (5, 5))
    outer_mean = (4 * (7 * 2 + 2 * math.sqrt(5)) + 4 * 2 * math.sqrt(2)) / 40
    assert assd(pred, gt) == pytest.approx((2 + outer_mean) / 2, rel=1e-9)
    assert assd(pred, gt, pooled=True) == pytest.approx((24 * 2 + 40 * outer_mean) / 64, rel=1e-9)


def ball(shape, spacing, radius) -> np.ndarray:
    axes = [(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing, strict=True)]
    return sum(g**2 for g in np.meshgrid(*axes, indexing="ij")) <= radius**2


@pytest.mark.parametrize(
    "spacing,shape,shift_voxels,axis",
    [
        ((1.0, 1.0, 1.0), (48, 48, 48), 3, 0),
        ((1.0, 1.0, 1.0), (48, 48, 48), 8, 2),
        ((2.0, 1.0, 0.75), (28, 56, 72), 3, 0),
    ],
)
def test_sphere_and_shifted_sphere(spacing, shape, shift_voxels, axis):
    # Two spheres of radius R, centres t < R apart: the distance from a point of one surface to
    # the other, |sqrt(R^2 + t^2 - 2Rt cos) - R|, is uniform on [0, t] for points uniform on the
    # sphere, so ASSD = t / 2 and HD95 = 0.95 t. Voxel surfaces are not uniform samples of the
    # sphere (their density depends on orientation), which is why the tolerance is 7 %; on a
    # strongly anisotropic grid that bias reaches 20 % for the mean, so there only HD95 is checked.
    sphere = ball(shape, spacing, radius=16)
    shifted = np.roll(sphere, shift_voxels, axis=axis)
    t = shift_voxels * spacing[axis]
    assert hd95(sphere, shifted, spacing) == pytest.approx(0.95 * t, rel=0.07)
    if len(set(spacing)) == 1:
        assert assd(sphere, shifted, spacing) == pytest.approx(t / 2, rel=0.07)


# --- empty masks, inputs and errors -----------------------------------------------------


def test_empty_masks_have_documented_values():
    empty, square = np.zeros((10, 10), bool), centred_box((10, 10), (2, 2))
    assert (dice_score(empty, empty), assd(empty, empty), hd95(empty, empty)) == (1.0, 0.0, 0.0)
    for pred, gt in ((empty, square), (square, empty)):
        assert dice_score(pred, gt) == 0.0
        assert assd(pred, gt) == math.inf and hd95(pred, gt) == math.inf
        assert assd(pred, gt, pooled=True) == math.inf and hd95(pred, gt, pooled=True) == math.inf


def test_torch_and_integer_inputs_agree_with_numpy():
    pred, gt = random_blob((30, 30, 20), 3), random_blob((30, 30, 20), 4)
    expected = (dice_score(pred, gt), assd(pred, gt, (1, 1, 2)), hd95(pred, gt, (1, 1, 2)))
    for convert in (torch.from_numpy, lambda m: m.astype(np.uint8), lambda m: torch.from_numpy(m.astype(np.float32))):
        got = (
            dice_score(convert(pred), convert(gt)),
            assd(convert(pred), convert(gt), (1, 1, 2)),
            hd95(convert(pred), convert(gt), (1, 1, 2)),
        )
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    "pred,gt,spacing,pattern",
    [
        (np.zeros((5, 5)), np.zeros((5, 6)), None, r"`pred` and `gt` must have the same shape"),
        (np.zeros((5, 5)), np.full((5, 5), 2), None, r"`gt` must be a binary mask.*\[2\]"),
        (np.full((5, 5), 0.5), np.zeros((5, 5)), None, r"`pred` must be a binary mask"),
        (np.zeros((5, 5), complex), np.zeros((5, 5)), None, r"`pred` must have a boolean, integer or floating dtype"),
        (np.array([["a"]]), np.zeros((1, 1)), None, r"`pred` must have a boolean, integer or floating dtype"),
        ([[0, 1]], np.zeros((1, 2)), None, r"`pred` must be a numpy array or a torch tensor"),
        (np.zeros(5), np.zeros(5), None, r"`pred` must be a 2D or 3D mask"),
        (np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)), None, r"`pred` must be a 2D or 3D mask"),
        (np.zeros((5, 5)), np.zeros((5, 5)), (1.0, 1.0, 1.0), r"`spacing` must have one value per axis \(2\)"),
        (np.zeros((5, 5)), np.zeros((5, 5)), (1.0, -1.0), r"`spacing` values must be positive and finite"),
    ],
)
def test_bad_inputs_name_the_argument(pred, gt, spacing, pattern):
    with pytest.raises(ValueError, match=pattern):
        assd(pred, gt, spacing)
    if spacing is None:
        with pytest.raises(ValueError, match=pattern):
            dice_score(pred, gt)


# --- per-volume evaluation --------------------------------------------------------------


def label_volume(seed: int) -> np.ndarray:
    labels = np.zeros((24, 28, 20), np.int64)
    for value, (blob_seed, threshold) in enumerate([(seed, 1.0), (seed + 1, 1.2), (seed + 2, 1.4)], start=1):
        labels[random_blob(labels.shape, blob_seed, threshold)] = value
    return labels


def test_evaluate_segmentation_per_class_and_mean():
    pred, gt = label_volume(0), label_volume(10)
    spacing = (1.5, 1.0, 2.0)
    result = evaluate_segmentation(pred, gt, {"0": "background", "1": "liver", "2": "kidney", "3": "spleen"}, spacing)
    assert list(result["per_class"]) == ["liver", "kidney", "spleen"]
    for value, name in enumerate(["liver", "kidney", "spleen"], start=1):
        p, g = pred == value, gt == value
        assert result["per_class"][name] == pytest.approx(
            {"dice": dice_score(p, g), "assd": assd(p, g, spacing), "hd95": hd95(p, g, spacing)}
        )
    for key in ("dice", "assd", "hd95"):
        assert result["mean"][key] == pytest.approx(np.mean([v[key] for v in result["per_class"].values()]))
    assert 0 < result["mean"]["dice"] < 1


def test_evaluate_segmentation_scores_regions_made_of_several_classes():
    """REFUGE's coding: 1 the disc outside the cup, 2 the cup; the optic disc is 1 and 2 together."""
    pred, gt = label_volume(0) % 3, label_volume(10) % 3
    classes = {"0": "background", "1": "disc_rim", "2": "cup"}
    result = evaluate_segmentation(pred, gt, classes, None, regions={"optic_disc": [1, 2], "optic_cup": [2]})
    assert list(result["per_class"]) == ["optic_disc", "optic_cup"]
    disc_p, disc_g = pred > 0, gt > 0
    assert result["per_class"]["optic_disc"] == pytest.approx(
        {"dice": dice_score(disc_p, disc_g), "assd": assd(disc_p, disc_g), "hd95": hd95(disc_p, disc_g)}
    )
    assert result["per_class"]["optic_cup"]["dice"] == pytest.approx(dice_score(pred == 2, gt == 2))
    by_class = evaluate_segmentation(pred, gt, classes, None)["per_class"]
    assert result["per_class"]["optic_disc"]["dice"] not in (by_class["disc_rim"]["dice"], by_class["cup"]["dice"])


def test_evaluate_segmentation_missing_class_and_sequence_of_classes():
    gt = label_volume(0)
    pred = np.where(gt == 2, 0, gt)  # the kidney is missed entirely
    result = evaluate_segmentation(pred, gt, [1, 2, 3])
    assert result["per_class"]["1"]["dice"] == 1.0 and result["per_class"]["1"]["assd"] == 0.0
    assert result["per_class"]["2"] == {"dice": 0.0, "assd": math.inf, "hd95": math.inf}
    assert result["mean"]["dice"] == pytest.approx(2 / 3) and result["mean"]["assd"] == math.inf


@pytest.mark.parametrize(
    "pred,gt,classes,pattern",
    [
        (np.full((4, 4), 5), np.zeros((4, 4)), [1, 2], r"`pred_labels` contains label values \[5\] .*\[1, 2\]"),
        (np.zeros((4, 4)), np.full((4, 4), -1), [1], r"`gt_labels` contains label values \[-1\]"),
        (np.full((4, 4), 0.5), np.zeros((4, 4)), [1], r"`pred_labels` must contain integer label values"),
        (np.zeros((4, 4)), np.zeros((4, 5)), [1], r"`pred_labels` and `gt_labels` must have the same shape"),
        (np.zeros((4, 4)), np.zeros((4, 4)), {"0": "background"}, r"`classes` declares no foreground class"),
        (np.zeros((4, 4)), np.zeros((4, 4)), {"liver": "1"}, r"`classes` keys must be integer label values"),
        (np.zeros((4, 4)), np.zeros((4, 4)), ["liver"], r"`classes` must be a mapping or a sequence"),
    ],
)
def test_evaluate_segmentation_errors(pred, gt, classes, pattern):
    with pytest.raises(ValueError, match=pattern):
        evaluate_segmentation(pred, gt, classes)
