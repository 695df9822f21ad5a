"""Checkpoints that survive a crash and never replace good weights with bad ones.

Every file training writes (resume checkpoints, stage outputs, the release weights, the best
network) goes through :func:`atomic_save`: its tensors are checked to be finite, it is written
to a temporary file in the destination's folder, flushed and ``fsync``-ed, loaded back, and only
then renamed over the destination, so a kill at any moment leaves the previous complete file.

A stage's resume checkpoint is ``<stage>/resume.pt``; the one before it is kept as
``<stage>/resume.previous.pt``. :func:`find_resume` picks, among those that load and hold finite
values, the one whose recorded iteration is highest (not the newest by modification time), and
names every file it skips. :class:`FiniteGuard` stops training when a network's weights become
NaN or infinite, naming the network, the parameter and the iteration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader
from torch import nn

__all__ = [
    "atomic_save",
    "save_resume",
    "find_resume",
    "non_finite",
    "one_line",
    "FiniteGuard",
    "NamedCheckpointLoader",
    "RESUME_FILENAME",
    "PREVIOUS_FILENAME",
]

logger = logging.getLogger(__name__)
RESUME_FILENAME = "resume.pt"
PREVIOUS_FILENAME = "resume.previous.pt"


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every floating-point tensor in a nested state (dicts, lists, tuples), with its key path."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}[{index}]")


def non_finite(obj: Any) -> str | None:
    """The key path of the first tensor holding a NaN or an infinity in a (nested) state.

    One reduction per tensor and one device synchronisation per device.

    Args:
        obj: a tensor, a ``state_dict``, or dicts/lists of them.

    Returns:
        e.g. ``"G_AB.model.1.weight"``, or ``None`` when every value is finite.
    """
    named = list(_tensors(obj))
    by_device: dict[torch.device, list[int]] = {}
    for index, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(index)
    for indices in by_device.values():
        finite = torch.stack([torch.isfinite(named[i][1]).all() for i in indices]).cpu()
        if not bool(finite.all()):
            return named[indices[int((~finite).nonzero()[0])]][0]
    return None


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_save(obj: Any, path: str | Path, previous: str | Path | None = None) -> Path:
    """``torch.save`` that never leaves a broken or non-finite file where a good one was.

    The tensors are checked to be finite, then written to a temporary file beside ``path``,
    flushed, ``fsync``-ed and loaded back; only a file that loads is renamed over ``path``.

    Args:
        obj: what to save (tensors, ``state_dict`` s, plain values).
        path: the destination.
        previous: where the file being replaced is kept (renamed) before the new one takes its
            place; ``None``: it is replaced.

    Returns:
        ``path``.

    Raises:
        FloatingPointError: a tensor holds a NaN or an infinity (named, with the file); nothing
            is written and the existing file is kept.
        RuntimeError: the written file does not load back (e.g. the disk is full); the existing
            file is kept.
    """
    path = Path(path)
    bad = non_finite(obj)
    if bad is not None:
        raise FloatingPointError(f"Not saving {path}: {bad} holds NaN or infinite values; the existing file is kept.")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        try:
            torch.load(temporary, map_location="cpu", weights_only=True)
        except Exception as error:
            raise RuntimeError(
                f"Not saving {path}: the written file does not load back ({one_line(error)}); "
                "the existing file is kept."
            ) from error
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


def save_resume(state: Mapping[str, Any], folder: str | Path) -> Path:
    """Writes a stage's resume checkpoint ``folder/resume.pt`` (:func:`atomic_save`), keeping
    the one it replaces as ``folder/resume.previous.pt``.

    Args:
        state: ``{name: state_dict}``, with the engine's under ``"trainer"``.
        folder: the stage's checkpoint folder.

    Returns:
        The checkpoint's path.
    """
    folder = Path(folder)
    return atomic_save(state, folder / RESUME_FILENAME, previous=folder / PREVIOUS_FILENAME)


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (e.g. ``load_state_dict``'s list of missing keys).

    Args:
        error: the exception.
        limit: characters kept.

    Returns:
        The message, whitespace collapsed, shortened to ``limit`` characters.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_checked(path: Path, device: torch.device | str) -> dict:
    """A resume checkpoint, loaded and checked (a dict with the engine's iteration, finite values)."""
    if path.stat().st_size == 0:
        raise ValueError("the file is empty")
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, Mapping) or not isinstance(state.get("trainer"), Mapping):
        raise ValueError("it holds no trainer state (not a resume checkpoint)")
    if "iteration" not in state["trainer"]:
        raise ValueError("its trainer state records no iteration")
    bad = non_finite(state)
    if bad is not None:
        raise ValueError(f"{bad} holds NaN or infinite values")
    return dict(state)


