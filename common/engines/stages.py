"""Staged training: a bundle trains as an ordered list of stages (e.g. a source segmenter, then
a translation; or a disentanglement, then a segmenter on its outputs), each with its own
trainer, checkpoint and resume; a finished stage is reused, never retrained.

A later stage reads what an earlier one trained through the config's references: the same
network objects (e.g. DADR's segmenter stage uses the encoders that its disentanglement stage
trained); a reused stage's weights are loaded from its checkpoint before the next stage starts.
Each stage keeps its resume checkpoint in ``ckpt_dir/<stage>/resume.pt`` (and the one before
it in ``resume.previous.pt``), written after every epoch by
:func:`~common.engines.checkpoints.atomic_save`: verified, finite, and renamed into place, so a
kill at any moment leaves the last complete checkpoint. With ``resume``, the checkpoint with the
highest recorded iteration is chosen (:func:`~common.engines.checkpoints.find_resume`); a stage
whose checkpoint reached the requested iteration count is loaded and skipped, a stage whose
checkpoint did not continues from it (MONAI ``CheckpointLoader``), and the later stages start
when it ends. A :class:`~common.engines.checkpoints.FiniteGuard` stops a stage whose weights stop
being finite. The release network (``models/model.pt``, a bare ``state_dict``) is written once,
after the last stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.utils import set_determinism
from torch import nn

from common.bundle.settings import record_settings
from common.config import as_bool
from common.data.datalist import InputSizes, check_sizes
from common.engines.base import is_main_process, unwrap
from common.engines.checkpoints import (
    FiniteGuard,
    NamedCheckpointLoader,
    atomic_save,
    find_resume,
    one_line,
    save_resume,
)

__all__ = ["Stage", "run_stages", "atomic_save", "load_stage_networks", "RELEASE_FILENAME"]

logger = logging.getLogger(__name__)
RELEASE_FILENAME = "model.pt"


@dataclass
class Stage:
    """One stage of a bundle's training.

    Args:
        name: the stage's name (its checkpoint folder under ``ckpt_dir``).
        trainer: its MONAI trainer; ``None`` skips the stage (a variant that does not train it).
        checkpoint: the objects its resume checkpoint holds; default: the trainer's
            ``checkpoint_objects()`` (every :class:`~common.engines.MultiNetworkTrainer`), and
            a trainer without it (MONAI's ``SupervisedTrainer``) needs them listed.
        outputs: networks written as bare ``state_dict`` files under ``ckpt_dir`` when the stage
            ends (e.g. ``{"segmenter.pt": segmenter}``), for users and later tools.
    """

    name: str
    trainer: Engine | None
    checkpoint: Mapping[str, Any] | None = None
    outputs: Mapping[str, nn.Module] = field(default_factory=dict)

    def objects(self) -> dict:
        """The resume checkpoint's objects, always with the trainer under ``trainer``.

        Returns:
            ``{name: object with state_dict()}``.

        Raises:
            ValueError: no ``checkpoint`` given for a trainer that does not declare its objects.
        """
        if self.checkpoint is not None:
            return {**self.checkpoint, "trainer": self.trainer}
        if not hasattr(self.trainer, "checkpoint_objects"):
            raise ValueError(
                f"Stage {self.name!r}: list its `checkpoint` objects (network, optimizer); "
                f"{type(self.trainer).__name__} does not declare them."
            )
        return self.trainer.checkpoint_objects()


def load_stage_networks(
    ckpt_dir: str | Path, stage: str, networks: Mapping[str, nn.Module], device: torch.device | str = "cpu"
) -> None:
    """Loads networks from a stage's resume checkpoint (the latest usable one,
    :func:`~common.engines.checkpoints.find_resume`), e.g. those an evaluation needs beyond the
    release network (RegGAN's ``R``, MI2GAN's encoders and ``D_MI``).

    Args:
        ckpt_dir: the run's checkpoint folder.
        stage: the stage whose ``<stage>/resume.pt`` holds them.
        networks: ``{checkpoint name: network}``, e.g. ``{"R": registration}``.
        device: where to map the weights.

    Raises:
        ValueError: the checkpoint is missing, unusable or lacks a network, naming the file and
            what it holds.
    """
    found = find_resume(Path(ckpt_dir) / stage, device)
    if found is None:
        raise ValueError(f"{Path(ckpt_dir) / stage / 'resume.pt'} not found: train the stage {stage!r} first.")
    path, state = found
    missing = [name for name in networks if name not in state]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)}; it holds {', '.join(sorted(state))}.")
    for name, network in networks.items():
        network.load_state_dict(state[name])


def _state(objects: Mapping[str, Any]) -> dict:
    return {
        name: unwrap(obj).state_dict() if isinstance(obj, nn.Module) else obj.state_dict()
        for name, obj in objects.items()
    }


def _finished(trainer: Engine, saved: Mapping) -> bool:
    """Whether a saved engine state reached the iterations the trainer is asked to run."""
    total = trainer.state.max_epochs * (trainer.state.epoch_length or saved.get("epoch_length") or 0)
    return saved["iteration"] >= total > 0


def run_stages(
    stages: Sequence[Stage],
    ckpt_dir: str | Path,
    resume: bool = False,
    release: nn.Module | None = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    settings: Mapping[str, Any] | None = None,
    preset: str = "default",
    check_interval: int = 50,
    input_sizes: InputSizes | None = None,
) -> None:
    """Runs the stages in order, with per-stage checkpoints and resume, then writes the release weights
    and, beside them, the settings ``inference.yaml`` needs to rebuild the release network.

    Args:
        stages: the stages, in order.
        ckpt_dir: the bundle's ``models`` folder.
        resume: reuse finished stages and continue an unfinished one from its checkpoint
            (without: every stage trains from the start and overwrites its checkpoint).
        release: the inference network, saved as ``ckpt_dir/model.pt`` after the last stage.
        seed: ``set_determinism`` seed before each stage (plus the rank under torch.distributed).
        device: where checkpoints are loaded to.
        settings: ``{inference.yaml id: value}`` of the release network (sizes, channels, the input's
            intensity normalisation), written to ``ckpt_dir/model_settings.json``
            (``common.bundle.settings``).
        preset: the preset the run was trained with, recorded with the settings.
        check_interval: iterations between checks that every network's weights are finite
            (:class:`~common.engines.checkpoints.FiniteGuard`); every file is checked before it
            is written, whatever the interval.
        input_sizes: the in-plane sizes of the training images
            (:func:`~common.data.datalist.check_images`); ``release`` must keep each of them,
            checked before the first stage starts.

    Raises:
        ValueError: two stages with one name, ``resume`` not a boolean, or ``resume`` with
            checkpoints of which none is usable (naming each).
        FloatingPointError: a network's weights became NaN or infinite (naming it, the tensor and
            the iteration); the last checkpoint is kept.
        DatalistError: ``release`` cannot take an input size (one line per file).
    """
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"Stage names must be unique; got {', '.join(names)}.")
    resume = as_bool(resume, "resume")  # `--resume false` arrives as the string 'false'
    ckpt_dir, main = Path(ckpt_dir), is_main_process()
    if release is not None:
        check_sizes(input_sizes, unwrap(release))
    for stage in stages:
        if stage.trainer is None:
            logger.info("Stage %r: not used by this configuration, skipped", stage.name)
            continue
        if seed is not None:
            set_determinism(seed=seed + (0 if main else dist.get_rank()))
        objects, folder = stage.objects(), ckpt_dir / stage.name
        found = find_resume(folder, device) if resume else None
        if found is not None:
            path, saved = found
            if _finished(stage.trainer, saved["trainer"]):
                _load(objects, saved, path)
                logger.info(
                    "Stage %r: finished earlier (iteration %d), reused from %s",
                    stage.name,
                    saved["trainer"]["iteration"],
                    path,
                )
                _write_outputs(stage, ckpt_dir, main)
                continue
            NamedCheckpointLoader(load_path=str(path), load_dict=objects, map_location=device).attach(stage.trainer)
            logger.info("Stage %r: resuming from %s (iteration %d)", stage.name, path, saved["trainer"]["iteration"])
        elif resume:
            logger.info("Stage %r: no checkpoint in %s, training from the start", stage.name, folder)
        networks = {name: obj for name, obj in objects.items() if isinstance(obj, nn.Module)}
        FiniteGuard(networks, check_interval, f"Stage {stage.name!r}").attach(stage.trainer)
        if main:  # after every epoch, the last one included
            for stale in folder.glob(".*.tmp"):  # left by a process killed while writing
                stale.unlink()
            stage.trainer.add_event_handler(Events.EPOCH_COMPLETED, _save_checkpoint, objects, folder)
        logger.info("Stage %r: training", stage.name)
        stage.trainer.run()
        logger.info("Stage %r: done after %d iterations", stage.name, stage.trainer.state.iteration)
        _write_outputs(stage, ckpt_dir, main)
    if release is not None and main:
        atomic_save(unwrap(release).state_dict(), ckpt_dir / RELEASE_FILENAME)
        logger.info("Saved the release weights %s", ckpt_dir / RELEASE_FILENAME)
        if settings is not None:
            logger.info("Saved their settings %s", record_settings(ckpt_dir, settings, preset))


def _save_checkpoint(engine: Engine, objects: Mapping[str, Any], folder: Path) -> None:
    save_resume(_state(objects), folder)


def _load(objects: Mapping[str, Any], saved: Mapping, path: Path) -> None:
    """A finished stage's objects (all but the engine) from its checkpoint; errors name the file."""
    try:
        Checkpoint.load_objects(to_load={k: v for k, v in objects.items() if k != "trainer"}, checkpoint=saved)
    except Exception as error:
        raise RuntimeError(
            f"Cannot reuse {path}: {one_line(error)} (was it written by another configuration? "
            "Run without --resume to train from the start)."
        ) from error


def _write_outputs(stage: Stage, ckpt_dir: Path, main: bool) -> None:
    if main:
        for filename, network in stage.outputs.items():
            atomic_save(unwrap(network).state_dict(), ckpt_dir / filename)
