"""Trained bundles describe themselves: training records the settings of the release network
(sizes, channels, classes, the input's intensity normalisation, the datalist) and the preset it
was trained with in ``models/model_settings.json`` next to ``models/model.pt``; ``inference.yaml``
reads each setting with :func:`trained` (its own value is the default for an untrained bundle),
so inference, ``common.bundle check`` and export work after training with any preset without
repeating its overlays. :func:`load_release` loads the weights strictly, with a one-line error
naming the bundle, the preset and the mismatched keys; :class:`ReleaseCheckpointLoader` is the
same as the ``CheckpointLoader`` handler of ``inference.yaml``'s evaluator."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.handlers import CheckpointLoader
from torch import nn

__all__ = [
    "SETTINGS_FILENAME",
    "record_settings",
    "read_settings",
    "trained",
    "load_release",
    "ReleaseCheckpointLoader",
    "bundle_relative",
]

SETTINGS_FILENAME = "model_settings.json"


def _plain(value: Any, key: str) -> Any:
    """``value`` as JSON types (tuples become lists, tensors and numpy scalars numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"Setting {key!r} of the release network is a {type(value).__name__}; expected JSON values.")


def bundle_relative(path: str | Path, bundle_root: str | Path) -> str:
    """``path`` relative to the bundle when it lies inside it (the bundle can move with its
    data), else absolute: what ``os.path.join(bundle_root, ...)`` in ``inference.yaml`` resolves.

    Args:
        path: e.g. the datalist training read.
        bundle_root: the bundle folder.

    Returns:
        The path to record.
    """
    path, root = Path(path).resolve(), Path(bundle_root).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def record_settings(ckpt_dir: str | Path, settings: Mapping[str, Any], preset: str) -> Path:
    """Writes ``ckpt_dir/model_settings.json`` (a temporary file, then a rename).

    Args:
        ckpt_dir: the bundle's ``models`` folder.
        settings: ``{inference.yaml id: value}`` for the release network.
        preset: the preset the run was trained with (``default``, ``quick``, ``cpu``, ...).

    Returns:
        The path written.

    Raises:
        ValueError: a setting that is not a JSON value.
    """
    from common.evaluation.report import write_json  # common.evaluation imports the engines

    record = {"preset": str(preset), "settings": _plain(dict(settings), "settings")}
    return write_json(record, Path(ckpt_dir) / SETTINGS_FILENAME)


def read_settings(ckpt_dir: str | Path) -> dict | None:
    """The record training wrote, or None before any training.

    Raises:
        ValueError: the record exists but is not a settings record (naming the file).
    """
    path = Path(ckpt_dir) / SETTINGS_FILENAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not readable JSON ({error}); train the bundle again or delete it.") from error
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise ValueError(f"{path} has no 'settings' object; train the bundle again or delete it.")
    return record


def trained(ckpt_dir: str | Path, key: str, default: Any) -> Any:
    """A setting of the trained release network: the value training recorded, else ``default``
    (the bundle's shipped value, for a bundle not trained yet or a record without the key).

    Args:
        ckpt_dir: the bundle's ``models`` folder.
        key: the setting's id in ``inference.yaml``.
        default: the value before training.

    Returns:
        The value.
    """
    record = read_settings(ckpt_dir)
    return record["settings"].get(key, default) if record else default


def load_release(
    network: nn.Module, ckpt_dir: str | Path, device: torch.device | str = "cpu", bundle: str | None = None
) -> nn.Module:
    """Loads ``ckpt_dir/model.pt`` into ``network``, strictly.

    Args:
        network: the release network (``network_def``).
        ckpt_dir: the bundle's ``models`` folder.
        device: where to map the weights.
        bundle: the bundle's name, for the error (default: the folder above ``ckpt_dir``).

    Returns:
        ``network``.

    Raises:
        ValueError: the weights are missing or do not fit ``network``, in one line naming the
            bundle, the preset the weights were trained with and the mismatched keys.
    """
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / "model.pt"
    name = bundle or ckpt_dir.resolve().parent.name
    if not path.is_file():
        raise ValueError(
            f"{path} not found: train the bundle {name!r} first (python -m monai.bundle run training ...)."
        )
    state = torch.load(path, map_location=device, weights_only=True)
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    resized = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or resized:
        record = read_settings(ckpt_dir)
        trained_with = f"trained with the preset {record['preset']!r}" if record else f"no {SETTINGS_FILENAME}"

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

        problems = [
            f"{label}: {few(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("size mismatch", resized))
            if keys
        ]
        raise ValueError(
            f"{path} ({trained_with}) does not fit network_def of the bundle {name!r}: {'; '.join(problems)}; "
            "run inference with the settings it was trained with."
        )
    network.load_state_dict(state, strict=True)
    return network


class ReleaseCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` for a bundle's release weights (``models/model.pt``, a plain
    state_dict), loading strictly through :func:`load_release`: a missing file or a mismatch is
    its one-line error naming the bundle, the preset and the keys, not a long ``RuntimeError``.

    Args:
        load_path: the release weights, ``<bundle>/models/model.pt``.
        load_dict: ``{"model": network}``, as ``CheckpointLoader`` takes it.
        map_location: where to map the weights.
        name: the handler's logger name.
    """

    def __init__(
        self,
        load_path: str | Path,
        load_dict: dict[str, nn.Module],
        map_location: torch.device | str | None = None,
        name: str | None = None,
    ) -> None:
        if list(load_dict) != ["model"]:
            raise ValueError(
                f"ReleaseCheckpointLoader loads one network, as load_dict={{'model': ...}}; got {list(load_dict)}."
            )
        if Path(load_path).name != "model.pt":
            raise ValueError(f"ReleaseCheckpointLoader loads a bundle's models/model.pt; got {load_path}.")
        super().__init__(str(load_path), load_dict, name=name, map_location=map_location, strict=True)

    def __call__(self, engine: Any) -> None:
        """Loads the weights into the network (at the engine's start).

        Args:
            engine: the evaluator.
        """
        load_release(self.load_dict["model"], Path(self.load_path).parent, self.map_location or "cpu")
        self.logger.info(f"Restored all variables from {self.load_path}")