def find_resume(folder: str | Path, device: torch.device | str = "cpu") -> tuple[Path, dict] | None:
    """The resume checkpoint of a stage with the highest recorded iteration, among those that load.

    Candidates are ``resume.pt`` and ``resume.previous.pt``; one that does not load, is not a
    resume checkpoint or holds non-finite values is skipped with a warning naming it and why.
    The choice never depends on modification times.

    Args:
        folder: the stage's checkpoint folder.
        device: where to map the tensors.

    Returns:
        ``(path, state)``, or ``None`` when the folder holds no candidate.

    Raises:
        ValueError: candidates exist but none is usable; one line naming each and why.
    """
    folder = Path(folder)
    candidates = [folder / name for name in (RESUME_FILENAME, PREVIOUS_FILENAME) if (folder / name).is_file()]
    usable, problems = [], []
    for path in candidates:
        try:
            usable.append((path, _load_checked(path, device)))
        except Exception as error:
            problems.append(f"{path} ({one_line(error)})")
            logger.warning("Skipping the resume checkpoint %s: %s", path, one_line(error))
    if usable:
        return max(usable, key=lambda found: found[1]["trainer"]["iteration"])
    if problems:
        raise ValueError(
            f"No usable resume checkpoint: {'; '.join(problems)}. Delete them to train the stage from the start."
        )
    return None


class NamedCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` whose errors name the checkpoint (one line, the cause chained)."""

    def __call__(self, engine: Engine) -> None:
        """Loads the checkpoint into the objects (at the engine's start).

        Args:
            engine: the trainer.

        Raises:
            RuntimeError: the checkpoint does not fit the objects, naming the file.
        """
        try:
            super().__call__(engine)
        except Exception as error:
            raise RuntimeError(
                f"Cannot resume from {self.load_path}: {one_line(error)} (was it written by another "
                "configuration? Run without --resume to train from the start)."
            ) from error


class FiniteGuard:
    """Stops training when a network's weights (parameters or buffers) are no longer finite.

    Checked every ``interval`` iterations (one device synchronisation); the checkpoint writers
    check again before any file is written (:func:`atomic_save`), so a divergence between two
    checks is caught before it is saved.

    Args:
        networks: ``{name: network}`` to watch.
        interval: iterations between checks.
        what: who is watched, for the message (e.g. ``"Stage 'translation'"``).
    """

    def __init__(self, networks: Mapping[str, nn.Module], interval: int = 50, what: str = "Training") -> None:
        self.networks = dict(networks)
        self.interval = max(int(interval), 1)
        self.what = what

    def attach(self, engine: Engine) -> None:
        """Checks ``engine``'s networks every ``interval`` iterations.

        Args:
            engine: the trainer.
        """
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        """Raises when a watched network holds a non-finite value.

        Args:
            engine: the trainer.

        Raises:
            FloatingPointError: naming the network, the tensor, the epoch and the iteration.
        """
        bad = non_finite({name: _weights(net) for name, net in self.networks.items()})
        if bad is not None:
            network, _, tensor = bad.partition(".")
            raise FloatingPointError(
                f"{self.what}: network {network!r} has NaN or infinite weights ({tensor}) after epoch "
                f"{engine.state.epoch}, iteration {engine.state.iteration}; training stopped and nothing was saved "
                "over the last checkpoint. Check the input intensities (normalised to [-1, 1]?) and the learning rates."
            )


def _weights(network: nn.Module) -> dict[str, torch.Tensor]:
    """A network's parameters and buffers by name."""
    return {name: tensor.detach() for name, tensor in [*network.named_parameters(), *network.named_buffers()]}
