"""Input checks shared by the metrics: conversion to numpy and errors that name the argument."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def to_numpy(value: ArrayLike, name: str) -> np.ndarray:
    """Returns ``value`` as a numpy array (a tensor is detached and moved to the CPU).

    Raises:
        ValueError: ``value`` is neither a numpy array nor a torch tensor, or has a
            non-numeric dtype.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    if not isinstance(value, np.ndarray):
        raise ValueError(f"`{name}` must be a numpy array or a torch tensor, got {type(value).__name__}.")
    if not (
        np.issubdtype(value.dtype, np.bool_)
        or np.issubdtype(value.dtype, np.integer)
        or np.issubdtype(value.dtype, np.floating)
    ):
        raise ValueError(f"`{name}` must have a boolean, integer or floating dtype, got {value.dtype}.")
    return value


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raises ``ValueError`` naming both arguments when their shapes differ."""
    if a.shape != b.shape:
        raise ValueError(f"`{name_a}` and `{name_b}` must have the same shape, got {a.shape} and {b.shape}.")


def binary_mask(value: ArrayLike, name: str, spatial: bool = True) -> np.ndarray:
    """Returns a binary mask as a boolean array.

    Boolean arrays are taken as they are; integer and floating arrays must contain only 0 and 1.

    Args:
        value: the mask.
        name: the argument's name, for error messages.
        spatial: require a 2D or 3D mask (surface metrics); otherwise any shape is accepted.

    Raises:
        ValueError: wrong type or dtype, not 2D/3D when ``spatial``, or values other than 0 and 1.
    """
    array = to_numpy(value, name)
    if spatial and array.ndim not in (2, 3):
        raise ValueError(f"`{name}` must be a 2D or 3D mask, got {array.ndim} dimensions (shape {array.shape}).")
    if array.dtype == np.bool_:
        return array
    values = np.unique(array)
    if not np.isin(values, (0, 1)).all():
        shown = values[~np.isin(values, (0, 1))][:5].tolist()
        raise ValueError(f"`{name}` must be a binary mask (values 0 and 1 only), found values {shown}.")
    return array.astype(bool)


def check_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    """Returns the voxel spacing as one positive finite number per axis, or ``None``.

    Raises:
        ValueError: wrong length, or a value that is not positive and finite.
    """
    if spacing is None:
        return None
    values = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(values) != ndim:
        raise ValueError(f"`spacing` must have one value per axis ({ndim}), got {len(values)}: {values}.")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"`spacing` values must be positive and finite, got {values}.")
    return values
