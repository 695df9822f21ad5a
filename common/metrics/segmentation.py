"""Overlap and surface-distance metrics for binary masks and label maps, 2D or 3D.

Surfaces are the mask minus its erosion with the face-connected structuring element (the
definition of medpy and of MONAI's ``get_mask_edges``), and distances are exact Euclidean
distances between surface voxels, in mm when a voxel spacing is given, else in voxels. The
building blocks are MONAI's (``get_mask_edges``, ``get_surface_distance``);
only the way the two directed distance lists are combined is ours, because the papers this
project reproduces (SIFA and its successors) average the two directed means, which neither
medpy 0.5 nor MONAI's ``SurfaceDistanceMetric`` does.

Empty masks, by definition here:

============================  ==========  ===================
case                          Dice        ASSD, HD95
============================  ==========  ===================
both masks empty              1.0         0.0
exactly one mask empty        0.0         ``inf``
============================  ==========  ===================

A surface distance to an empty mask is undefined; ``inf`` (rather than NaN) keeps the
failure visible in every mean it enters instead of silently dropping it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from monai.metrics.utils import get_mask_edges, get_surface_distance

from common.metrics._inputs import ArrayLike, binary_mask, check_same_shape, check_spacing, to_numpy

__all__ = ["dice_score", "assd", "hd95", "evaluate_segmentation"]

Spacing = float | Sequence[float] | None


def dice_score(pred: ArrayLike, gt: ArrayLike) -> float:
    """Dice coefficient ``2 |P & G| / (|P| + |G|)`` of two binary masks.

    Args:
        pred: predicted binary mask, 2D or 3D (bool, or integers/floats that are 0 or 1).
        gt: reference binary mask of the same shape.

    Returns:
        The Dice coefficient in [0, 1]; 1.0 when both masks are empty, 0.0 when only one is.

    Raises:
        ValueError: wrong type or dtype, not 2D/3D, not binary, or shapes that differ.
    """
    p, g = _binary_pair(pred, gt)
    # Counted here rather than with MONAI's `compute_dice` (same definition, also 1.0 for two
    # empty masks with `ignore_empty=False`), which divides in float32.
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return 1.0
    return 2 * int(np.logical_and(p, g).sum()) / total


def assd(pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None, pooled: bool = False) -> float:
    """Average symmetric surface distance of two binary masks.

    By default the mean of the two directed average surface distances,
    ``(ASD(P->G) + ASD(G->P)) / 2``, as the SIFA evaluation code and medpy up to 0.4 define it.
    With ``pooled=True`` the two lists of distances are pooled before averaging, as medpy 0.5
    and MONAI's ``SurfaceDistanceMetric(symmetric=True)`` do; the two agree when both surfaces
    have the same number of voxels and differ otherwise.

    Args:
        pred: predicted binary mask, 2D or 3D.
        gt: reference binary mask of the same shape.
        spacing: voxel spacing, one number or one per axis; distances are then in mm (or the
            unit of the spacing), otherwise in voxels.
        pooled: average the pooled distance lists instead of the two directed means.

    Returns:
        The ASSD; 0.0 when both masks are empty, ``inf`` when only one is.

    Raises:
        ValueError: invalid masks (see :func:`dice_score`) or spacing.
    """
    p, g = _binary_pair(pred, gt)
    return _assd(_surface_distances(p, g, check_spacing(spacing, p.ndim)), pooled)


def hd95(pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None, pooled: bool = False) -> float:
    """95th percentile Hausdorff distance of two binary masks.

    By default ``max(P95(d(P->G)), P95(d(G->P)))``, the definition of MONAI's
    ``HausdorffDistanceMetric(percentile=95)``; with ``pooled=True`` the 95th percentile of the
    pooled distance lists, the definition of medpy's ``hd95``. Percentiles interpolate
    linearly (numpy's default).

    Args:
        pred: predicted binary mask, 2D or 3D.
        gt: reference binary mask of the same shape.
        spacing: voxel spacing, one number or one per axis (distances in mm), or ``None``
            (distances in voxels).
        pooled: take the percentile of the pooled distance lists.

    Returns:
        The HD95; 0.0 when both masks are empty, ``inf`` when only one is.

    Raises:
        ValueError: invalid masks (see :func:`dice_score`) or spacing.
    """
    p, g = _binary_pair(pred, gt)
    return _hd95(_surface_distances(p, g, check_spacing(spacing, p.ndim)), pooled)


def evaluate_segmentation(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    classes: Mapping[int | str, str] | Sequence[int],
    spacing: Spacing = None,
    pooled: bool = False,
    regions: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, dict]:
    """Per-class Dice, ASSD and HD95 of one 2D image or 3D volume of integer labels.

    Args:
        pred_labels: predicted label map (integers; 0 is the background).
        gt_labels: reference label map of the same shape.
        classes: the foreground classes, either a mapping from label value to name (the
            datalist's ``labels``, e.g. ``{"0": "background", "1": "liver"}``; value 0 is
            skipped) or a sequence of label values (named by their value).
        spacing: voxel spacing (distances in mm) or ``None`` (distances in voxels).
        pooled: the ASSD/HD95 variant, see :func:`assd` and :func:`hd95`.
        regions: the scored structures, when they are not the classes one by one: each a union
            of label values (nested structures coded as disjoint classes, e.g. REFUGE's optic
            disc, which contains the cup: ``{"optic_disc": [1, 2], "optic_cup": [2]}``).

    Returns:
        ``{"per_class": {name: {"dice", "assd", "hd95"}}, "mean": {"dice", "assd", "hd95"}}``,
        the mean taken over the foreground classes (or the regions; ``inf`` when any distance is).

    Raises:
        ValueError: label maps of different shapes, not 2D/3D, non-integer labels, label
            values that are neither background nor a declared class, or no foreground class.
    """
    pred = _label_map(pred_labels, "pred_labels")
    gt = _label_map(gt_labels, "gt_labels")
    check_same_shape(pred, gt, "pred_labels", "gt_labels")
    named = _named_classes(classes)
    allowed = np.array([0, *named])
    for name, labels in (("pred_labels", pred), ("gt_labels", gt)):
        unknown = np.setdiff1d(np.unique(labels), allowed)
        if unknown.size:
            raise ValueError(
                f"`{name}` contains label values {unknown[:5].tolist()} that are not declared in `classes` "
                f"(expected 0 for the background or one of {sorted(named)})."
            )
    voxel_spacing = check_spacing(spacing, pred.ndim)
    per_class: dict[str, dict[str, float]] = {}
    scored = {name: list(values) for name, values in regions.items()} if regions else {n: [v] for v, n in named.items()}
    for name, values in scored.items():
        p, g = np.isin(pred, values), np.isin(gt, values)
        distances = _surface_distances(p, g, voxel_spacing)
        per_class[name] = {"dice": dice_score(p, g), "assd": _assd(distances, pooled), "hd95": _hd95(distances, pooled)}
    mean = {key: float(np.mean([scores[key] for scores in per_class.values()])) for key in ("dice", "assd", "hd95")}
    return {"per_class": per_class, "mean": mean}


def _binary_pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, g = binary_mask(pred, "pred"), binary_mask(gt, "gt")
    check_same_shape(p, g, "pred", "gt")
    return p, g


def _surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...] | None
) -> tuple[np.ndarray, np.ndarray] | float:
    """The directed distances (pred surface to gt surface, gt surface to pred surface).

    Returns 0.0 instead when both masks are empty and ``inf`` when one is.
    """
    pred_empty, gt_empty = not pred.any(), not gt.any()
    if pred_empty and gt_empty:
        return 0.0
    if pred_empty or gt_empty:
        return math.inf
    # Edges without `spacing`: MONAI's subvoxel edges (used when it gets a spacing) are a
    # different surface definition; spacing only scales the distances.
    edges_pred, edges_gt = get_mask_edges(pred, gt, crop=True)
    to_gt = get_surface_distance(edges_pred, edges_gt, distance_metric="euclidean", spacing=spacing)
    to_pred = get_surface_distance(edges_gt, edges_pred, distance_metric="euclidean", spacing=spacing)
    return np.asarray(to_gt, dtype=np.float64), np.asarray(to_pred, dtype=np.float64)


def _assd(distances: tuple[np.ndarray, np.ndarray] | float, pooled: bool) -> float:
    if isinstance(distances, float):
        return distances
    to_gt, to_pred = distances
    if pooled:
        return float(np.concatenate([to_gt, to_pred]).mean())
    return float((to_gt.mean() + to_pred.mean()) / 2)


def _hd95(distances: tuple[np.ndarray, np.ndarray] | float, pooled: bool) -> float:
    if isinstance(distances, float):
        return distances
    to_gt, to_pred = distances
    if pooled:
        return float(np.percentile(np.concatenate([to_gt, to_pred]), 95))
    return float(max(np.percentile(to_gt, 95), np.percentile(to_pred, 95)))


def _label_map(value: ArrayLike, name: str) -> np.ndarray:
    array = to_numpy(value, name)
    if array.ndim not in (2, 3):
        raise ValueError(f"`{name}` must be a 2D or 3D label map, got {array.ndim} dimensions (shape {array.shape}).")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"`{name}` must contain integer label values, found non-integer or non-finite values.")
    return array.astype(np.int64)


def _named_classes(classes: Mapping[int | str, str] | Sequence[int]) -> dict[int, str]:
    if isinstance(classes, Mapping):
        try:
            named = {int(value): str(name) for value, name in classes.items()}
        except (TypeError, ValueError) as error:
            raise ValueError(f"`classes` keys must be integer label values, got {list(classes)}.") from error
    elif isinstance(classes, Sequence) and not isinstance(classes, str):
        if not all(isinstance(value, (int, np.integer)) for value in classes):
            raise ValueError(f"`classes` must be a mapping or a sequence of integer label values, got {classes}.")
        named = {int(value): str(int(value)) for value in classes}
    else:
        raise ValueError(f"`classes` must be a mapping or a sequence of integer label values, got {classes!r}.")
    named.pop(0, None)
    if not named:
        raise ValueError("`classes` declares no foreground class (label values other than 0).")
    return named
